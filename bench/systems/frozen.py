"""Frozen all-MiniLM-L6-v2 sentence embeddings + one-vs-rest logistic regression.

What a sentence-transformers user does first: embed with the pretrained model (mean
pooling, L2-normalised, max_length 256 as the model was trained), then fit a linear
classifier per label. C is chosen on dev from {0.25, 1, 4, 16, 64} by macro-AP: the
TF-IDF grid plus 0.25, because with a few thousand training items the frozen features
picked C=1, the low end of that grid.
"""

from __future__ import annotations

import time

import numpy as np

from labelcon.encoders import TransformerEncoder
from systems.common import LONG_MAX_LENGTH, Result, Task, tuned_one_vs_rest

NAME = "frozen"
DESCRIPTION = "frozen all-MiniLM-L6-v2 (mean-pooled, normalised) + one-vs-rest logistic regression (lbfgs, C on dev)"
C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)
ENCODE_BATCH = 128


def run(task: Task) -> Result:
    """Embed train and dev, fit the per-label models on train with C tuned on dev, score test."""
    started = time.perf_counter()
    encoder = TransformerEncoder("minilm", max_length=LONG_MAX_LENGTH, seed=task.seed).eval()

    def embed(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, batch_size=ENCODE_BATCH, normalize=True, show_progress=task.show_progress)

    x_train = embed(task.train.texts)
    x_dev = embed(task.dev.texts)
    fitted = time.perf_counter()
    x_test = embed(task.test.texts)
    test_seconds = time.perf_counter() - fitted
    dev_scores, test_scores, notes, scoring_seconds = tuned_one_vs_rest(
        x_train,
        task.y_train,
        x_dev,
        task.y_dev,
        x_test,
        C_GRID,
        solver="lbfgs",
        seed=task.seed,
        show_progress=task.show_progress,
    )
    train_seconds = time.perf_counter() - started - test_seconds - scoring_seconds
    return Result(dev_scores, test_scores, train_seconds, notes)
