"""kNN voting head: the labels of the nearest training items, weighted by similarity.

For a query x with neighbours N_k(x) (cosine, :class:`~labelcon.heads.index.NearestNeighbors`):

    w_j(x)   = exp(s(x, x_j) / tau) / sum_{l in N_k(x)} exp(s(x, x_l) / tau)     (softmax over the k)
    score_c  = sum_{j in N_k(x)} w_j(x) * Y_jc

so scores lie in [0, 1] and score_c is the similarity-weighted share of neighbours holding
label c. This is the weighted kNN of Wu et al. 2018 (instance discrimination, exp(s/tau)
votes) applied per label, the multi-label kNN classifier of Yang & Liu 1999; ``tau -> inf``
gives the plain vote share, small ``tau`` trusts the closest neighbours most.

score_c is non-zero only for labels of the k neighbours, so the scores are kept sparse
(:meth:`KNNHead.sparse_scores`) and ``predict_top_k`` reads the top labels off them
(:func:`~labelcon.metrics.sparse_top_k`): O(k * labels-per-item) per query, whatever C is.

>>> import numpy as np
>>> x = np.array([[1, 0], [0.95, 0.05], [0, 1], [0.05, 0.95]], dtype=np.float32)
>>> y = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
>>> head = KNNHead(k=2).fit(x, y)
>>> head.predict_scores(np.array([[1, 0.1]], dtype=np.float32)).round(2).tolist()
[[1.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from labelcon.heads.base import Head, check_embeddings, check_labels, labels_from_arrays, labels_to_arrays
from labelcon.heads.index import QUERY_BLOCK, NearestNeighbors
from labelcon.metrics import LabelMatrix, TopK, sparse_top_k


def neighbour_votes(sims: np.ndarray, idx: np.ndarray, labels: sp.csr_matrix, temperature: float) -> sp.csr_matrix:
    """The vote of the module docstring as float32 CSR [n, C]: ``sims``/``idx`` [n, k] are each
    query's hits (index -1 marks a missing hit), ``labels`` [items, C] the indexed items' labels.

    >>> neighbour_votes(np.array([[0.9, 0.9]]), np.array([[0, -1]]), sp.csr_matrix(np.eye(2)), 0.05).toarray().tolist()
    [[1.0, 0.0]]
    """
    valid = idx >= 0
    logits = np.where(valid, sims.astype(np.float64) / temperature, -np.inf)
    top = logits.max(axis=1, keepdims=True, initial=-np.inf)
    weights = np.exp(logits - np.where(np.isfinite(top), top, 0.0))  # softmax over each row's hits
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-300)
    indptr = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
    votes = sp.csr_matrix((weights[valid], idx[valid], indptr), shape=(len(idx), labels.shape[0]))
    scores = (votes @ labels).tocsr()
    scores.data = np.clip(scores.data.astype(np.float32), 0.0, 1.0)
    return scores


class KNNHead(Head):
    """Similarity-weighted kNN label voting (formula in the module docstring).

    ``exact`` is passed to :class:`NearestNeighbors` (None = exact up to 200k training
    items, faiss HNSW above when installed); :meth:`to` a device other than the CPU runs
    the exact search there in torch.
    """

    name = "knn"
    sparse = True

    def __init__(self, k: int = 20, temperature: float = 0.05, exact: bool | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.k = k
        self.temperature = temperature
        self.exact = exact
        self._device: torch.device | None = None  # where the exact search runs; None: numpy on the CPU

    def to(self, device: torch.device) -> KNNHead:
        """Search the neighbours in torch on ``device``; on the CPU in numpy, as always."""
        self._device = None if device.type == "cpu" else device
        if hasattr(self, "index_"):
            self.index_.to(self._device)
        return self

    def fit(self, embeddings: np.ndarray, Y: LabelMatrix) -> KNNHead:
        x = check_embeddings(embeddings)
        self.labels_ = check_labels(Y, len(x))
        self.index_ = NearestNeighbors(x, exact=self.exact, device=self._device)
        self.n_labels_, self.dim_ = self.labels_.shape[1], x.shape[1]
        return self

    def predict_scores(self, embeddings: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
        """Scores float32 [n, C]; ``exclude_self=True`` scores the training set leave-one-out
        (the embeddings must then be the training embeddings, in order)."""
        return self.sparse_scores(embeddings, exclude_self=exclude_self).toarray()

    def sparse_scores(self, embeddings: np.ndarray, *, exclude_self: bool = False) -> sp.csr_matrix:
        """The scores of :meth:`predict_scores` as a float32 CSR matrix [n, C] holding only
        the labels of each item's neighbours (at most k * labels-per-item entries a row)."""
        x = self._check_input(embeddings)
        sims, idx = self.index_.search(x, self.k, exclude_self=exclude_self)
        return neighbour_votes(sims, idx, self.labels_, self.temperature)

    def _rows_per_block(self) -> int:
        """Queries per block in :meth:`predict_top_k`: the sparse scores need no C-wide rows."""
        return QUERY_BLOCK

    def _top_k_block(self, x: np.ndarray, k: int) -> TopK:
        return sparse_top_k(self.sparse_scores(x), k)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"embeddings": self.index_.embeddings, **labels_to_arrays(self.labels_)}
        index_bytes = self.index_.serialize()
        if index_bytes is not None:
            arrays["faiss_index"] = index_bytes
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.labels_ = labels_from_arrays(arrays)
        index_bytes = arrays.get("faiss_index")
        self.index_ = NearestNeighbors(
            arrays["embeddings"], exact=index_bytes is None, index_bytes=index_bytes, device=self._device
        )
