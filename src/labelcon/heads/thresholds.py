"""Decision rules on scores: per-label F1-optimal thresholds, and top-k for XMC.

``Thresholds.calibrate(scores, Y)`` picks, for every label c with at least
``min_positives`` positives in the dev set, the threshold t_c maximising that label's F1

    F1_c(t) = 2 TP_c(t) / (|{i : s_ic >= t}| + |P_c|)

(a label predicts ``s >= t``). F1 can only peak at a positive's score, so the label's
positives' scores are the candidates; one pass over row blocks of the scores counts the
entries at or above each (each block's columns sorted once, one ``searchsorted`` for all
candidates): O(n log n) per label, never O(n^2), and memory is one block. Rarer labels get
the fallback: by default the single global threshold maximising micro-F1 over all
entries, found the same way, or a fixed float. Ties in F1 go to the highest threshold.

A label's own threshold must be **informative**: it selects the label's dev positives
better than chance (a one-sided hypergeometric test: the chance of at least as many
positives among as many items drawn at random is at most ``MAX_CHANCE``), and it predicts
the label for at most ``MAX_FLOOD`` times as many dev items as hold it. F1 rewards recall,
so a label whose positives all score low would otherwise get a threshold at or below its
lowest score, which predicts it for every item with F1 2p / (1 + p) > 0 (p: its dev
prevalence) and floods the decisions (seen on a 4,000-label set: 12 labels predicted for
every test item); on random scores the test alone still lets a rare label's threshold
take half of dev. A label without an informative threshold takes the fallback instead.
``Thresholds.calibrate_blocks(score_blocks, Y)`` is the same from row blocks the caller
makes, for label spaces where [n_dev, C] would not fit in memory at once.

>>> import numpy as np
>>> s = np.array([[0.9, 0.2], [0.6, 0.8], [0.7, 0.7], [0.1, 0.9], [0.3, 0.1],
...               [0.2, 0.3], [0.4, 0.2], [0.2, 0.4], [0.1, 0.1], [0.5, 0.6]], dtype=np.float32)
>>> y = np.array([[1, 0], [1, 1], [1, 1], [0, 1]] + [[0, 0]] * 6)
>>> th = Thresholds.calibrate(s, y, min_positives=2)
>>> th.thresholds.tolist(), th.apply(s)[:5].astype(int).tolist()
([0.6000000238418579, 0.699999988079071], [[1, 0], [1, 1], [1, 1], [0, 1], [0, 0]])
>>> bool((Thresholds.calibrate_blocks(lambda: (s[:3], s[3:]), y, min_positives=2).thresholds == th.thresholds).all())
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import hypergeom

from labelcon.metrics import BLOCK_ELEMENTS, LabelMatrix, as_label_matrix, check_scores, top_k

#: A label's own threshold must select its dev positives better than chance at this level.
MAX_CHANCE = 0.05
#: ... and predict the label for at most this many times as many dev items as hold it.
MAX_FLOOD = 3.0


class Thresholds:
    """Per-label thresholds; ``per_label[c]`` says whether label c got its own (else the fallback)."""

    def __init__(
        self,
        thresholds: np.ndarray,
        per_label: np.ndarray,
        global_threshold: float,
        rank_cap: int | None = None,
        name: str | None = None,
    ) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.per_label = np.asarray(per_label, dtype=bool)
        self.global_threshold = float(global_threshold)
        #: At most this many labels per item, the best-scoring ones (None: no cap).
        self.rank_cap = None if rank_cap is None else int(rank_cap)
        #: The rule's name among the candidates it was chosen from (:mod:`labelcon.heads.decisions`).
        self.name = name
        if self.rank_cap is not None and self.rank_cap < 1:
            raise ValueError(f"rank_cap must be None or >= 1; got {rank_cap}")
        if self.thresholds.ndim != 1 or self.per_label.shape != self.thresholds.shape:
            raise ValueError(
                "thresholds and per_label must be 1-D of equal length; "
                f"got {self.thresholds.shape} and {self.per_label.shape}"
            )
        if not (np.isfinite(self.thresholds).all() and np.isfinite(self.global_threshold)):
            raise ValueError("thresholds must be finite numbers; got NaN or infinity")

    def __len__(self) -> int:
        return len(self.thresholds)

    def named(self, name: str) -> Thresholds:
        """These thresholds under ``name``."""
        return Thresholds(self.thresholds, self.per_label, self.global_threshold, self.rank_cap, name)

    def extended(self, count: int) -> Thresholds:
        """These thresholds with ``count`` more labels at the end, each under the global threshold."""
        added = np.full(count, self.global_threshold, dtype=np.float32)
        return Thresholds(
            np.concatenate([self.thresholds, added]),
            np.concatenate([self.per_label, np.zeros(count, bool)]),
            self.global_threshold,
            self.rank_cap,
            self.name,
        )

    @classmethod
    def calibrate(
        cls,
        scores: np.ndarray,
        Y: LabelMatrix,
        *,
        min_positives: int = 3,
        fallback: str | float = "global",
    ) -> Thresholds:
        """F1-optimal threshold per label on dev ``scores`` [n, C] and labels ``Y`` [n, C].

        ``fallback``: ``"global"`` (micro-F1-optimal single threshold) or a float, used for
        labels with fewer than ``max(min_positives, 1)`` dev positives.
        """
        y = as_label_matrix(Y, "Y")
        s = check_scores(scores, y.shape)
        step = max(1, BLOCK_ELEMENTS // max(y.shape[1], 1))
        return cls.calibrate_blocks(
            lambda: (s[i : i + step] for i in range(0, len(s), step)), y, min_positives=min_positives, fallback=fallback
        )

    @classmethod
    def calibrate_blocks(
        cls,
        score_blocks: Callable[[], Iterable[np.ndarray]],
        Y: LabelMatrix,
        *,
        min_positives: int = 3,
        fallback: str | float = "global",
    ) -> Thresholds:
        """:meth:`calibrate` without ever holding the dense [n, C] scores.

        ``score_blocks()`` yields the dev scores as consecutive row blocks [b, C] (it is
        called twice: once for the positives' scores, which are the only candidate
        thresholds, once to count the entries at or above each candidate). The result
        equals :meth:`calibrate`'s; memory is one block plus a few arrays of nnz(Y).
        """
        if isinstance(fallback, str) and fallback != "global":
            raise ValueError(f"fallback must be 'global' or a number; got {fallback!r}")
        y = as_label_matrix(Y, "Y")
        pos = _positive_scores(score_blocks(), y)
        labels = y.indices.astype(np.int64)
        counts = np.bincount(labels, minlength=y.shape[1])
        per_label = counts >= max(min_positives, 1)
        own = per_label[labels]  # candidates: the positives of labels with their own threshold
        column = np.cumsum(per_label) - 1  # a label's position among those labels
        above_own = np.zeros(int(own.sum()), dtype=np.int64)
        global_candidates = _GlobalCandidates(pos) if isinstance(fallback, str) else None  # a fixed float: no search
        own_columns = np.flatnonzero(per_label)
        for block in score_blocks():
            if global_candidates is not None:
                global_candidates.count(block)
            if above_own.size:
                n = len(block)
                above_own += _count_at_or_above(
                    block[:, own_columns].T,
                    np.arange(len(own_columns))[:, None],
                    n * np.arange(1, len(own_columns) + 1),
                    pos[own],
                    column[labels[own]],
                )
        global_t = float(fallback) if global_candidates is None else global_candidates.best(y.nnz)
        thresholds = np.full(y.shape[1], global_t, dtype=np.float32)
        if above_own.size:
            lab, score = labels[own], pos[own]
            tp = _count_at_or_above(score, lab, np.cumsum(np.where(per_label, counts, 0)), score, lab)
            chance = hypergeom.sf(tp - 1, y.shape[0], counts[lab], above_own)  # P(>= tp positives at random)
            informative = (chance <= MAX_CHANCE) & (above_own <= MAX_FLOOD * counts[lab])
            f1 = np.where(informative, 2 * tp / (above_own + counts[lab]), -1.0)
            order = np.lexsort((-score, -f1, lab))  # per label: best F1, ties to the highest threshold
            first = order[np.r_[True, lab[order][1:] != lab[order][:-1]]]
            chosen = first[f1[first] >= 0]
            thresholds[lab[chosen]] = score[chosen]
            per_label[lab[first[f1[first] < 0]]] = False  # no informative threshold: the fallback decides
        return cls(thresholds, per_label, global_t)

    def apply(self, scores: np.ndarray, *, at_least_one: bool = False) -> np.ndarray:
        """Boolean decisions [n, C]: ``scores >= thresholds`` (and, with a ``rank_cap``, among
        the row's ``rank_cap`` best); with ``at_least_one`` a row that cleared no threshold
        gets its top-scoring label."""
        s = check_scores(scores, None)
        if s.shape[1] != len(self):
            raise ValueError(f"scores have {s.shape[1]} label columns but the thresholds cover {len(self)}")
        decisions = s >= self.thresholds[None, :]
        if self.rank_cap is not None and self.rank_cap < s.shape[1]:
            best = np.zeros_like(decisions)
            np.put_along_axis(best, top_k(s, self.rank_cap)[0], True, axis=1)
            decisions &= best
        if at_least_one and s.shape[1]:
            empty = np.flatnonzero(~decisions.any(axis=1))
            decisions[empty, np.argmax(s[empty], axis=1)] = True
        return decisions

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (floats round-trip exactly)."""
        return {
            "thresholds": [float(t) for t in self.thresholds],
            "per_label": self.per_label.tolist(),
            "global_threshold": self.global_threshold,
            "rank_cap": self.rank_cap,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thresholds:
        """Inverse of :meth:`to_json`; other values raise a ValueError saying what was expected."""
        if not isinstance(data, dict):
            raise ValueError(f"expected thresholds as a JSON object, got {type(data).__name__}")
        missing = {"thresholds", "per_label", "global_threshold"} - set(data)
        if missing:
            raise ValueError(f"thresholds JSON lacks keys {sorted(missing)}")
        values, per_label, global_threshold = data["thresholds"], data["per_label"], data["global_threshold"]
        numbers = values + [global_threshold] if isinstance(values, list) else None
        if numbers is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise ValueError(
                f"expected 'thresholds' to be a list of numbers and 'global_threshold' a number, "
                f"got {str(values)[:60]} and {global_threshold!r}"
            )
        if not (isinstance(per_label, list) and all(isinstance(v, bool) for v in per_label)):
            raise ValueError(f"expected 'per_label' to be a list of true/false, got {str(per_label)[:60]}")
        rank_cap = data.get("rank_cap")
        if rank_cap is not None and (not isinstance(rank_cap, int) or isinstance(rank_cap, bool)):
            raise ValueError(f"expected 'rank_cap' to be a whole number or null, got {rank_cap!r}")
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"expected 'name' to be a string or null, got {name!r}")
        return cls(
            np.array(values, dtype=np.float32), np.array(per_label, dtype=bool), global_threshold, rank_cap, name
        )


def best_global_threshold(scores: np.ndarray, Y: LabelMatrix) -> float:
    """The single threshold t maximising micro-F1 = 2 TP(t) / (#{s >= t} + #positives).

    Candidates are the positives' scores (moving t down to a score without a positive only
    adds false positives). Memory stays at one block of scores.
    """
    y = as_label_matrix(Y, "Y")
    s = check_scores(scores, y.shape)
    rows = np.repeat(np.arange(y.shape[0]), np.diff(y.indptr))
    candidates = _GlobalCandidates(s[rows, y.indices])
    step = max(1, BLOCK_ELEMENTS // max(y.shape[1], 1))
    for start in range(0, y.shape[0], step):
        candidates.count(s[start : start + step])
    return candidates.best(y.nnz)


class _GlobalCandidates:
    """The positives' distinct scores as candidate thresholds, with the count of score
    entries at or above each, gathered block by block (:func:`best_global_threshold`)."""

    def __init__(self, positive_scores: np.ndarray) -> None:
        neg_cand, per_score = np.unique(-np.asarray(positive_scores, dtype=np.float32), return_counts=True)
        self.cand = -neg_cand  # descending
        self.tp = np.cumsum(per_score)
        self.above = np.zeros(len(self.cand) + 1, dtype=np.int64)  # above[j]: entries with j candidates <= them
        self.highest = np.float32(1.0)  # the largest score seen, at least 1

    def count(self, block: np.ndarray) -> None:
        values = np.asarray(block).ravel()
        position = np.searchsorted(self.cand[::-1], values, side="right")
        self.above += np.bincount(position, minlength=len(self.cand) + 1)
        self.highest = max(self.highest, np.float32(values.max(initial=1.0)))

    def best(self, n_positives: int) -> float:
        if n_positives == 0:  # no positives: a threshold above every score the blocks had
            return float(np.nextafter(self.highest, np.float32(np.inf)))
        predicted = np.cumsum(self.above[::-1])[:-1]  # entries >= cand[j]
        return float(self.cand[int(np.argmax(2 * self.tp / (predicted + n_positives)))])


def _positive_scores(blocks: Iterable[np.ndarray], y: sp.csr_matrix) -> np.ndarray:
    """The scores of ``y``'s non-zeros, in its row-major order, read off row blocks of scores."""
    parts, start = [], 0
    for block in blocks:
        b = check_scores(block, None)
        if b.shape[1] != y.shape[1] or start + len(b) > y.shape[0]:
            raise ValueError(
                f"score blocks must be consecutive row blocks of a [{y.shape[0]}, {y.shape[1]}] "
                f"matrix; got a block of shape {b.shape} at row {start}"
            )
        sub = y[start : start + len(b)]
        parts.append(b[np.repeat(np.arange(len(b)), np.diff(sub.indptr)), sub.indices])
        start += len(b)
    if start != y.shape[0]:
        raise ValueError(f"score blocks covered {start} rows; the labels have {y.shape[0]}")
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def _count_at_or_above(
    entries: np.ndarray, entry_groups: np.ndarray, group_ends: np.ndarray, values: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """``out[p]`` = the entries of group ``groups[p]`` that are >= ``values[p]``, for all p at
    once. Groups are numbered 0..G-1 and ``group_ends[g]`` counts the entries of groups
    0..g. Each group's entries are laid end to end, shifted by an integer offset wider than
    the range of every value involved (so the sums stay exact in float64), sorted, and one
    ``searchsorted`` answers every query."""
    both = np.concatenate([np.ravel(entries), np.ravel(values)])
    if both.size == 0:
        return np.zeros(len(values), dtype=np.int64)
    lo = float(both.min())
    span = float(np.ceil(float(both.max()) - lo) + 1)
    keys = np.sort((np.asarray(entries, dtype=np.float64) - lo + entry_groups * span).ravel())
    query = np.asarray(values, dtype=np.float64) - lo + groups * span
    return group_ends[groups] - np.searchsorted(keys, query, side="left")


def top_k_labels(scores: np.ndarray, k: int) -> sp.csr_matrix:
    """Top-k decision rule for extreme classification: each row's k best labels, as a
    {0,1} CSR matrix [n, C] usable as ``y_pred`` in :func:`labelcon.metrics.evaluate`.

    >>> top_k_labels(np.array([[0.1, 0.9, 0.5]]), 2).toarray().tolist()
    [[0.0, 1.0, 1.0]]
    """
    idx, _ = top_k(scores, k)
    n, kk = idx.shape
    data = np.ones(n * kk, dtype=np.float32)
    out = sp.csr_matrix((data, idx.ravel(), np.arange(0, n * kk + 1, kk)), shape=(n, np.asarray(scores).shape[1]))
    out.sort_indices()
    return out
