"""What embeddings are for, measured: similarity of scored pairs, and retrieval.

- :func:`pair_correlations`: Pearson and Spearman correlation between the cosine of
  each pair's embeddings and its gold score (STS-B style; ``pairs_pearson``,
  ``pairs_spearman``), as sentence-transformers' ``EmbeddingSimilarityEvaluator``
  reports ``pearson_cosine`` and ``spearman_cosine``.
- :func:`retrieval_metrics`: every query against the whole corpus by cosine, and over
  the ranked corpus (best first; ties by corpus position), averaged over the queries
  that have a relevant item, with ``R`` a query's relevant items:
  ``ndcg@k`` = sum over relevant hits at rank r <= k of 1 / log2(r + 1), divided by
  the same sum for the ideal ranking (``min(|R|, k)`` hits first); ``mrr@k`` = 1 / the
  rank of the first relevant hit within k (0 if none); ``recall@k`` = relevant hits
  within k / |R|. These are the definitions of sentence-transformers'
  ``InformationRetrievalEvaluator`` (binary relevance).

>>> import numpy as np
>>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> c = np.array([[0.9, 0.1], [0.1, 0.9], [0.7, 0.7]])
>>> m = retrieval_metrics(q, c, [{2}, {1}], ks=(1, 2), ndcg_at=(2,), mrr_at=(2,))
>>> m["recall@1"], m["mrr@2"], round(m["ndcg@2"], 4)
(0.5, 0.75, 0.8155)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr

#: The embedding metrics that model cards and reports show, in this order, with their names.
EMBEDDING_METRICS = {
    "pairs_spearman": "pairs Spearman (cosine)",
    "pairs_pearson": "pairs Pearson (cosine)",
    "ndcg@10": "nDCG@10",
    "mrr@10": "MRR@10",
    "recall@10": "recall@10",
}

#: Queries scored against the corpus at a time (memory: this many rows of corpus scores).
QUERY_BLOCK = 256


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pair_correlations(first: np.ndarray, second: np.ndarray, scores: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation of ``cos(first_i, second_i)`` with ``scores``.

    >>> a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    >>> b = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> pair_correlations(a, b, [5.0, 2.5, 0.0])["pairs_spearman"]
    1.0
    """
    if len(first) != len(second) or len(first) != len(scores):
        raise ValueError(
            f"expected one score per pair, got {len(first)} and {len(second)} embeddings and {len(scores)} scores"
        )
    if len(scores) < 2:
        raise ValueError(f"correlations need at least 2 pairs, got {len(scores)}")
    cosines = (_unit(first) * _unit(second)).sum(axis=1)
    return {
        "pairs_pearson": float(pearsonr(scores, cosines)[0]),
        "pairs_spearman": float(spearmanr(scores, cosines)[0]),
    }


def retrieval_metrics(
    queries: np.ndarray,
    corpus: np.ndarray,
    relevant: Sequence[set[int]],
    *,
    ks: Sequence[int] = (1, 3, 5, 10, 100),
    ndcg_at: Sequence[int] = (10,),
    mrr_at: Sequence[int] = (10,),
) -> dict[str, float]:
    """``ndcg@k`` (``ndcg_at``), ``mrr@k`` (``mrr_at``) and ``recall@k`` (``ks``) of
    ``queries`` [Q, D] against ``corpus`` [N, D], ``relevant[q]`` holding the corpus
    positions relevant to query q; see the module docstring. Queries without a relevant
    item are left out, as sentence-transformers does."""
    if len(queries) != len(relevant):
        raise ValueError(
            f"expected one set of relevant items per query, got {len(queries)} queries and {len(relevant)} sets"
        )
    kept = [q for q, items in enumerate(relevant) if items]
    if not kept:
        raise ValueError("no query has a relevant corpus item")
    depth = min(max([*ks, *ndcg_at, *mrr_at]), len(corpus))
    corpus_unit = _unit(corpus)
    ranked = np.empty((len(kept), depth), dtype=np.int64)
    for start in range(0, len(kept), QUERY_BLOCK):
        rows = kept[start : start + QUERY_BLOCK]
        scores = _unit(queries[rows]) @ corpus_unit.T
        # a stable sort of -score ranks ties by corpus position
        ranked[start : start + len(rows)] = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    hits = np.array([np.isin(ranked[i], list(relevant[q])) for i, q in enumerate(kept)], dtype=np.float64)
    sizes = np.array([len(relevant[q]) for q in kept], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    metrics: dict[str, float] = {}
    for k in ndcg_at:
        ideal = np.array([discounts[: int(min(size, k))].sum() for size in sizes])
        metrics[f"ndcg@{k}"] = float(np.mean((hits[:, :k] * discounts[:k]).sum(axis=1) / ideal))
    for k in mrr_at:
        first = hits[:, :k].argmax(axis=1)
        found = hits[:, :k].any(axis=1)
        metrics[f"mrr@{k}"] = float(np.mean(np.where(found, 1.0 / (first + 1), 0.0)))
    for k in ks:
        metrics[f"recall@{k}"] = float(np.mean(hits[:, :k].sum(axis=1) / sizes))
    return metrics
