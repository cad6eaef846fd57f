"""The per-epoch dev check of a training run: a kNN vote over a sample of train, scored on dev.

Cheap enough to run after every epoch: ``max_train`` training items are embedded and
indexed (:class:`labelcon.heads.KNNHead`), and dev is scored against them, on a seeded
sample of dev rows when dev x labels exceeds :data:`labelcon.metrics.DENSE_EVALUATION`.
Decisions use a fixed 0.5 threshold; the trainer keeps the epoch with the best macro-AP.
The check's ``texts`` attribute (how many texts it embeds) gives the trainer the
embedding speed from which it reserves time for the passes after training.
Embedding and the kNN search run on the encoder's device; both sets are embedded as
training computes (``encode(..., as_trained=True)``: bfloat16 where the hardware has it),
since only fitting reads them.

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


class KnnDevCheck:
    """The check as a function of the encoder being trained (:func:`knn_dev_check` makes
    it). ``texts``: how many texts a check embeds. After each call, when the check covers
    all of train and dev, ``embeddings`` holds them as ``(train, dev)`` in the data's row
    order: with the weights of the best check restored after training, they are the
    embeddings the prediction stage needs at the training length, not computed again."""

    def __init__(
        self,
        train_texts: Sequence[str],
        y_train: sp.csr_matrix,
        dev_texts: Sequence[str],
        y_dev: sp.csr_matrix,
        train_rows: np.ndarray,
        dev_rows: np.ndarray,
        show_progress: bool,
    ) -> None:
        self.train_texts, self.y_train, self.dev_texts, self.y_dev = train_texts, y_train, dev_texts, y_dev
        self.train_rows, self.dev_rows, self.show_progress = train_rows, dev_rows, show_progress
        self.texts = len(train_rows) + len(dev_rows)
        self.complete = len(train_rows) == len(train_texts) and len(dev_rows) == len(dev_texts)
        self.embeddings: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, encoder: Encoder) -> dict[str, float]:
        ref = encoder.encode(
            [self.train_texts[i] for i in self.train_rows], show_progress=self.show_progress, as_trained=True
        )
        head = build_head("knn").to(encoder.device).fit(ref, self.y_train[self.train_rows])
        dev = encoder.encode(
            [self.dev_texts[i] for i in self.dev_rows], show_progress=self.show_progress, as_trained=True
        )
        scores = head.predict_scores(dev)
        if self.complete:
            in_order = np.empty_like(ref), np.empty_like(dev)
            in_order[0][self.train_rows], in_order[1][self.dev_rows] = ref, dev
            self.embeddings = in_order
        return evaluate(self.y_dev[self.dev_rows], scores, scores >= 0.5)


def knn_dev_check(
    train_texts: Sequence[str],
    y_train: sp.csr_matrix,
    dev_texts: Sequence[str],
    y_dev: sp.csr_matrix,
    *,
    max_train: int,
    seed: int,
    show_progress: bool = False,
) -> KnnDevCheck:
    """The check as a function of the encoder being trained."""
    train_rows = np.random.default_rng(seed).permutation(len(train_texts))[:max_train]
    dev_rows = dense_rows(len(dev_texts), y_dev.shape[1], seed)
    return KnnDevCheck(train_texts, y_train, dev_texts, y_dev, train_rows, dev_rows, show_progress)


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


class CombinedCheck:
    """One check running each of ``checks`` in turn, their metrics in one dict; its
    ``embeddings`` are those of the first check that kept some (the labels' kNN check
    embeds train and dev, which the head can reuse).

    >>> CombinedCheck([lambda e: {"a": 1.0}, lambda e: {"b": 2.0}])(None)
    {'a': 1.0, 'b': 2.0}
    """

    def __init__(self, checks: Sequence[Callable[[Encoder], dict[str, float]]]) -> None:
        self.checks = list(checks)

    def __call__(self, encoder: Encoder) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for one in self.checks:
            metrics.update(one(encoder))
        return metrics

    @property
    def embeddings(self) -> tuple[np.ndarray, np.ndarray] | None:
        kept = (getattr(one, "embeddings", None) for one in self.checks)
        return next((found for found in kept if found is not None), None)


def combined_check(checks: Sequence[Callable[[Encoder], dict[str, float]]]) -> CombinedCheck | None:
    """:class:`CombinedCheck` of ``checks``, or None for none."""
    return CombinedCheck(checks) if checks else None
