"""Multi-label evaluation: classification, ranking and extreme-classification metrics.

Inputs follow one convention throughout:

- ``y_true``: {0,1} label matrix [n, C], ``scipy.sparse`` (CSR preferred) or dense.
  It is never densified as a whole; ranking metrics look up only the entries they need.
- ``scores``: float [n, C], higher = more likely.  The top-k metrics (``precision_at_k``,
  ``ndcg_at_k``, ``psp_at_k``) also take a *top-k pair* ``(indices, values)`` of shape
  [n, k'] (k' >= k), as an extreme classifier emits when a dense [n, C] matrix would not
  fit; index ``-1`` marks an empty slot and counts as a miss.
- ``y_pred``: {0,1} or bool prediction matrix [n, C], sparse or dense.

Formulas (for one item with true label set ``Y``, ranked labels ``r_1, r_2, ...``):

- P@k      = (1/k) sum_{l<=k} 1[r_l in Y]                          (XMC definition)
- nDCG@k   = sum_{l<=k} 1[r_l in Y] / log2(l+1)  /  sum_{l<=min(k,|Y|)} 1 / log2(l+1)
- PSP@k    = sum_items sum_{l<=k} 1[r_l in Y] / p_{r_l}  /  sum_items max_{|S|=k} sum_{c in S} 1[c in Y] / p_c
  (propensity-scored precision normalised by the best achievable value, a ratio of sums over
  items, as in the Extreme Classification Repository tools and pyxclib)

P@k, nDCG@k and PSP@k average over all items; an item without labels contributes 0.

>>> import numpy as np, scipy.sparse as sp
>>> y = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]]))
>>> s = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.1]], dtype=np.float32)
>>> precision_at_k(y, s, 1)
1.0
>>> round(precision_at_k(y, s, 2), 3)
0.5
>>> m = evaluate(y, s, s >= 0.5)
>>> m["micro_f1"], m["n_items"], m["n_labels"]
(0.6666666666666666, 2, 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

LabelMatrix = sp.spmatrix | sp.sparray | np.ndarray
TopK = tuple[np.ndarray, np.ndarray]

#: Entries of one block of a blocked computation (32 MB of float32): every bounded-memory
#: loop of labelcon (scores, top-k, thresholds, searches) takes its block size from this.
BLOCK_ELEMENTS = 1 << 23
#: Largest items x labels scored as one dense matrix for calibration and evaluation (200 MB
#: of float32); above it scores are taken a block at a time and ``macro_ap`` is skipped.
DENSE_EVALUATION = 50_000_000
TOP_KS = (1, 3, 5)  # the k of the precision_at_k entries in evaluate()
#: The metrics a run is summed up by (the CLI's table, the model card, the report), in this order, with their names.
HEADLINE_METRICS = {
    "macro_f1": "macro F1",
    "micro_f1": "micro F1",
    "samples_f1": "samples F1",
    "macro_ap": "macro AP",
    "precision_at_1": "precision@1",
    "precision_at_3": "precision@3",
    "lrap": "LRAP",
    "hamming_loss": "Hamming loss",
}


# ---------------------------------------------------------------- input checking


def as_label_matrix(y: LabelMatrix, name: str = "y_true") -> sp.csr_matrix:
    """Return ``y`` as a CSR matrix of float32 {0,1} with sorted indices; reject anything else."""
    if sp.issparse(y):
        m = sp.csr_matrix(y, dtype=np.float32, copy=True)
    else:
        arr = np.asarray(y)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D label matrix [n_items, n_labels]; got shape {arr.shape}")
        m = sp.csr_matrix(arr.astype(np.float32))
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D label matrix [n_items, n_labels]; got shape {m.shape}")
    m.eliminate_zeros()
    m.sum_duplicates()
    if m.nnz and not np.all(m.data == 1):
        bad = np.unique(m.data[m.data != 1])[:5]
        raise ValueError(f"{name} must hold only 0 and 1; found values {bad.tolist()}")
    m.sort_indices()
    return m


def check_scores(scores: np.ndarray, shape: tuple[int, int] | None, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a dense finite numeric 2-D array, of ``shape`` when given."""
    if sp.issparse(scores):
        raise ValueError(f"{name} must be a dense array [n_items, n_labels]; got a sparse matrix")
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_items, n_labels]; got shape {s.shape}")
    if shape is not None and s.shape != tuple(shape):
        raise ValueError(f"{name} has shape {s.shape} but the labels have shape {tuple(shape)}; they must match")
    if s.dtype == np.bool_:
        s = s.astype(np.float32)
    if not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {s.dtype}")
    if np.issubdtype(s.dtype, np.floating) and not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return s


def _as_prediction(y_pred: LabelMatrix, shape: tuple[int, int]) -> sp.csr_matrix:
    if not sp.issparse(y_pred):
        y_pred = np.asarray(y_pred)
        if y_pred.ndim != 2:
            raise ValueError(f"y_pred must be 2-D [n_items, n_labels]; got shape {y_pred.shape}")
        y_pred = y_pred != 0
    m = as_label_matrix(sp.csr_matrix(y_pred, dtype=np.float32), "y_pred")
    if m.shape != tuple(shape):
        raise ValueError(f"y_pred has shape {m.shape} but the labels have shape {tuple(shape)}; they must match")
    return m


# ---------------------------------------------------------------- top-k ranking


def top_k(scores: np.ndarray, k: int) -> TopK:
    """The ``k`` highest scores of each row, best first: ``(indices [n, k], values [n, k])``.

    Selection is ``torch.topk`` (a partial selection linear in C, about 6x faster than
    ``np.argpartition`` on CPU); ``k`` is clipped to the number of columns and the order
    among tied scores is unspecified. Rows are processed in blocks so memory stays bounded.

    >>> top_k(np.array([[0.1, 0.9, 0.5]]), 2)[0].tolist()
    [[1, 2]]
    """
    s = check_scores(scores, None)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    n, c = s.shape
    k = min(k, c)
    indices = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=s.dtype)
    native = s.dtype in (np.float32, np.float64)  # other dtypes are ranked as float64 (exact for ints < 2^53)
    step = max(1, BLOCK_ELEMENTS // max(c, 1))
    for start in range(0, n, step):
        block = s[start : start + step]
        ranked = torch.from_numpy(np.ascontiguousarray(block, dtype=None if native else np.float64))
        part = torch.topk(ranked, k, dim=1, largest=True, sorted=True).indices.numpy()
        indices[start : start + step] = part
        values[start : start + step] = np.take_along_axis(block, part, axis=1)
    return indices, values


def concat_top_k(parts: Sequence[TopK], k: int) -> TopK:
    """Blocks of top-k results stacked row-wise; no blocks give empty ``[0, k]`` arrays.

    >>> concat_top_k([], 2)[0].shape
    (0, 2)
    """
    if not parts:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def sparse_top_k(scores: sp.spmatrix | sp.sparray, k: int) -> TopK:
    """:func:`top_k` of a non-negative sparse score matrix whose missing entries are 0,
    without densifying it: ``(indices [n, k], values [n, k])``, best first.

    A row with ``m < k`` stored scores is completed with ``k - m`` of its zero-score
    labels, the lowest label ids first, so every slot holds a real label as with dense
    scores. Work and memory are O(nnz + n * k), not O(n * C): the kNN head's scores at
    10^5 labels hold only the labels of the k neighbours per item.

    >>> s = sp.csr_matrix(np.array([[0.0, 0.2, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32))
    >>> idx, val = sparse_top_k(s, 3)
    >>> idx.tolist(), val.tolist()
    ([[3, 1, 0], [0, 1, 2]], [[0.699999988079071, 0.20000000298023224, 0.0], [0.0, 0.0, 0.0]])
    """
    if not sp.issparse(scores):
        raise ValueError(f"scores must be a scipy.sparse matrix; got {type(scores).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    s = sp.csr_matrix(scores, copy=True)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_items, n_labels]; got shape {s.shape}")
    s.sum_duplicates()
    s.eliminate_zeros()
    if s.nnz and (not np.isfinite(s.data).all() or s.data.min() < 0):
        raise ValueError("sparse scores must be finite and >= 0 (missing entries count as 0)")
    n, c = s.shape
    k = min(k, c)
    lengths = np.diff(s.indptr)
    indices = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=s.dtype)
    start = 0
    while start < n and k:
        # rows whose padded width, max(k, longest row), keeps the block near BLOCK_ELEMENTS
        width = max(k, int(lengths[start : start + max(1, BLOCK_ELEMENTS // max(k, 1))].max(initial=0)))
        stop = min(n, start + max(1, BLOCK_ELEMENTS // width))
        indices[start:stop], values[start:stop] = _sparse_block_top_k(s[start:stop], k, width)
        start = stop
    return indices, values


def _sparse_block_top_k(s: sp.csr_matrix, k: int, width: int) -> TopK:
    """:func:`sparse_top_k` of one block whose rows hold at most ``width`` (>= k) entries."""
    n, c = s.shape
    lengths = np.diff(s.indptr)
    row = np.repeat(np.arange(n), lengths)
    position = np.arange(s.nnz) - np.repeat(s.indptr[:-1], lengths)
    padded = np.full((n, width), -1.0, dtype=np.float64)  # -1: an empty slot, below every score
    labels = np.full((n, width), -1, dtype=np.int64)
    padded[row, position], labels[row, position] = s.data, s.indices
    slots, top = top_k(padded, k)
    indices = np.take_along_axis(labels, slots, axis=1)
    values = top.astype(s.dtype)
    short = np.flatnonzero(lengths < k)
    if short.size:  # fill the empty tail slots with the lowest-numbered labels not stored
        candidates = min(2 * k, c)  # holds >= k - m free labels for a row of m < k entries
        stored = s[short][:, :candidates].toarray() != 0
        free_first = np.argsort(stored, axis=1, kind="stable")
        rank = np.arange(k)[None, :] - lengths[short][:, None]
        fill = rank >= 0
        chosen = np.take_along_axis(free_first, np.maximum(rank, 0), axis=1)
        rows, cols = np.broadcast_to(short[:, None], fill.shape)[fill], np.nonzero(fill)[1]
        indices[rows, cols], values[rows, cols] = chosen[fill], 0
    return indices, values


def _ranked_indices(scores: np.ndarray | TopK, shape: tuple[int, int], k: int) -> np.ndarray:
    """Top-k label indices [n, k] (best first, -1 = empty) from dense scores or a top-k pair."""
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if isinstance(scores, tuple):
        if len(scores) != 2:
            raise ValueError(f"a top-k pair must be (indices, values); got a tuple of length {len(scores)}")
        idx, val = np.asarray(scores[0]), np.asarray(scores[1])
        if idx.ndim != 2 or idx.shape != val.shape or idx.shape[0] != shape[0]:
            raise ValueError(
                f"top-k indices and values must both be [n_items={shape[0]}, k']; got {idx.shape} and {val.shape}"
            )
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"top-k indices must be integers; got dtype {idx.dtype}")
        if idx.size and (idx.max() >= shape[1] or idx.min() < -1):
            raise ValueError(f"top-k indices must lie in [-1, {shape[1]}); got range [{idx.min()}, {idx.max()}]")
        if idx.shape[1] < k:
            raise ValueError(f"asked for k={k} but the top-k pair holds only {idx.shape[1]} labels per item")
        val = np.where(idx < 0, -np.inf, val.astype(np.float64))
        order = np.argsort(-val, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(idx, order, axis=1).astype(np.int64)
    idx = top_k(check_scores(scores, shape), k)[0]
    if idx.shape[1] < k:  # fewer labels than k: pad with empty slots
        idx = np.hstack([idx, np.full((idx.shape[0], k - idx.shape[1]), -1, dtype=np.int64)])
    return idx


def _hits(y: sp.csr_matrix, idx: np.ndarray) -> np.ndarray:
    """hits[i, j] = y[i, idx[i, j]] as float64 [n, k] (0 for empty slots), without densifying y."""
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)
    cols = idx.ravel()
    valid = cols >= 0
    out = np.zeros(n * k)
    if valid.any():
        out[valid] = np.asarray(y[rows[valid], cols[valid]]).ravel()
    return out.reshape(n, k)


def precision_at_k(y_true: LabelMatrix, scores: np.ndarray | TopK, k: int) -> float:
    """P@k = mean over items of |top-k(scores) ∩ Y| / k (denominator k even when |Y| < k).

    >>> import numpy as np
    >>> precision_at_k(np.array([[1, 0, 0]]), np.array([[0.9, 0.5, 0.1]]), 2)
    0.5
    """
    y = as_label_matrix(y_true)
    return _precision(y, _ranked_indices(scores, y.shape, k), k)


def _precision(y: sp.csr_matrix, idx: np.ndarray, k: int) -> float:
    """P@k of the ranked label indices ``idx`` [n, k]."""
    return float(_hits(y, idx).sum(axis=1).mean() / k) if y.shape[0] else 0.0


def ndcg_at_k(y_true: LabelMatrix, scores: np.ndarray | TopK, k: int) -> float:
    """nDCG@k = sum_{l<=k} hit_l / log2(l+1) / sum_{l<=min(k,|Y|)} 1/log2(l+1), averaged over items.

    >>> import numpy as np
    >>> round(ndcg_at_k(np.array([[0, 1, 0]]), np.array([[0.9, 0.5, 0.1]]), 2), 4)
    0.6309
    """
    y = as_label_matrix(y_true)
    if not y.shape[0]:
        return 0.0
    hits = _hits(y, _ranked_indices(scores, y.shape, k))
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(np.diff(y.indptr), k)]
    dcg = hits @ discount
    return float(np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0).mean())


def label_propensities(train_Y: LabelMatrix, A: float = 0.55, B: float = 1.5) -> np.ndarray:
    """Label propensities of Jain, Prabhu & Varma (KDD 2016), float64 [C].

    p_l = 1 / (1 + C_N * (N_l + B)^(-A)),   C_N = (ln N - 1) * (B + 1)^A

    where N is the number of training items and N_l the number holding label l (natural log;
    A=0.55, B=1.5 is the paper's general setting, A=0.6, B=2.6 for Amazon, 0.5/0.4 for Wikipedia).

    >>> import numpy as np
    >>> p = label_propensities(np.eye(100))
    >>> p.shape, bool(p.max() < 1)
    ((100,), True)
    """
    y = as_label_matrix(train_Y, "train_Y")
    n = y.shape[0]
    if n < 1:
        raise ValueError("train_Y must hold at least one item to estimate propensities")
    counts = np.bincount(y.indices, minlength=y.shape[1]).astype(np.float64)
    c = (np.log(n) - 1.0) * (B + 1.0) ** A
    return 1.0 / (1.0 + c * np.exp(-A * np.log(counts + B)))


def psp_at_k(y_true: LabelMatrix, scores: np.ndarray | TopK, k: int, propensities: np.ndarray) -> float:
    """Normalised propensity-scored precision PSP@k (see the module docstring for the formula).

    ``propensities`` comes from :func:`label_propensities` on the *training* labels. The value
    is 1.0 when every item's top k are its k rarest (highest 1/p) true labels.

    >>> import numpy as np
    >>> y = np.array([[1, 1, 0]]); p = np.array([0.5, 0.25, 1.0])
    >>> psp_at_k(y, np.array([[0.9, 0.5, 0.1]]), 1, p)  # found 1/0.5 of the best 1/0.25
    0.5
    """
    y = as_label_matrix(y_true)
    inv = 1.0 / np.asarray(propensities, dtype=np.float64)
    if inv.shape != (y.shape[1],):
        raise ValueError(f"propensities must have shape ({y.shape[1]},) (one per label); got {inv.shape}")
    if not np.all(np.isfinite(inv)) or np.any(inv <= 0):
        raise ValueError("propensities must be finite and > 0")
    idx = _ranked_indices(scores, y.shape, k)
    gained = (_hits(y, idx) * np.where(idx >= 0, inv[np.maximum(idx, 0)], 0.0)).sum()
    weighted = y.multiply(inv[None, :]).tocsr()
    # best achievable: each item's k largest 1/p among its true labels (sort within rows)
    lengths = np.diff(weighted.indptr)
    row = np.repeat(np.arange(y.shape[0]), lengths)
    order = np.lexsort((-weighted.data, row))
    rank_in_row = np.arange(weighted.nnz) - np.repeat(weighted.indptr[:-1], lengths)
    best = weighted.data[order][rank_in_row < k].sum()
    return float(gained / best) if best > 0 else 0.0


# ---------------------------------------------------------------- ranking over all labels


def sorted_columns(
    scores: np.ndarray, y_csc: sp.csc_matrix, cols: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(block, s, y)`` over blocks of the label columns ``cols``: ``s`` [b, n] holds
    each column's scores sorted descending, ``y`` [b, n] its labels in that order (the order
    within a run of tied scores is arbitrary: callers read values only at the ends of runs).

    Columns are turned into contiguous rows before sorting (sorting along a strided axis
    is several times slower), and a block holds at most ~``BLOCK_ELEMENTS`` entries.
    """
    n = scores.shape[0]
    step = max(1, BLOCK_ELEMENTS // max(n, 1))
    for j in range(0, len(cols), step):
        block = cols[j : j + step]
        s = np.ascontiguousarray(scores[:, block].T)
        order = np.argsort(-s, axis=1)
        labels = y_csc[:, block].T.toarray()
        yield block, np.take_along_axis(s, order, axis=1), np.take_along_axis(labels, order, axis=1)


def average_precision_per_label(y_true: LabelMatrix, scores: np.ndarray) -> np.ndarray:
    """Average precision of each label column, float64 [C] (NaN for labels without positives).

    AP_c = sum over distinct thresholds t (descending) of (R_t - R_prev) * P_t, exactly
    ``sklearn.metrics.average_precision_score`` per column (tied scores form one threshold),
    but vectorised over blocks of columns instead of a Python loop over C labels.
    """
    y = as_label_matrix(y_true).tocsc()
    s = check_scores(scores, y.shape)
    n, c = y.shape
    ap = np.full(c, np.nan)
    npos = np.diff(y.indptr)
    for block, ss, ys in sorted_columns(s, y, np.flatnonzero(npos)):
        precision = np.cumsum(ys, axis=1) / np.arange(1, n + 1)
        # each positive earns the precision at the end of its run of tied scores
        is_end = np.ones_like(ss, dtype=bool)
        is_end[:, :-1] = ss[:, :-1] != ss[:, 1:]
        end = np.where(is_end, np.arange(n), n)
        run_end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
        ap[block] = (ys * np.take_along_axis(precision, run_end, axis=1)).sum(axis=1) / npos[block]
    return ap


#: The name of :func:`ranking_quality` for each target metric.
RANKING_NAMES = {"macro": "macro-AP", "micro": "micro-AP", "samples": "LRAP"}


def ranking_quality(y_true: LabelMatrix, scores: np.ndarray, metric: str) -> float:
    """How well ``scores`` rank ``y_true``, in the form of a target metric's F1
    (:func:`labelcon.heads.decisions.resolve_target_metric`): ``macro``: the mean AP of the
    labels with positives; ``micro``: the AP of all (item, label) entries ranked together,
    ``average_precision_score(y.ravel(), s.ravel())``; ``samples``: LRAP. NaN when no entry
    is positive.

    >>> y = np.array([[1, 0], [0, 1], [0, 0]]); s = np.array([[0.9, 0.8], [0.1, 0.7], [0.2, 0.3]])
    >>> ranking_quality(y, s, "macro"), round(ranking_quality(y, s, "micro"), 3)
    (0.75, 0.833)
    """
    y = as_label_matrix(y_true)
    if metric == "macro":
        ap = average_precision_per_label(y, scores)
        return float(np.nanmean(ap)) if not np.isnan(ap).all() else float("nan")
    if metric == "micro":
        flat = check_scores(scores, y.shape).reshape(-1, 1)
        return float(average_precision_per_label(y.reshape(-1, 1), flat)[0])
    if metric == "samples":
        return label_ranking_average_precision(y, scores) if y.nnz else float("nan")
    raise ValueError(f"expected a target metric macro, micro or samples, got {metric!r}")


def label_ranking_average_precision(y_true: LabelMatrix, scores: np.ndarray) -> float:
    """LRAP over items with at least one label.

    LRAP = mean_i (1/|Y_i|) sum_{l in Y_i} |{c in Y_i : s_ic >= s_il}| / |{c : s_ic >= s_il}|

    Equals ``sklearn.metrics.label_ranking_average_precision_score`` restricted to items with
    labels (sklearn counts an item without labels as 1.0), computed in blocks of O(nnz * C)
    comparisons instead of one full-row rank per item.
    """
    y = as_label_matrix(y_true)
    return _mean_over_labelled(y, lrap_per_item(y, scores))


def lrap_per_item(y_true: LabelMatrix, scores: np.ndarray) -> np.ndarray:
    """Each item's term of :func:`label_ranking_average_precision`, float64 [n] (NaN for
    items without labels). An item's term reads only its own row of scores, so the terms
    of consecutive row blocks, concatenated, are those of the whole matrix.
    """
    y = as_label_matrix(y_true)
    s = check_scores(scores, y.shape)
    n, c = y.shape
    lengths = np.diff(y.indptr)
    rows_with = np.flatnonzero(lengths)
    per_item = np.full(n, np.nan)
    start = 0
    budget = max(1, BLOCK_ELEMENTS // max(c, 1))  # (item, label) pairs per block
    cum = np.cumsum(lengths[rows_with])
    while start < rows_with.size:
        done = cum[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cum, done + budget, side="right")))
        rows = rows_with[start:stop]
        sub = y[rows]
        pair_row = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        block = s[rows]
        pair_score = block[pair_row, sub.indices]
        ge = block[pair_row] >= pair_score[:, None]
        rank = ge.sum(axis=1)
        relevant_ge = (ge & (sub.toarray() > 0)[pair_row]).sum(axis=1)
        per_item[rows] = np.bincount(pair_row, relevant_ge / rank, minlength=len(rows)) / lengths[rows]
        start = stop
    return per_item


def _mean_over_labelled(y: sp.csr_matrix, per_item: np.ndarray) -> float:
    """Mean of ``per_item`` over the items of ``y`` with at least one label (NaN if none)."""
    rows_with = np.flatnonzero(np.diff(y.indptr))
    return float(per_item[rows_with].mean()) if rows_with.size else float("nan")


# ---------------------------------------------------------------- the report


def evaluate(y_true: LabelMatrix, scores: np.ndarray, y_pred: LabelMatrix) -> dict[str, float]:
    """All headline metrics for one split, as plain floats (JSON-ready).

    - ``micro_f1``, ``macro_f1``, ``samples_f1``: F1 of ``y_pred`` as ``sklearn.metrics.f1_score``
      with ``zero_division=0`` gives it (macro averages over all C labels; samples over all
      items), for any C, one label column included.
    - ``macro_ap``: mean per-label average precision over labels with >= 1 positive in ``y_true``.
    - ``precision_at_1/3/5``: XMC P@k on ``scores``.
    - ``lrap``: label ranking average precision over items with >= 1 label.
    - ``hamming_loss``: fraction of wrong entries of ``y_pred``.
    - ``n_items``, ``n_labels``: the shape of ``y_true``.

    ``scores`` must be dense [n, C]; when that does not fit, :func:`evaluate_blocks` takes
    it a block of rows at a time.
    """
    y = as_label_matrix(y_true)
    s = check_scores(scores, y.shape)
    pred = _as_prediction(y_pred, y.shape)
    ranked = {k: _ranked_indices(s, y.shape, k) for k in TOP_KS}
    return _report(y, pred, ranked, lrap_per_item(y, s), average_precision_per_label(y, s))


def evaluate_blocks(y_true: LabelMatrix, blocks: Iterable[tuple[np.ndarray, LabelMatrix]]) -> dict[str, Any]:
    """:func:`evaluate` from consecutive row blocks ``(scores [b, C], y_pred [b, C])`` that
    cover ``y_true`` in order, holding one block of dense scores at a time.

    The metrics that read only an item's own row of scores come out as :func:`evaluate`
    computes them on the same scores and predictions: the F1s and ``hamming_loss`` (on
    the stacked sparse predictions), ``precision_at_k`` (each block's top k) and ``lrap``
    (:func:`lrap_per_item`). ``macro_ap`` needs every item's score for each label, so it
    is left out and the report says ``"skipped": ["macro_ap"]``.

    >>> y = np.array([[1, 0, 1], [0, 1, 0]])
    >>> s = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.1]], dtype=np.float32)
    >>> m = evaluate_blocks(y, [(s[:1], s[:1] >= 0.5), (s[1:], s[1:] >= 0.5)])
    >>> m["micro_f1"] == evaluate(y, s, s >= 0.5)["micro_f1"], m["skipped"]
    (True, ['macro_ap'])
    """
    y = as_label_matrix(y_true)
    preds = [sp.csr_matrix((0, y.shape[1]), dtype=np.float32)]
    ranked: dict[int, list[np.ndarray]] = {k: [np.empty((0, k), dtype=np.int64)] for k in TOP_KS}
    lrap = [np.empty(0)]
    start = 0
    for scores, y_pred in blocks:
        s = check_scores(scores, None)
        part = y[start : start + len(s)]
        if s.shape != part.shape:
            raise ValueError(
                f"a score block of shape {s.shape} starting at row {start} does not fit y_true of shape {y.shape}"
            )
        preds.append(_as_prediction(y_pred, part.shape))
        for k in TOP_KS:
            ranked[k].append(_ranked_indices(s, part.shape, k))
        lrap.append(lrap_per_item(part, s))
        start += len(s)
    if start != y.shape[0]:
        raise ValueError(f"the score blocks cover {start} rows but y_true has {y.shape[0]}")
    pred = sp.vstack(preds, format="csr")
    out = _report(y, pred, {k: np.concatenate(v) for k, v in ranked.items()}, np.concatenate(lrap), None)
    return {**out, "skipped": ["macro_ap"]}


def _report(
    y: sp.csr_matrix, pred: sp.csr_matrix, ranked: dict[int, np.ndarray], lrap: np.ndarray, ap: np.ndarray | None
) -> dict[str, float]:
    """The metrics of :func:`evaluate` from its pieces: ranked label indices per k, the
    per-item LRAP terms and the per-label AP (None: no ``macro_ap``)."""
    out = _f1_scores(y, pred)
    if ap is not None:
        out["macro_ap"] = np.nanmean(ap) if np.isfinite(ap).any() else float("nan")
    out.update({f"precision_at_{k}": _precision(y, idx, k) for k, idx in ranked.items()})
    entries = y.shape[0] * y.shape[1]
    out.update(
        {
            "lrap": _mean_over_labelled(y, lrap),
            "hamming_loss": (y != pred).nnz / entries if entries else 0.0,
            "n_items": y.shape[0],
            "n_labels": y.shape[1],
        }
    )
    return {key: (int(v) if key.startswith("n_") else float(v)) for key, v in out.items()}


def dense_rows(n_items: int, n_labels: int, seed: int) -> np.ndarray:
    """A seeded sample of row indices, sorted, small enough that its scores [rows, n_labels]
    stay within ``DENSE_EVALUATION`` entries (all rows when they fit).

    >>> dense_rows(5, 10, seed=0).tolist()
    [0, 1, 2, 3, 4]
    """
    return np.sort(np.random.default_rng(seed).permutation(n_items)[: DENSE_EVALUATION // max(n_labels, 1)])


def _f1_scores(y: sp.csr_matrix, pred: sp.csr_matrix) -> dict[str, float]:
    """Micro, macro and samples F1 of {0,1} CSR matrices of one shape, as
    ``sklearn.metrics.f1_score(..., zero_division=0)`` gives them for multi-label input,
    for any number of label columns (sklearn reads one column as binary targets, which it
    refuses sparse and has no samples average for)."""
    n, c = y.shape
    hits = y.multiply(pred).tocsr()
    per_label = [np.bincount(m.indices, minlength=c) for m in (hits, y, pred)]
    per_item = [np.diff(m.indptr) for m in (hits, y, pred)]
    return {
        "micro_f1": f1_from_counts(hits.nnz, y.nnz, pred.nnz).item(),
        "macro_f1": f1_from_counts(*per_label).mean() if c else 0.0,
        "samples_f1": f1_from_counts(*per_item).mean() if n else 0.0,
    }


def f1_from_counts(hits: np.ndarray | int, true: np.ndarray | int, predicted: np.ndarray | int) -> np.ndarray:
    """2 TP / (|true| + |predicted|), elementwise; 0 where both are empty."""
    total = np.asarray(true + predicted, dtype=np.float64)
    return np.divide(2.0 * np.asarray(hits), total, out=np.zeros_like(total), where=total > 0)
