"""LibMultiLabel's linear baseline: TF-IDF + one-vs-rest linear SVMs, nothing tuned.

LibMultiLabel's ``linear.train_1vsrest`` with its default liblinear options (``-s 2``:
L2-regularised L2-loss (squared hinge) SVM, C = 1) on TF-IDF features: the anchor of the
extreme-classification literature, and fast enough for thousands of labels, where the
``tfidf`` system's logistic regressions with C tuned over four values take an hour. Here
the SVMs are scikit-learn's ``LinearSVC`` (liblinear, dual), one per label, on the
``tfidf`` system's features; scores are decision values, so thresholds calibrate on them
as on any score.
"""

from __future__ import annotations

from systems.common import Result, Task
from systems.tfidf import tfidf_one_vs_rest

NAME = "linear"
DESCRIPTION = (
    "TF-IDF word 1-2-grams (sublinear tf, min_df=2) + one-vs-rest linear SVM, C=1 "
    "(LibMultiLabel's train_1vsrest defaults, liblinear through scikit-learn)"
)


def run(task: Task) -> Result:
    """Fit the vectorizer and one ``LinearSVC(C=1)`` per label on train; score dev and test."""
    return tfidf_one_vs_rest(task, (1.0,), loss="squared_hinge")
