"""Decision rules, chosen on dev.

Per-label thresholds are the best rule when every label has enough dev positives to place
its threshold; with few dev positives, or thousands of labels most of them rare, a simpler
rule often decides better. :func:`choose_rule` fits these :class:`Thresholds` on dev:

- **per-label thresholds** (:meth:`Thresholds.calibrate`); a label without one of its own
  (too rare in dev, or no informative threshold) is decided by the head's own fallback
  threshold where the head scores it for that threshold (:class:`FallbackThreshold`: the
  auto head's balanced probe), else by the global threshold; where the head brings a
  fallback, the same thresholds with **the global fallback** for every such label;
- **one global threshold**: the micro-F1-optimal single threshold for every label;
- **top-k**: each item's k best labels, k in ``TOP_K``;
- **rank-capped thresholds**: the per-label thresholds, and at most K labels per item
  (its K best), K in ``RANK_CAPS``: a label's threshold cannot flood an item with labels.

A rule fitted on dev and scored on the same dev flatters per-label thresholds, which
fit every label's few positives. So where dev is small enough to hold as dense scores
(``n_dev x C <= CROSS_FIT_MAX``: every set of tens of labels), each candidate is
**cross-fitted**: fitted on 4/5 of dev and applied to the other fifth, for each fifth, in
``REPEATS`` seeded splits, and the candidate with the best F1 of those out-of-fold
decisions is refitted on all of dev (ties to the earlier candidate). In every fold the
head's fallback threshold decides the head's columns only: a label the fold leaves with
too few positives is still scored by the main head (on arXiv, giving it the probe's
threshold there made cross-fitting keep the global fallback, test micro-F1 0.608 against
0.622). With many labels
(or a dev of fewer than ``2 * FOLDS`` items), dev is read in row blocks and scored
in-sample, keeping per-label thresholds unless another rule leads them by ``MARGIN``.

Each candidate is one ``Thresholds`` (a top-k rule is thresholds of 0 with ``rank_cap=k``),
so the chosen rule saves, loads and applies as thresholds always have.

>>> import numpy as np
>>> s = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.7], [0.8, 0.1, 0.2]], dtype=np.float32)
>>> y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
>>> rule, figures = choose_rule(lambda: [s], y, min_positives=1)
>>> rule.rank_cap, round(figures["top-1: dev micro-F1"], 3)
(1, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import scipy.sparse as sp

from labelcon import metrics
from labelcon.heads.base import FallbackThreshold
from labelcon.heads.ensemble import AUTO_MAX_LABELS
from labelcon.heads.thresholds import Thresholds
from labelcon.metrics import LabelMatrix, as_label_matrix, f1_from_counts

TOP_K = (1, 2, 3, 5)
RANK_CAPS = (1, 2, 3, 5, 10)
PER_LABEL = "per-label thresholds"
GLOBAL_FALLBACK = "per-label thresholds, global fallback"
#: Dev holds at most this many score entries (n_dev x C) for candidates to be cross-fitted
#: (and never more than :data:`labelcon.metrics.DENSE_EVALUATION`, the limit on dense scores).
CROSS_FIT_MAX = 2_000_000
#: Cross-fitting: dev in this many parts, split this many times.
FOLDS, REPEATS = 5, 3
#: In-sample (many labels), another rule replaces per-label thresholds only when it gains
#: this much dev F1: on Reuters-21578 a rank cap of 5 led dev micro-F1 by 0.0009 and lost
#: 0.0055 test macro-F1.
MARGIN = 0.005
Metric = Literal["micro", "macro", "samples"]
#: ``target_metric="auto"``: macro-F1 up to this many labels, micro-F1 above (the many-label
#: regime, where the ``auto`` head is the kNN vote alone: :data:`labelcon.heads.ensemble.AUTO_MAX_LABELS`).
MACRO_MAX_LABELS = AUTO_MAX_LABELS
ScoreBlocks = Callable[[], Iterable[np.ndarray]]


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


def candidate_rules(
    score_blocks: ScoreBlocks, Y: LabelMatrix, *, min_positives: int = 3, fallback: FallbackThreshold | None = None
) -> dict[str, Thresholds]:
    """The rules :func:`choose_rule` compares, fitted on dev, by name, per-label thresholds
    first. ``fallback``: the label columns the head scores for a threshold of its own, with
    that threshold (:attr:`labelcon.heads.Head.fallback_threshold`); those of them without a
    threshold of their own are decided by it, every other label without one by the global
    threshold."""
    y = as_label_matrix(Y, "Y")
    calibrated = Thresholds.calibrate_blocks(score_blocks, y, min_positives=min_positives)
    n, t = len(calibrated), calibrated.global_threshold
    rules = {PER_LABEL: calibrated.named(PER_LABEL)}
    if fallback is not None:
        heads = np.zeros(n, bool)
        heads[fallback.columns] = True
        own = np.where(calibrated.per_label | ~heads, calibrated.thresholds, fallback.threshold)
        rules[PER_LABEL] = Thresholds(own, calibrated.per_label, t, name=PER_LABEL)
        rules[GLOBAL_FALLBACK] = calibrated.named(GLOBAL_FALLBACK)
    rules["one global threshold"] = Thresholds(np.full(n, t), np.zeros(n, bool), t, name="one global threshold")
    for k in TOP_K:
        if k < n:
            rules[f"top-{k}"] = Thresholds(np.zeros(n), np.zeros(n, bool), 0.0, rank_cap=k, name=f"top-{k}")
    per_label = rules[PER_LABEL]
    for k in RANK_CAPS:
        if k < n:
            name = f"{PER_LABEL}, at most {k} per item"
            rules[name] = Thresholds(per_label.thresholds, per_label.per_label, t, rank_cap=k, name=name)
    return rules


def rule_name(rule: Thresholds) -> str:
    """The name :func:`candidate_rules` gave ``rule``, or for rules saved without one the name
    of its kind (a rule whose labels all fell back to the fallback reads as one global threshold).

    >>> rule_name(Thresholds(np.zeros(3), np.zeros(3, bool), 0.0, rank_cap=2))
    'top-2'
    >>> rule_name(Thresholds(np.full(3, 0.4), np.ones(3, bool), 0.5, rank_cap=3))
    'per-label thresholds, at most 3 per item'
    """
    if rule.name is not None:
        return rule.name
    if rule.rank_cap is not None and not rule.thresholds.any():
        return f"top-{rule.rank_cap}"
    if rule.rank_cap is not None:
        return f"{PER_LABEL}, at most {rule.rank_cap} per item"
    return PER_LABEL if rule.per_label.any() else "one global threshold"


def choose_rule(
    score_blocks: ScoreBlocks,
    Y: LabelMatrix,
    *,
    min_positives: int = 3,
    fallback: FallbackThreshold | None = None,
    metric: Metric = "micro",
    at_least_one: bool = False,
    seed: int = 0,
) -> tuple[Thresholds, dict[str, float]]:
    """The best of :func:`candidate_rules` by dev ``metric``-F1, fitted on all of dev, and
    every candidate's figure by name: cross-fitted where ``n_dev x C <= CROSS_FIT_MAX``
    (splits drawn with ``seed``), else in-sample with per-label thresholds kept unless
    another rule leads by ``MARGIN``. ``score_blocks()`` yields dev's scores as row blocks
    (called several times); ``at_least_one``: the rule applied on top of every candidate;
    ``min_positives`` and ``fallback``: as for :func:`candidate_rules`."""
    y = as_label_matrix(Y, "Y")
    if y.shape[0] * y.shape[1] <= min(CROSS_FIT_MAX, metrics.DENSE_EVALUATION) and y.shape[0] >= 2 * FOLDS:
        scores = np.vstack(list(score_blocks()))  # read once: every fold and the final fit slice it
        rules = candidate_rules(lambda: [scores], y, min_positives=min_positives, fallback=fallback)
        figures = _cross_fitted(scores, y, min_positives, fallback, metric, at_least_one, seed)
        best = max(rules, key=figures.get)
        return rules[best], {f"{name}: dev cross-fitted {metric}-F1": value for name, value in figures.items()}
    rules = candidate_rules(score_blocks, y, min_positives=min_positives, fallback=fallback)
    counts = _count(rules, score_blocks(), y, at_least_one)
    figures = {name: counts[name].f1(metric) for name in rules}
    best = max(rules, key=figures.get)
    if figures[best] < figures[PER_LABEL] + MARGIN:
        best = PER_LABEL
    return rules[best], {f"{name}: dev {metric}-F1": value for name, value in figures.items()}


def _count(
    rules: dict[str, Thresholds], blocks: Iterable[np.ndarray], y: sp.csr_matrix, at_least_one: bool
) -> dict[str, _Counts]:
    """Each rule's counts of its decisions on ``blocks``, consecutive row blocks of ``y``'s items."""
    counts = {name: _Counts(y.shape[1]) for name in rules}
    start = 0
    for block in blocks:
        truth = y[start : start + len(block)]
        for name, rule in rules.items():
            counts[name].add(truth, rule.apply(block, at_least_one=at_least_one))
        start += len(block)
    return counts


def _cross_fitted(
    scores: np.ndarray,
    y: sp.csr_matrix,
    min_positives: int,
    fallback: FallbackThreshold | None,
    metric: Metric,
    at_least_one: bool,
    seed: int,
) -> dict[str, float]:
    """Each candidate's ``metric``-F1 over out-of-fold decisions, the mean of ``REPEATS`` splits."""
    rng = np.random.default_rng(seed)
    figures: dict[str, float] = {}
    for _ in range(REPEATS):
        pooled: dict[str, _Counts] = {}
        for held in np.array_split(rng.permutation(len(scores)), FOLDS):
            fit = np.setdiff1d(np.arange(len(scores)), held)
            part = scores[fit]
            rules = candidate_rules(lambda: [part], y[fit], min_positives=min_positives, fallback=fallback)  # noqa: B023
            for name, counts in _count(rules, [scores[held]], y[held], at_least_one).items():
                pooled.setdefault(name, _Counts(y.shape[1])).merge(counts)
        for name, counts in pooled.items():
            figures[name] = figures.get(name, 0.0) + counts.f1(metric) / REPEATS
    return figures


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

    def merge(self, other: _Counts) -> None:
        self.tp += other.tp
        self.pred += other.pred
        self.true += other.true
        self.item_f1 += other.item_f1
        self.items += other.items

    def f1(self, metric: Metric) -> float:
        if metric == "micro":
            return float(f1_from_counts(self.tp.sum(), self.true.sum(), self.pred.sum()))
        if metric == "macro":
            return float(f1_from_counts(self.tp, self.true, self.pred).mean())
        return self.item_f1 / max(self.items, 1)
