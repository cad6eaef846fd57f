"""The ``auto`` head: pick on dev among linear probes, kNN votes and their average.

A linear probe and a kNN vote make different errors: the probe draws one hyperplane per
label, the vote follows local neighbourhoods (which is where rare labels live). Their
average is often better than either, but not always (with a few examples per label the
vote is noise), so :func:`select_on_dev` fits the candidates once and keeps whichever
ranks dev best: by macro average precision, or the ranking figure of the run's target
metric (:func:`labelcon.metrics.ranking_quality`):

- ``linear`` with C in {1, 4, 16, 64} (the inverse L2 strength: the right one depends on
  how many items there are and how separable the space is),
- ``knn`` with k in {20, 50},
- the average of each linear probe's and each kNN's scores (:class:`EnsembleHead`).

Above ``AUTO_MAX_LABELS`` labels it is the kNN head alone (k=20): the vote costs nothing to
fit and stays sparse, where C linear fits and dense dev scores grow with the label count.

**Labels too rare in dev for a threshold of their own** (fewer than ``min_positives``
dev positives: in a long tail, most labels) are decided by one shared threshold. That
only works if a score means the same for every label, which neither a probe fitted with
equal item weights (a label's prior pulls its probabilities down) nor a kNN vote (a label
held by 2 training items can win at most 2 votes) gives. So their columns come from a
**class-balanced** probe (each label's positives and negatives weighted to equal mass,
sklearn's ``class_weight="balanced"``), and the shared threshold is the one maximising
that probe's dev micro-F1 over all labels, learned where dev has positives and applied
where it has not (:class:`FallbackHead`). Its C in {4, 16, 64} is the one with the best
such micro-F1. On Reuters-21578 (42 of 90 labels with fewer than 3 dev positives) this
lifted test macro-F1 from 0.53 to 0.58 at the same micro-F1 (docs/benchmarks-history.md).

>>> import numpy as np
>>> x = np.eye(4, dtype=np.float32); y = np.eye(4)[:, :2]
>>> a, b = build_head("linear").fit(x, y), build_head("knn", k=2).fit(x, y)
>>> both = EnsembleHead.of([a, b])
>>> bool(np.allclose(both.predict_scores(x), (a.predict_scores(x) + b.predict_scores(x)) / 2))
True
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from labelcon.heads.base import FallbackThreshold, Head, build_head, check_embeddings, check_labels
from labelcon.heads.thresholds import best_global_threshold
from labelcon.metrics import LabelMatrix, ranking_quality

AUTO_MAX_LABELS = 2000
LINEAR_C = (1.0, 4.0, 16.0, 64.0)
KNN_K = (20, 50)
FALLBACK_C = (4.0, 16.0, 64.0)


class _MemberHeads(Head):
    """A head made of member heads ``heads_`` (fitted on the same labels), saved member by member."""

    heads_: list[Head]

    def fit(self, embeddings: np.ndarray, Y: LabelMatrix) -> _MemberHeads:
        for head in self.heads_:
            head.fit(embeddings, Y)
        self.n_labels_, self.dim_ = self.heads_[0].n_labels_, self.heads_[0].dim_
        return self

    def to(self, device: torch.device) -> _MemberHeads:
        for head in self.heads_:
            head.to(device)
        return self

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"{i}.{key}": value for i, head in enumerate(self.heads_) for key, value in head._arrays().items()}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        for i, head in enumerate(self.heads_):
            prefix = f"{i}."
            head._restore({key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)})

    def _check_fitted(self) -> None:
        super()._check_fitted()
        for head in self.heads_:  # after Head.load, the members learn their sizes here
            head.n_labels_, head.dim_ = self.n_labels_, self.dim_


class EnsembleHead(_MemberHeads):
    """The mean of its member heads' scores. ``members``: ``[{"type": name, "params": {...}}]``."""

    name = "ensemble"

    def __init__(self, members: list[dict[str, Any]]) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 member heads; got {len(members)}")
        self.members = members
        self.heads_ = [build_head(m["type"], **m.get("params", {})) for m in members]

    @classmethod
    def of(cls, heads: list[Head]) -> EnsembleHead:
        """An ensemble of heads already fitted on the same labels."""
        ensemble = cls([{"type": h.name, "params": h.get_params()} for h in heads])
        ensemble.heads_ = list(heads)
        ensemble.n_labels_, ensemble.dim_ = heads[0].n_labels_, heads[0].dim_
        return ensemble

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        x = self._check_input(embeddings)
        return (sum(head.predict_scores(x) for head in self.heads_) / len(self.heads_)).astype(np.float32)

    def get_params(self) -> dict[str, Any]:
        return {"members": self.members}


class FallbackHead(_MemberHeads):
    """``main``'s scores, except the label ``columns`` scored by ``fallback`` (both member
    specs as in :class:`EnsembleHead`); ``threshold``: the one decision threshold meant
    for those columns (see the module docstring)."""

    name = "fallback"

    def __init__(self, main: dict[str, Any], fallback: dict[str, Any], columns: list[int], threshold: float) -> None:
        self.main, self.fallback, self.columns, self.threshold = main, fallback, list(columns), float(threshold)
        self.heads_ = [build_head(m["type"], **m.get("params", {})) for m in (main, fallback)]

    @classmethod
    def of(cls, main: Head, fallback: Head, columns: np.ndarray, threshold: float) -> FallbackHead:
        """A fallback head of two heads already fitted on the same labels."""
        spec = [{"type": h.name, "params": h.get_params()} for h in (main, fallback)]
        head = cls(spec[0], spec[1], [int(c) for c in columns], threshold)
        head.heads_ = [main, fallback]
        head.n_labels_, head.dim_ = main.n_labels_, main.dim_
        return head

    @property
    def fallback_threshold(self) -> FallbackThreshold:
        return FallbackThreshold(self.columns, self.threshold)

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        x = self._check_input(embeddings)
        scores = self.heads_[0].predict_scores(x).copy()
        if self.columns:
            scores[:, self.columns] = self.heads_[1].predict_scores(x)[:, self.columns]
        return scores


def select_on_dev(
    train_x: np.ndarray,
    train_y: LabelMatrix,
    dev_x: np.ndarray,
    dev_y: LabelMatrix,
    min_positives: int = 3,
    show_progress: bool = False,
    device: torch.device | None = None,
    metric: str = "macro",
) -> tuple[Head, dict[str, float]]:
    """Fit the candidates of the module docstring on train and return the one whose dev
    scores rank best by ``metric`` (:func:`labelcon.metrics.ranking_quality`: ``macro``, the
    default, is macro-AP; ``micro`` micro-AP; ``samples`` LRAP), with every candidate's
    figure (by name) for the record. Labels with
    fewer than ``min_positives`` dev positives are scored by a class-balanced probe
    (:class:`FallbackHead`; the report then also holds each balanced probe's dev micro-F1
    at its best single threshold, under ``"fallback ..."`` names). ``show_progress``: a
    progress bar over the candidates' fits; ``device``: where the candidates score
    (:meth:`Head.to`; None: the CPU)."""
    device = device or torch.device("cpu")
    train_x, dev_x = check_embeddings(train_x), check_embeddings(dev_x)
    train_y = check_labels(train_y, len(train_x))
    dev_y = check_labels(dev_y, len(dev_x))
    if train_y.shape[1] > AUTO_MAX_LABELS:
        return build_head("knn", k=KNN_K[0]).to(device).fit(train_x, train_y), {}
    rare = np.flatnonzero(np.bincount(dev_y.indices, minlength=dev_y.shape[1]) < min_positives)
    fits = len(LINEAR_C) + len(KNN_K) + (len(FALLBACK_C) if rare.size else 0)
    with tqdm(total=fits, desc="auto head", unit="fit", disable=not show_progress, dynamic_ncols=True) as bar:
        head, report = _best_by_dev_ap(train_x, train_y, dev_x, dev_y, bar, device, metric)
        if rare.size == 0:
            return head, report
        return _with_fallback(head, report, train_x, train_y, dev_x, dev_y, rare, bar), report


def _with_fallback(
    head: Head,
    report: dict[str, float],
    train_x: np.ndarray,
    train_y: sp.csr_matrix,
    dev_x: np.ndarray,
    dev_y: sp.csr_matrix,
    rare: np.ndarray,
    bar: tqdm,
) -> FallbackHead:
    """``head`` with the ``rare`` labels scored by the balanced probe of the module docstring."""
    best: tuple[float, Head, float] | None = None
    for c in FALLBACK_C:
        probe = build_head("linear", C=c, class_weight="balanced").fit(train_x, train_y)
        bar.update(1)
        scores = probe.predict_scores(dev_x)
        threshold = best_global_threshold(scores, dev_y)
        above = scores >= threshold
        total = int(above.sum()) + dev_y.nnz
        micro = 2 * float(dev_y.multiply(above).sum()) / total if total else 0.0
        report[f"fallback linear(C={c:g}, balanced): dev micro-F1 at one threshold"] = micro
        if best is None or micro > best[0]:
            best = (micro, probe, threshold)
    return FallbackHead.of(head, best[1], rare, best[2])


def _best_by_dev_ap(
    train_x: np.ndarray,
    train_y: sp.csr_matrix,
    dev_x: np.ndarray,
    dev_y: sp.csr_matrix,
    bar: tqdm,
    device: torch.device,
    metric: str = "macro",
) -> tuple[Head, dict[str, float]]:
    candidates = [("linear", {"C": c}) for c in LINEAR_C] + [("knn", {"k": k}) for k in KNN_K]
    fitted = {}
    for name, params in candidates:
        fitted[f"{name}({', '.join(f'{k}={v:g}' for k, v in params.items())})"] = (
            build_head(name, **params).to(device).fit(train_x, train_y)
        )
        bar.update(1)
    scores = {name: head.predict_scores(dev_x) for name, head in fitted.items()}
    linear = [name for name in fitted if name.startswith("linear")]
    knn = [name for name in fitted if name.startswith("knn")]
    pairs = {f"{a} + {b}": (a, b) for a, b in product(linear, knn)}
    for name, (a, b) in pairs.items():
        scores[name] = (scores[a] + scores[b]) / 2
    report = {name: ranking_quality(dev_y, s, metric) for name, s in scores.items()}
    # without dev positives every figure is NaN, and the first candidate, linear(C=1), is kept
    best = max(report, key=lambda name: -np.inf if np.isnan(report[name]) else report[name])
    head = EnsembleHead.of([fitted[n] for n in pairs[best]]) if best in pairs else fitted[best]
    return head, report
