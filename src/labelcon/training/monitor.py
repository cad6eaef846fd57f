"""The per-epoch dev check of a training run: a kNN vote over a sample of train, scored on dev.

Cheap enough to run after every epoch: ``max_train`` training items are embedded and
indexed (:class:`labelcon.heads.KNNHead`), and dev is scored against them, on a seeded
sample of dev rows when dev x labels exceeds :data:`labelcon.metrics.DENSE_EVALUATION`.
Decisions use a fixed 0.5 threshold; the trainer keeps the epoch with the best macro-AP.
Embedding and the kNN search run on the encoder's device.

Scored dev pairs (:func:`pair_dev_check`: Pearson and Spearman of the cosine) and dev
retrieval data (:func:`retrieval_dev_check`: nDCG@10, MRR@10, recall@k) are checked after
each epoch too, beside the labels' check (:func:`combined_check` merges their metrics);
a run without labels keeps the epoch with the best ``pairs_spearman``, or ``ndcg@10``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from labelcon.data.pairs import PairRecords
from labelcon.data.retrieval import RetrievalSet
from labelcon.embedding_metrics import pair_correlations, retrieval_metrics
from labelcon.encoders import Encoder
from labelcon.heads import build_head
from labelcon.metrics import dense_rows, evaluate


def knn_dev_check(
    train_texts: Sequence[str],
    y_train: sp.csr_matrix,
    dev_texts: Sequence[str],
    y_dev: sp.csr_matrix,
    *,
    max_train: int,
    seed: int,
    show_progress: bool = False,
) -> Callable[[Encoder], dict[str, float]]:
    """The check as a function of the encoder being trained."""
    train_rows = np.random.default_rng(seed).permutation(len(train_texts))[:max_train]
    dev_rows = dense_rows(len(dev_texts), y_dev.shape[1], seed)

    def check(encoder: Encoder) -> dict[str, float]:
        ref = encoder.encode([train_texts[i] for i in train_rows], show_progress=show_progress)
        head = build_head("knn").to(encoder.device).fit(ref, y_train[train_rows])
        dev = encoder.encode([dev_texts[i] for i in dev_rows], show_progress=show_progress)
        scores = head.predict_scores(dev)
        return evaluate(y_dev[dev_rows], scores, scores >= 0.5)

    return check


def pair_dev_check(pairs: PairRecords, *, show_progress: bool = False) -> Callable[[Encoder], dict[str, float]]:
    """Pearson and Spearman of the cosine on scored dev ``pairs``, as a function of the encoder."""
    if pairs.scores is None:
        raise ValueError("the dev check on pairs needs scored pairs (text1, text2, score): name --pair-score-field")

    def check(encoder: Encoder) -> dict[str, float]:
        first, second = (encoder.encode(column, show_progress=show_progress) for column in pairs.columns)
        return pair_correlations(first, second, pairs.scores)

    return check


def retrieval_dev_check(data: RetrievalSet, *, show_progress: bool = False) -> Callable[[Encoder], dict[str, float]]:
    """nDCG@10, MRR@10 and recall@k of the dev queries against their corpus by cosine, as a
    function of the encoder."""

    def check(encoder: Encoder) -> dict[str, float]:
        queries, corpus = (encoder.encode(texts, show_progress=show_progress) for texts in (data.queries, data.corpus))
        return retrieval_metrics(queries, corpus, data.relevant)

    return check


def combined_check(
    checks: Sequence[Callable[[Encoder], dict[str, float]]],
) -> Callable[[Encoder], dict[str, float]] | None:
    """One check running each of ``checks`` in turn, their metrics in one dict (None for none).

    >>> combined_check([lambda e: {"a": 1.0}, lambda e: {"b": 2.0}])(None)
    {'a': 1.0, 'b': 2.0}
    """
    if not checks:
        return None

    def check(encoder: Encoder) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for one in checks:
            metrics.update(one(encoder))
        return metrics

    return check
