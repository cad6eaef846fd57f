"""Decision rules for many labels, chosen on dev.

Per-label thresholds are the best rule when every label has enough dev positives to place
its threshold; with thousands of labels, most of them rare, a simpler rule often decides
better. :func:`choose_rule` scores four kinds of :class:`Thresholds` on dev and keeps the
best by a dev F1 (micro by default), keeping per-label thresholds unless another rule
leads them by ``MARGIN`` (a lead smaller than that is dev noise):

- **per-label thresholds** (:meth:`Thresholds.calibrate`, the rare labels under the fallback);
- **one global threshold**: the micro-F1-optimal single threshold for every label;
- **top-k**: each item's k best labels, k in ``TOP_K``;
- **rank-capped thresholds**: the per-label thresholds, and at most K labels per item
  (its K best), K in ``RANK_CAPS``: a label's threshold cannot flood an item with labels.

Each candidate is one ``Thresholds`` (a top-k rule is thresholds of 0 with ``rank_cap=k``),
so the chosen rule saves, loads and applies as thresholds always have. One pass over dev's
score blocks evaluates every candidate; memory stays at one block plus per-label counts.

>>> import numpy as np
>>> s = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.7], [0.8, 0.1, 0.2]], dtype=np.float32)
>>> y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
>>> rule, figures = choose_rule(lambda: [s], y, Thresholds.calibrate(s, y, min_positives=1))
>>> rule.rank_cap, round(figures["top-1: dev micro-F1"], 3)
(1, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import scipy.sparse as sp

from labelcon.heads.ensemble import AUTO_MAX_LABELS
from labelcon.heads.thresholds import Thresholds
from labelcon.metrics import LabelMatrix, as_label_matrix, f1_from_counts

TOP_K = (1, 2, 3, 5)
RANK_CAPS = (1, 2, 3, 5, 10)
PER_LABEL = "per-label thresholds"
#: Another rule replaces per-label thresholds only when it gains this much dev F1: on
#: Reuters-21578 a rank cap of 5 led dev micro-F1 by 0.0009 and lost 0.0055 test macro-F1.
MARGIN = 0.005
Metric = Literal["micro", "macro", "samples"]
#: ``target_metric="auto"``: macro-F1 up to this many labels, micro-F1 above (the many-label
#: regime, where the ``auto`` head is the kNN vote alone: :data:`labelcon.heads.ensemble.AUTO_MAX_LABELS`).
MACRO_MAX_LABELS = AUTO_MAX_LABELS


def resolve_target_metric(metric: str, n_labels: int) -> Metric:
    """The F1 a run is chosen by: ``metric``, or for ``"auto"`` macro-F1 up to
    ``MACRO_MAX_LABELS`` labels (emotion and topic sets, whose benchmarks report macro-F1)
    and micro-F1 above (extreme classification, which reports micro-F1 and P@k).

    >>> resolve_target_metric("auto", 11), resolve_target_metric("auto", 4271), resolve_target_metric("samples", 11)
    ('macro', 'micro', 'samples')
    """
    if metric == "auto":
        return "macro" if n_labels <= MACRO_MAX_LABELS else "micro"
    if metric not in ("micro", "macro", "samples"):
        raise ValueError(f"expected a target metric auto, macro, micro or samples, got {metric!r}")
    return metric  # type: ignore[return-value]


def candidate_rules(calibrated: Thresholds, global_rule: Thresholds) -> dict[str, Thresholds]:
    """The rules :func:`choose_rule` compares, by name, per-label thresholds first."""
    n = len(calibrated)
    rules = {PER_LABEL: calibrated, "one global threshold": global_rule}
    rules.update({f"top-{k}": Thresholds(np.zeros(n), np.zeros(n, bool), 0.0, rank_cap=k) for k in TOP_K if k < n})
    rules.update(
        {
            f"per-label thresholds, at most {k} per item": Thresholds(
                calibrated.thresholds, calibrated.per_label, calibrated.global_threshold, rank_cap=k
            )
            for k in RANK_CAPS
            if k < n
        }
    )
    return rules


def rule_name(rule: Thresholds) -> str:
    """The name :func:`candidate_rules` gives a rule of ``rule``'s kind (a rule whose labels
    all fell back to the fallback threshold reads as one global threshold).

    >>> rule_name(Thresholds(np.zeros(3), np.zeros(3, bool), 0.0, rank_cap=2))
    'top-2'
    >>> rule_name(Thresholds(np.full(3, 0.4), np.ones(3, bool), 0.5, rank_cap=3))
    'per-label thresholds, at most 3 per item'
    """
    if rule.rank_cap is not None and not rule.thresholds.any():
        return f"top-{rule.rank_cap}"
    if rule.rank_cap is not None:
        return f"per-label thresholds, at most {rule.rank_cap} per item"
    return PER_LABEL if rule.per_label.any() else "one global threshold"


def choose_rule(
    score_blocks: Callable[[], Iterable[np.ndarray]],
    Y: LabelMatrix,
    calibrated: Thresholds,
    *,
    metric: Metric = "micro",
    at_least_one: bool = False,
) -> tuple[Thresholds, dict[str, float]]:
    """The candidate with the best dev ``metric``-F1 (per-label thresholds unless another leads
    by ``MARGIN``; ties to the earlier candidate) and every candidate's figure by name.
    ``score_blocks()`` yields dev's scores as row blocks (it is called twice: once for the
    global threshold, once to evaluate); ``calibrated``: the
    per-label thresholds; ``at_least_one``: the rule applied on top of every candidate."""
    y = as_label_matrix(Y, "Y")
    global_rule = Thresholds.calibrate_blocks(score_blocks, y, min_positives=y.shape[0] + 1)
    rules = candidate_rules(calibrated, global_rule)
    counts = {name: _Counts(y.shape[1]) for name in rules}
    start = 0
    for block in score_blocks():
        truth = y[start : start + len(block)]
        for name, rule in rules.items():
            counts[name].add(truth, rule.apply(block, at_least_one=at_least_one))
        start += len(block)
    figures = {name: counts[name].f1(metric) for name in rules}
    best = max(rules, key=figures.get)
    if figures[best] < figures[PER_LABEL] + MARGIN:
        best = PER_LABEL
    return rules[best], {f"{name}: dev {metric}-F1": value for name, value in figures.items()}


class _Counts:
    """True positives, predictions and positives per label, and the sum of items' F1."""

    def __init__(self, n_labels: int) -> None:
        self.tp, self.pred, self.true = (np.zeros(n_labels, dtype=np.int64) for _ in range(3))
        self.item_f1, self.items = 0.0, 0

    def add(self, truth: sp.csr_matrix, decisions: np.ndarray) -> None:
        hits = truth.multiply(decisions).tocsr()
        hits.eliminate_zeros()  # the product keeps truth's entries where the decision is False, as zeros
        self.tp += np.bincount(hits.indices, minlength=len(self.tp))
        self.pred += decisions.sum(axis=0)
        self.true += np.bincount(truth.indices, minlength=len(self.tp))
        self.item_f1 += float(f1_from_counts(np.diff(hits.indptr), np.diff(truth.indptr), decisions.sum(axis=1)).sum())
        self.items += truth.shape[0]

    def f1(self, metric: Metric) -> float:
        if metric == "micro":
            return float(f1_from_counts(self.tp.sum(), self.true.sum(), self.pred.sum()))
        if metric == "macro":
            return float(f1_from_counts(self.tp, self.true, self.pred).mean())
        return self.item_f1 / max(self.items, 1)
