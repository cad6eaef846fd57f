"""What every benchmark system shares: the task it gets, the result it returns, and the
one-vs-rest logistic regression with C tuned on dev that two of them put on top of features.

A system is a module with ``NAME``, ``DESCRIPTION`` and ``run(task: Task) -> Result``. It
fits on ``task.train`` (and may use ``task.dev`` for model selection), and returns score
matrices [n, C] for dev and test, columns in ``task.labels`` order, with higher = more
likely. The harness (``bench/compare.py``) does everything after that identically for
every system: per-label thresholds calibrated on the dev scores, decisions and metrics on
test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from tqdm.auto import tqdm

from labelcon.config import Config
from labelcon.data import Dataset, LabelSpace
from labelcon.heads import FallbackThreshold
from labelcon.metrics import average_precision_per_label

#: Mean characters per training text above which a data set counts as "long texts".
LONG_TEXT_CHARS = 200
SHORT_MAX_LENGTH = 64
LONG_MAX_LENGTH = 256

DEFAULTS = Config()


@dataclass
class Task:
    """One data set, split and encoded the same way for every system.

    ``train`` is what the alternatives train on (the few-shot sample with ``shots``);
    ``train_full`` is the training split before few-shot sampling, which labelcon gets
    together with ``shots`` so that it samples the same items itself. ``labelcon_params``:
    ``Labelcon`` keywords other than its defaults (``--labelcon-params``, ``--labelcon-head``),
    for a row of their own.
    """

    dataset: str
    train: Dataset
    train_full: Dataset
    dev: Dataset
    test: Dataset
    labels: LabelSpace
    labels_file: Path
    y_train: sp.csr_matrix
    y_dev: sp.csr_matrix
    seed: int
    shots: int | None = None
    budget_seconds: float | None = None
    show_progress: bool = True
    labelcon_params: dict[str, Any] = field(default_factory=dict)

    @property
    def at_least_one(self) -> bool:
        """labelcon's default decision rule for this data: at least one label per item when
        every training item has one (``Config.at_least_one=None``), applied to every system."""
        rule = DEFAULTS.at_least_one
        return all(self.train.labels) if rule is None else rule

    @property
    def max_length(self) -> int:
        """Token budget for fine-tuned transformers: 64 for short texts, 256 for long ones."""
        mean_chars = float(np.mean([len(text) for text in self.train.texts])) if len(self.train) else 0.0
        return LONG_MAX_LENGTH if mean_chars > LONG_TEXT_CHARS else SHORT_MAX_LENGTH


@dataclass
class Result:
    """A system's output: dev and test scores [n, C], the seconds spent fitting,
    system-specific facts worth reporting (chosen hyper-parameters, epochs run, ...), and
    the label columns the system scores for a threshold of its own, with that threshold
    (None: labels without their own threshold get the harness's micro-F1-optimal global one)."""

    dev_scores: np.ndarray
    test_scores: np.ndarray
    train_seconds: float
    notes: dict[str, Any] = field(default_factory=dict)
    fallback_threshold: FallbackThreshold | None = None


def macro_ap(y: sp.csr_matrix, scores: np.ndarray) -> float:
    """Mean average precision over labels with at least one positive (model selection metric)."""
    ap = average_precision_per_label(y, scores)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def label_columns(y: sp.csr_matrix) -> list[np.ndarray]:
    """The rows holding each label: one index array per column of ``y``."""
    csc = y.tocsc()
    return [csc.indices[csc.indptr[c] : csc.indptr[c + 1]] for c in range(y.shape[1])]


#: The decision value of a label without training positives (:func:`tuned_one_vs_rest`).
NO_POSITIVES_DECISION = -1e6


def tuned_one_vs_rest(
    x_train: np.ndarray | sp.spmatrix,
    y_train: sp.csr_matrix,
    x_dev: np.ndarray | sp.spmatrix,
    y_dev: sp.csr_matrix,
    x_test: np.ndarray | sp.spmatrix,
    grid: tuple[float, ...],
    *,
    solver: str,
    dual: bool = False,
    seed: int,
    show_progress: bool,
    max_iter: int = 1000,
    loss: str = "logistic",
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], float]:
    """One binary linear model per label for every C of ``grid``; keep the C with the best
    dev macro-AP. ``loss="logistic"``: ``LogisticRegression(C, solver, dual)`` scored by
    its probability (``dual`` selects liblinear's dual solver: the same objective, several
    times faster when features outnumber items, as with TF-IDF); ``loss="squared_hinge"``:
    ``LinearSVC(C)`` (liblinear's L2-loss SVM, LibMultiLabel's linear default) scored by
    its decision value.

    Returns ``(dev_scores, test_scores, notes, test_seconds)``. Each label's model scores
    dev and test right after it is fitted and is then dropped (TF-IDF weight vectors over
    all labels and C values would not fit in memory); test scores of every C are kept
    until the choice is made on dev alone. ``test_seconds`` is the time spent scoring
    test, for callers that time fitting separately. A label without positives in train
    scores 0 (one that every training item holds scores 1), as sklearn's
    ``OneVsRestClassifier`` does; with decision values (``squared_hinge``), where 0 sits in
    the middle of the scores and would rank such a label above the fitted ones, it scores
    ``NO_POSITIVES_DECISION`` (-10^6), below any decision value (before 2026-12-06 it scored
    0 there too, which on the many-label proxies put labels never seen in training at the
    top of most rankings: P@1 0.115 instead of 0.7x on ``manylabel_lexical`` at 2,000 items).
    """
    n, n_labels = y_train.shape
    rows = label_columns(y_train)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    dev_ap: dict[str, float] = {}
    test_seconds = 0.0
    bar = tqdm(total=len(grid) * n_labels, desc=f"one-vs-rest {loss}", unit="label", disable=not show_progress)
    for C in grid:
        dev_scores = np.zeros((x_dev.shape[0], n_labels), dtype=np.float32)
        test_scores = np.zeros((x_test.shape[0], n_labels), dtype=np.float32)
        bar.set_postfix(C=C)
        for c, positives in enumerate(rows):
            if len(positives) in (0, n):
                constant = float(len(positives) == n) if len(positives) or loss == "logistic" else NO_POSITIVES_DECISION
                dev_scores[:, c] = constant
                test_scores[:, c] = constant
                bar.update(1)
                continue
            target = np.zeros(n, dtype=np.int8)
            target[positives] = 1
            if loss == "logistic":
                model = LogisticRegression(C=C, solver=solver, dual=dual, max_iter=max_iter, random_state=seed)
                score = lambda x: model.predict_proba(x)[:, 1]  # noqa: E731, B023 (used within this iteration)
            else:
                model = LinearSVC(C=C, loss=loss, dual=dual, max_iter=max_iter, random_state=seed)
                score = model.decision_function
            model.fit(x_train, target)
            dev_scores[:, c] = score(x_dev)
            tic = time.perf_counter()
            test_scores[:, c] = score(x_test)
            test_seconds += time.perf_counter() - tic
            bar.update(1)
        ap = macro_ap(y_dev, dev_scores)
        dev_ap[f"C={C:g}"] = round(ap, 5)
        if best is None or ap > best[0]:
            best = (ap, C, dev_scores, test_scores)
    bar.close()
    assert best is not None, "the C grid must not be empty"
    _, best_c, dev_scores, test_scores = best
    notes = {"C": best_c, "dev_macro_ap_by_C": dev_ap, "loss": loss, "solver": solver, "dual": dual}
    return dev_scores, test_scores, notes, test_seconds
