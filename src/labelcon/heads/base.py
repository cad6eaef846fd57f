"""The ``Head`` contract: frozen embeddings in, per-label scores in [0, 1] out.

A head is fitted on L2-normalised training embeddings [n, D] and a {0,1} label matrix
[n, C] (CSR or dense), predicts float32 scores [n, C], and saves itself to a directory:
``head.json`` (type, parameters, shapes) plus ``arrays.npz``, both written atomically.
``Head.load`` reads ``head.json`` and dispatches on its ``type``.

>>> import numpy as np, tempfile
>>> from labelcon.heads import build_head
>>> x = np.eye(4, dtype=np.float32); y = np.eye(4)
>>> head = build_head("prototype").fit(x, y)
>>> d = head.save(tempfile.mkdtemp())
>>> bool(np.array_equal(Head.load(d).predict_scores(x), head.predict_scores(x)))
True
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import expit

from labelcon.filecheck import expect_object, reading
from labelcon.io import atomic_open, read_json, write_json
from labelcon.metrics import BLOCK_ELEMENTS, LabelMatrix, TopK, as_label_matrix, concat_top_k, top_k
from labelcon.parts import check_head

HEAD_FILE = "head.json"
ARRAYS_FILE = "arrays.npz"
FORMAT = 1
PAIR_BLOCK = 1 << 22  # entries of the (pair x dim) working array in pair_dots
_REGISTRY: dict[str, type[Head]] = {}


def check_embeddings(x: np.ndarray, dim: int | None = None, name: str = "embeddings") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 [n, D] array; reject other shapes and non-finite values."""
    if sp.issparse(x):
        raise ValueError(f"{name} must be a dense array [n, D]; got a sparse matrix")
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_items, dim]; got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} must have dim {dim} (as in fit); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32. Rows already of unit norm (within 1e-5) are
    returned unchanged, so normalising twice is a no-op; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms = np.where(np.abs(norms - 1) < 1e-5, np.float32(1), np.maximum(norms, np.float32(1e-12)))
    return x / norms


def check_labels(y: LabelMatrix, n_items: int) -> sp.csr_matrix:
    """A {0,1} CSR label matrix with one row per embedding."""
    m = as_label_matrix(y, "Y")
    if m.shape[0] != n_items:
        raise ValueError(f"Y has {m.shape[0]} rows but the embeddings have {n_items}; they must match")
    return m


class FallbackThreshold(NamedTuple):
    """Label ``columns`` that a head scores for one decision ``threshold`` of its own."""

    columns: list[int]
    threshold: float


class Head(ABC):
    """Base class: ``fit``, ``predict_scores``, ``predict_top_k``, ``save``, ``load``.

    Subclasses set ``name`` (registering them for :func:`build_head` and :meth:`load`),
    keep their constructor arguments as attributes of the same name, and implement
    ``fit``, ``predict_scores``, ``_arrays`` (state to save) and ``_restore``.

    What heads differ in is declared here, so that code outside ``heads/`` never asks
    for a head's class:

    - ``needs_texts`` (False): the scorer reads texts, not embeddings (the lexical vote
      of :mod:`labelcon.heads.lexical` says True);
    - ``needs_label_embeddings`` (False): ``fit`` takes ``label_embeddings=`` [C, D], the
      embedded label texts, and :meth:`add_labels` can add labels after training;
    - ``sparse`` (False): :meth:`sparse_scores` is the head's own route, with few
      non-zeros a row, so a mix with other sparse scores stays sparse for any C;
    - :attr:`fallback_threshold` (None): label columns the head scores for one
      threshold it brings itself, which calibration and the lexical mix leave alone.
    """

    name: ClassVar[str] = ""
    needs_texts: ClassVar[bool] = False
    needs_label_embeddings: ClassVar[bool] = False
    sparse: ClassVar[bool] = False
    n_labels_: int
    dim_: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    @abstractmethod
    def fit(self, embeddings: np.ndarray, Y: LabelMatrix) -> Head:
        """Fit on training embeddings [n, D] and labels [n, C]; returns ``self``."""

    @abstractmethod
    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores float32 [n, C] in [0, 1]."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """Fitted state as named arrays."""

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of ``_arrays``."""

    @property
    def fallback_threshold(self) -> FallbackThreshold | None:
        """The columns this head scores for a threshold of its own, with it; None for most heads."""
        return None

    def sparse_scores(self, embeddings: np.ndarray) -> sp.csr_matrix:
        """The scores of :meth:`predict_scores` as a float32 CSR matrix [n, C]."""
        return sp.csr_matrix(self.predict_scores(embeddings))

    def to(self, device: torch.device) -> Head:
        """Score on ``device`` where the head has a part that gains from it (the kNN
        head's search; the others score in numpy on the CPU). Returns ``self``."""
        return self

    def add_labels(self, label_embeddings: np.ndarray) -> Head:
        """Append labels never seen in training, from their texts' embeddings [m, D]."""
        raise ValueError(f"the {self.name!r} head cannot add labels after training; the 'label_text' head can")

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, JSON-ready."""
        return {p: getattr(self, p) for p in inspect.signature(type(self).__init__).parameters if p != "self"}

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_labels_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or Head.load() first")

    def _check_input(self, embeddings: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return check_embeddings(embeddings, self.dim_)

    def predict_top_k(self, embeddings: np.ndarray, k: int, *, block_size: int | None = None) -> TopK:
        """The ``k`` best labels per item, ``(indices [n, k], scores [n, k])``, best first.

        Items are scored ``block_size`` at a time; by default as many as keep one block of
        scores at about ``2^23`` entries (83 items at 10^5 labels), so memory stays bounded
        for any number of items and labels, never ``n * C``. The pair feeds
        :func:`labelcon.metrics.precision_at_k` and friends directly.
        """
        x = self._check_input(embeddings)
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1; got {block_size}")
        k = min(k, self.n_labels_)
        step = block_size or self._rows_per_block()
        return concat_top_k([self._top_k_block(x[i : i + step], k) for i in range(0, len(x), step)], k)

    def _rows_per_block(self) -> int:
        """Items per block in :meth:`predict_top_k`: a block of dense scores near ``2^23`` entries."""
        return max(1, BLOCK_ELEMENTS // max(self.n_labels_, 1))

    def _top_k_block(self, x: np.ndarray, k: int) -> TopK:
        """Top-k of one block of checked embeddings; heads with a cheaper route override it."""
        return top_k(self.predict_scores(x), k)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``arrays.npz`` then ``head.json`` into ``directory`` (each atomically)."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_open(directory / ARRAYS_FILE, "wb") as handle:
            np.savez(handle, **self._arrays())
        meta = {
            "type": self.name,
            "format": FORMAT,
            "params": self.get_params(),
            "n_labels": self.n_labels_,
            "dim": self.dim_,
        }
        write_json(directory / HEAD_FILE, meta)
        return directory

    @staticmethod
    def load(directory: str | os.PathLike) -> Head:
        """Rebuild the head saved in ``directory`` by :meth:`save`. A file that is missing,
        unreadable or not as saved raises :class:`labelcon.filecheck.ModelLoadError` naming it;
        the arrays must score as many labels as ``head.json`` says, from embeddings of its dim."""
        directory = Path(directory)
        meta_path, arrays_path = directory / HEAD_FILE, directory / ARRAYS_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory}: no {HEAD_FILE}; expected a directory written by Head.save()")
        with reading(meta_path):
            fields = {"type": str, "format": int, "params": dict, "n_labels": int, "dim": int}
            meta = expect_object(read_json(meta_path), fields)
            if meta["format"] != FORMAT:
                raise ValueError(f"format {meta['format']!r}, this labelcon reads {FORMAT}")
            if meta["n_labels"] < 1 or meta["dim"] < 1:
                raise ValueError(f"expected n_labels and dim >= 1, got {meta['n_labels']} and {meta['dim']}")
            head = build_head(meta["type"], **meta["params"])
        with reading(arrays_path):
            with np.load(arrays_path, allow_pickle=False) as data:
                head._restore({key: data[key] for key in data.files})
        head.n_labels_, head.dim_ = meta["n_labels"], meta["dim"]
        with reading(meta_path):  # the arrays read: the sizes head.json gives must fit them
            try:
                width = head.predict_scores(np.zeros((1, head.dim_), dtype=np.float32)).shape[1]
            except Exception as error:
                raise ValueError(
                    f"says dim {head.dim_}, which the arrays in {ARRAYS_FILE} do not take "
                    f"({type(error).__name__}: {error})"
                ) from error
            if width != head.n_labels_:
                raise ValueError(
                    f"says n_labels {head.n_labels_}, but the arrays in {ARRAYS_FILE} score {width} labels"
                )
        return head


def build_head(name: str, **params: Any) -> Head:
    """Construct a head by name: ``"knn"``, ``"prototype"``, ``"linear"`` or ``"label_text"``.

    >>> build_head("knn", k=5).k
    5
    """
    check_head(name, params)
    return _REGISTRY[name](**params)


def label_pairs(y: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(item, label) of every 1 of a CSR label matrix, row-major: two int arrays [nnz]."""
    return np.repeat(np.arange(y.shape[0]), np.diff(y.indptr)), y.indices.astype(np.int64)


def pair_dots(a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """``out[p] = a[a_rows[p]] . b[b_rows[p]]`` in float64, gathered ``PAIR_BLOCK`` entries
    of the (pair x dim) working array at a time: O(pairs * D) work, never a [n, C] product.

    >>> pair_dots(np.eye(2), np.array([0, 1]), np.array([[2.0, 0], [0, 3]]), np.array([0, 0])).tolist()
    [2.0, 0.0]
    """
    out = np.empty(len(a_rows))
    step = max(1, PAIR_BLOCK // max(a.shape[1], 1))
    for s in range(0, len(a_rows), step):
        out[s : s + step] = np.einsum("pd,pd->p", a[a_rows[s : s + step]], b[b_rows[s : s + step]], dtype=np.float64)
    return out


def sigmoid_top_k(logits: np.ndarray, k: int) -> TopK:
    """Top-k of ``sigmoid(logits)``, ranked by the logits: sigmoid is monotone, and in
    float32 it rounds to 1.0 for logits above ~17, where the logits still tell labels apart.

    >>> sigmoid_top_k(np.array([[40.0, 20.0, -1.0]], dtype=np.float32), 2)[0].tolist()
    [[0, 1]]
    """
    idx, values = top_k(logits, k)
    return idx, expit(values).astype(np.float32, copy=False)


def csr_to_arrays(m: sp.csr_matrix, prefix: str) -> dict[str, np.ndarray]:
    """A CSR matrix with its values as plain arrays (for ``.npz``), keys ``{prefix}_data``,
    ``_indices``, ``_indptr`` and ``_shape``."""
    return {f"{prefix}_data": m.data, **labels_to_arrays(m, prefix)}


def csr_from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """Inverse of :func:`csr_to_arrays`."""
    shape = tuple(arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )


def labels_to_arrays(y: sp.csr_matrix, prefix: str = "labels") -> dict[str, np.ndarray]:
    """A CSR {0,1} matrix as plain arrays (for ``.npz``)."""
    return {f"{prefix}_indptr": y.indptr, f"{prefix}_indices": y.indices, f"{prefix}_shape": np.array(y.shape)}


def labels_from_arrays(arrays: dict[str, np.ndarray], prefix: str = "labels") -> sp.csr_matrix:
    """Inverse of :func:`labels_to_arrays`."""
    indices = arrays[f"{prefix}_indices"]
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, arrays[f"{prefix}_indptr"]), shape=tuple(arrays[f"{prefix}_shape"]))
