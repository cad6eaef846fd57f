"""Cosine nearest-neighbour search: exact blocked products, or faiss HNSW for large sets.

``NearestNeighbors(embeddings, exact=None)`` L2-normalises its rows and answers
``search(queries, k) -> (similarities [m, k], indices [m, k])``, best first, similarity =
cosine. Backends:

- exact: blocks of queries against chunks of items, ``queries_block @ chunk.T`` then the
  chunk's top k merged into the running top k; a block holds at most ``block_elements``
  similarities, so memory is bounded for any n.
- faiss: ``IndexHNSWFlat`` with inner-product metric (Malkov & Yashunin 2018), chosen
  automatically when faiss is installed and n > ``APPROXIMATE_ABOVE``; ``exact=False``
  asks for it at any size (with a warning and the exact backend if faiss is missing).

The exact search runs in numpy on the CPU, or with ``device`` set (a ``torch.device``,
:meth:`NearestNeighbors.to`) as the same blocked products in torch on that device, the
items copied there once: a GPU answers the queries of a block in one matrix product.

``exclude_self=True`` treats the queries as the indexed set itself, row for row, and drops
each row's own index from its neighbours (leave-one-out), so training items do not vote
for themselves.

>>> import numpy as np
>>> nn = NearestNeighbors(np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32))
>>> sims, idx = nn.search(np.array([[1, 0]], dtype=np.float32), 2)
>>> idx.tolist()
[[0, 1]]
>>> nn.search(nn.embeddings, 1, exclude_self=True)[1].ravel().tolist()
[1, 0, 1]
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import torch

from labelcon.heads.base import check_embeddings, l2_normalize
from labelcon.metrics import BLOCK_ELEMENTS, top_k

APPROXIMATE_ABOVE = 200_000
#: Queries per block of the exact search, and of every query-blocked loop over a head's scores.
QUERY_BLOCK = 1024


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package can be imported."""
    return importlib.util.find_spec("faiss") is not None


def exact_by_default(n_items: int) -> bool:
    """The automatic backend choice: exact search up to ``APPROXIMATE_ABOVE`` items (or
    when faiss is missing), faiss HNSW above."""
    return not (faiss_available() and n_items > APPROXIMATE_ABOVE)


class NearestNeighbors:
    """Cosine k-nearest-neighbour index over fixed embeddings.

    ``exact``: None = automatic (faiss HNSW above ``APPROXIMATE_ABOVE`` items if installed),
    True = always exact, False = faiss HNSW (exact with a warning when faiss is missing).
    ``hnsw_m`` / ``ef_construction`` / ``ef_search`` tune the HNSW graph (search uses
    ``max(ef_search, k)``). ``index_bytes`` restores a serialised faiss index (see
    :meth:`serialize`) instead of rebuilding it. ``device``: where the exact search runs
    (None: numpy on the CPU; see :meth:`to`).
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        exact: bool | None = None,
        *,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
        block_elements: int = BLOCK_ELEMENTS,
        index_bytes: np.ndarray | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.embeddings = l2_normalize(check_embeddings(embeddings))
        n, dim = self.embeddings.shape
        if exact is None:
            exact = exact_by_default(n)
        elif not exact and not faiss_available():
            warnings.warn("faiss is not installed (pip install faiss-cpu); using exact search", stacklevel=2)
            exact = True
        self.exact = exact
        self.ef_search = ef_search
        self.block_elements = block_elements
        self._faiss = None
        if not exact:
            import faiss

            if index_bytes is not None:
                self._faiss = faiss.deserialize_index(np.asarray(index_bytes, dtype=np.uint8))
            else:
                self._faiss = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
                self._faiss.hnsw.efConstruction = ef_construction
                self._faiss.add(self.embeddings)
            if self._faiss.ntotal != n or self._faiss.d != dim:
                raise ValueError(
                    f"saved faiss index holds {self._faiss.ntotal}x{self._faiss.d}; the embeddings are {n}x{dim}"
                )
        self.to(device)

    def __len__(self) -> int:
        return len(self.embeddings)

    def to(self, device: torch.device | None) -> NearestNeighbors:
        """Run the exact search in torch on ``device`` (None: in numpy on the CPU); a
        faiss index keeps searching on the CPU."""
        self.device = device
        exact_on_device = device is not None and self._faiss is None
        self._items = torch.from_numpy(self.embeddings).to(device) if exact_on_device else None
        return self

    def serialize(self) -> np.ndarray | None:
        """The faiss index as a uint8 array (None for the exact backend, which needs no state)."""
        if self._faiss is None:
            return None
        import faiss

        return faiss.serialize_index(self._faiss)

    def search(self, queries: np.ndarray, k: int, *, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and indices of the ``k`` nearest items, float32/int64 [m, k].

        ``k`` is clipped to the number of candidates (n, or n - 1 with ``exclude_self``).
        The faiss backend may return fewer than k hits for a query; missing slots hold
        index -1 and similarity -inf.
        """
        q = l2_normalize(check_embeddings(queries, self.embeddings.shape[1], "queries"))
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        if exclude_self and len(q) != len(self):
            raise ValueError(
                f"exclude_self=True needs the indexed items themselves as queries ({len(self)} rows); got {len(q)}"
            )
        k = min(k, len(self) - int(exclude_self))
        if k < 1:
            return np.empty((len(q), 0), dtype=np.float32), np.empty((len(q), 0), dtype=np.int64)
        fetch = k + int(exclude_self)
        if self._faiss is not None:
            sims, idx = self._search_faiss(q, fetch)
        else:
            sims, idx = self._search_exact(q, fetch) if self._items is None else self._search_torch(q, fetch)
        if exclude_self:
            own = idx == np.arange(len(q))[:, None]
            own[~own.any(axis=1), -1] = True  # self not among the hits: drop the farthest instead
            keep = ~own
            sims, idx = sims[keep].reshape(len(q), k), idx[keep].reshape(len(q), k)
        return sims, idx

    def _search_exact(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Blocked over queries and items: ``QUERY_BLOCK`` queries at a time against chunks of
        items holding at most ``block_elements`` similarities, each chunk's top k merged into
        the running best. The items stream once per query block, and each matrix product
        has a small, cache-sized operand instead of the whole index."""
        sims = np.empty((len(q), k), dtype=np.float32)
        idx = np.empty((len(q), k), dtype=np.int64)
        q_step = max(1, min(len(q), QUERY_BLOCK))
        i_step = max(k, self.block_elements // q_step)
        for start in range(0, len(q), q_step):
            block = q[start : start + q_step]
            best_i, best_s = top_k(block @ self.embeddings[:i_step].T, k)
            for offset in range(i_step, len(self), i_step):
                chunk_i, chunk_s = top_k(block @ self.embeddings[offset : offset + i_step].T, k)
                pick, best_s = top_k(np.hstack([best_s, chunk_s]), k)
                best_i = np.take_along_axis(np.hstack([best_i, chunk_i + offset]), pick, axis=1)
            sims[start : start + q_step], idx[start : start + q_step] = best_s, best_i
        return sims, idx

    def _search_torch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_search_exact`'s blocks as torch products on :attr:`device`: a block of
        queries against all items at once when that fits ``block_elements``, else chunk
        by chunk with the running top k merged as there."""
        sims = np.empty((len(q), k), dtype=np.float32)
        idx = np.empty((len(q), k), dtype=np.int64)
        q_step = max(1, min(len(q), QUERY_BLOCK))
        i_step = max(k, self.block_elements // q_step)
        for start in range(0, len(q), q_step):
            block = torch.from_numpy(q[start : start + q_step]).to(self.device)
            best_s, best_i = _top_k(block @ self._items[:i_step].T, k)
            for offset in range(i_step, len(self), i_step):
                chunk_s, chunk_i = _top_k(block @ self._items[offset : offset + i_step].T, k)
                best_s, pick = torch.topk(torch.cat([best_s, chunk_s], dim=1), k, dim=1)
                best_i = torch.gather(torch.cat([best_i, chunk_i + offset], dim=1), 1, pick)
            sims[start : start + q_step], idx[start : start + q_step] = best_s.cpu().numpy(), best_i.cpu().numpy()
        return sims, idx

    def _search_faiss(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._faiss.hnsw.efSearch = max(self.ef_search, k)
        sims, idx = self._faiss.search(q, k)
        sims[idx < 0] = -np.inf
        return sims.astype(np.float32), idx.astype(np.int64)


def _top_k(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest of each row and their columns, best first (all columns when fewer)."""
    return torch.topk(sims, min(k, sims.shape[1]), dim=1)
