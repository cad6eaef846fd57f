"""Dense + sparse: one linear ranker over a text's TF-IDF vector and its embedding together.

PECOS XR-Transformer (Zhang et al. 2021, "Fast multi-resolution transformer fine-tuning
for extreme multi-label text classification", NeurIPS) ranks labels with a linear model
over the concatenation of the TF-IDF features and the fine-tuned embedding: the words
carry the labels that are readable from them, the embedding the ones that are not, and
the two together beat either alone on EURLex-4K and larger sets. Here::

    x_i  = [ tfidf(text_i) ; s * z_i ]          sparse, V + D columns (s = ``dense_scale``)
    m_ic = w_c . x_i + b_c                      one L2-regularised linear model per label
    p_ic = sigmoid(a * m_ic + a0)               one Platt scaling shared by all labels

The per-label model is, by default (``loss="squared_hinge"``), scikit-learn's
``LinearSVC(C)``: liblinear's L2-loss SVM, the linear text classifier of Joachims (1998)
and of PECOS's rankers; ``loss="logistic"`` is ``LogisticRegression(C, solver="liblinear")``.
On Reuters-21578 with the fine-tuned MiniLM embedding, the SVM at ``C=1`` ranked test
labels at macro-AP 0.764 against 0.688 for the logistic model at ``C=4``, in half its fit
time (BENCHMARKS.md, dense + sparse). The margins ``m`` of different labels are
on one scale (the hinge puts the training positives at ``m >= 1`` and the negatives at
``m <= -1``), so one pair ``(a, a0)`` maps them to probabilities that mix with a head's
(Platt 1999, "Probabilistic outputs for support vector machines"): :meth:`calibrate`
fits it by logistic regression on held-out margins (the prediction stage gives dev);
uncalibrated, ``(a, a0) = (1, 0)`` (the logistic model's own probabilities). The TF-IDF
features are :class:`labelcon.heads.lexical.LexicalFeatures` fitted on the training
texts, and ``z_i`` the L2-normalised embedding (both halves have unit norm at ``s = 1``).

Sparse and block-wise, so 10^5 labels and 10^6 items fit in memory:

- after each label's fit, weights below ``prune`` in absolute value are dropped (DiSMEC,
  Babbar and Schoelkopf 2017): the model is one CSR matrix [C, V + D] of the kept
  weights and the intercepts [C], never a dense [V + D, C] array;
- scoring takes ``BLOCK_ELEMENTS / BLOCK_COPIES`` logits at a time (a block holds up to
  ``BLOCK_COPIES`` dense arrays of float32 size at once) and keeps the probabilities of at
  least ``floor``: the output is CSR [n, C], as the kNN vote's, and mixes into a head's
  scores through :func:`labelcon.heads.lexical.mix_scores`.

A label no training item holds scores 0; one every item holds scores 1. Fitting costs one
liblinear solve per label over all n training rows (its time grows as n x C), the labels
solved in parallel threads.

**Many labels: a shortlist.** With more than ``shortlist`` labels, each item is matched to
the ``shortlist`` labels whose centroids lie nearest, and each label's model is fitted on
its positives and the training items it is shortlisted for (their hardest negatives), and
scores only the items it is shortlisted for, as Slice (Jain et al. 2019, "Slice: scalable
linear extreme classifiers trained on 100 million labels", WSDM) and the matcher-ranker
split of PECOS do::

    mu_c = normalise(sum_(i holds c) x_i)       label centroid, weights below ``prune`` dropped
    S(i) = the ``shortlist`` labels c with the largest x_i . mu_c
    m_ic = w_c . x_i + b_c  for c in S(i);  no score otherwise

A label's fit then reads about ``n x shortlist / C`` rows, not n. On the arXiv proxy with
titles (8,000 texts, 5,080 labels) TF-IDF SVMs on a 400-label shortlist ranked test at
P@1 0.688 and P@5 0.367 in 23 s, the full one-vs-rest at 0.688 and 0.363 in 89 s; a
100-label shortlist held 81% of the test labels and lost 0.07 P@1 (BENCHMARKS.md).

>>> import numpy as np
>>> texts = ["wheat exports rose", "wheat prices fell", "oil prices rose", "oil output fell"]
>>> z = np.eye(4, dtype=np.float32)
>>> ranker = DenseSparseLinear(C=10.0).fit(texts, np.array([[1, 0], [1, 0], [0, 1], [0, 1]]), z)
>>> ranker.sparse_scores(["wheat harvest"], z[:1]).toarray().argmax()
np.int64(0)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC
from tqdm.auto import tqdm

from labelcon.filecheck import reading
from labelcon.heads.base import check_embeddings, check_labels, csr_from_arrays, csr_to_arrays
from labelcon.heads.lexical import LexicalFeatures, sparse_blocks
from labelcon.io import atomic_open
from labelcon.metrics import BLOCK_ELEMENTS, LabelMatrix

RANKER_FILE = "dense_sparse.npz"
#: The per-label linear models: liblinear's L2-loss SVM or its logistic regression.
LOSSES = ("squared_hinge", "logistic")
#: Dense [rows, C] arrays of float32 size that one block of scoring holds at once (the
#: shortlist's int64 ranks count twice): blocks take ``BLOCK_ELEMENTS / BLOCK_COPIES`` entries.
BLOCK_COPIES = 4
#: The labels each item is matched to when there are more (``shortlist``; module docstring).
SHORTLIST = 400
#: :meth:`DenseSparseLinear.calibrate` fits the Platt scaling on every positive margin and at
#: most this many negative ones (a seeded sample, weighted back to their count).
CALIBRATION_NEGATIVES = 200_000


class DenseSparseLinear:
    """One-vs-rest linear models on ``[tfidf ; dense_scale * embedding]`` (module docstring).

    ``C``: inverse L2 strength (sklearn's). ``loss``: one of :data:`LOSSES`. ``prune``:
    weights of smaller magnitude are dropped after each label's fit. ``floor``:
    probabilities below it score 0. ``n_jobs``: labels fitted at once, in threads
    (liblinear runs without the GIL); None: one per CPU. The threads share liblinear's
    random generator, so weights differ between threaded runs within the solver's
    tolerance; ``n_jobs=1`` repeats bit for bit. ``shortlist``: with more labels than this,
    each item is scored for this many labels, those of the nearest centroids (module
    docstring); None: every label.
    """

    #: A scorer of texts and embeddings: the prediction stage gives it both.
    needs_texts: ClassVar[bool] = True
    needs_embeddings: ClassVar[bool] = True
    #: The file that holds the scorer's labels (named in load errors).
    labels_file: ClassVar[str] = RANKER_FILE

    def __init__(
        self,
        C: float = 1.0,
        dense_scale: float = 1.0,
        prune: float = 0.01,
        floor: float = 1e-3,
        n_jobs: int | None = None,
        loss: Literal["squared_hinge", "logistic"] = "squared_hinge",
        shortlist: int | None = SHORTLIST,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
        if C <= 0:
            raise ValueError(f"C must be > 0; got {C}")
        if dense_scale < 0:
            raise ValueError(f"dense_scale must be >= 0; got {dense_scale}")
        if prune < 0:
            raise ValueError(f"prune must be >= 0; got {prune}")
        if not 0 <= floor < 1:
            raise ValueError(f"floor must be in [0, 1); got {floor}")
        if shortlist is not None and shortlist < 1:
            raise ValueError(f"shortlist must be >= 1 or None (every label); got {shortlist}")
        if n_jobs is not None and n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1 or None (one per CPU); got {n_jobs}")
        self.C, self.dense_scale, self.prune, self.floor, self.n_jobs = C, dense_scale, prune, floor, n_jobs
        self.loss, self.shortlist = loss, shortlist
        #: The Platt scaling ``(a, a0)`` of the margins (:meth:`calibrate`).
        self.platt = (1.0, 0.0)

    def _inputs(self, texts: Sequence[str], embeddings: np.ndarray) -> sp.csr_matrix:
        """``[tfidf ; dense_scale * z]`` as float64 CSR (liblinear's type: no copy per label)."""
        texts = list(texts)
        z = check_embeddings(embeddings)
        if len(z) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(z)} embeddings; expected one embedding per text")
        if hasattr(self, "dim_") and z.shape[1] != self.dim_:
            raise ValueError(f"embeddings must have dim {self.dim_} (as in fit); got shape {z.shape}")
        sparse = self.features_.transform(texts)
        return sp.hstack([sparse, sp.csr_matrix(self.dense_scale * z)], format="csr", dtype=np.float64)

    def fit(
        self, texts: Sequence[str], Y: LabelMatrix, embeddings: np.ndarray, *, show_progress: bool = False
    ) -> DenseSparseLinear:
        """Fit the TF-IDF features on ``texts``, then one linear model per label of ``Y``
        [n, C] on the texts' features beside their ``embeddings`` [n, D]; the Platt scaling
        is reset to ``(1, 0)``."""
        texts = list(texts)
        y = check_labels(Y, len(texts)).tocsc()
        self.features_ = LexicalFeatures().fit(texts)
        self.dim_ = check_embeddings(embeddings).shape[1]
        x = self._inputs(texts, embeddings)
        n_labels = y.shape[1]
        positives = [y.indices[y.indptr[c] : y.indptr[c + 1]] for c in range(n_labels)]
        self._set_centroids(x, y)
        shortlisted = self._shortlisted_rows(x)
        with ThreadPoolExecutor(max_workers=self.n_jobs or os.cpu_count()) as pool:  # liblinear frees the GIL
            fits = list(
                tqdm(
                    pool.map(lambda c: self._fit_label(x, positives[c], shortlisted(c)), range(n_labels)),
                    total=n_labels,
                    desc="dense+sparse",
                    unit="label",
                    disable=not show_progress,
                )
            )
        kept_per_label = np.array([len(kept) for kept, _, _ in fits], dtype=np.int64)
        columns = [np.empty(0, dtype=np.int32), *(kept for kept, _, _ in fits)]
        values = [np.empty(0, dtype=np.float32), *(w for _, w, _ in fits)]
        intercept = np.array([b for _, _, b in fits], dtype=np.float32)
        indptr = np.concatenate([[0], np.cumsum(kept_per_label)])
        coef = sp.csr_matrix((np.concatenate(values), np.concatenate(columns), indptr), shape=(n_labels, x.shape[1]))
        self._set(coef, intercept)
        self.platt = (1.0, 0.0)
        return self

    def _set_centroids(self, x: sp.csr_matrix, y: sp.csc_matrix) -> None:
        """The label centroids ``mu_c`` [C, V + D] of the module docstring, pruned; None (every
        label scored) with at most ``shortlist`` labels."""
        centroids = None
        if self.shortlist is not None and y.shape[1] > self.shortlist:
            centroids = normalize(sp.csr_matrix(y.T.astype(np.float32) @ x.astype(np.float32)))
            centroids.data[np.abs(centroids.data) < self.prune] = 0
            centroids.eliminate_zeros()
        self._set_shortlist(centroids)

    def _set_shortlist(self, centroids: sp.csr_matrix | None) -> None:
        """Keep the centroids, their TF-IDF half transposed as CSR and their dense half as an
        array: the items' sparse and dense halves meet them in a sparse and a dense product."""
        self.centroids_ = centroids
        if centroids is not None:
            terms = centroids.shape[1] - self.dim_
            self._centroid_terms = centroids[:, :terms].T.tocsr()
            self._centroid_dense = centroids[:, terms:].T.toarray()

    @property
    def shortlists(self) -> bool:
        """Whether the fitted ranker scores each item for a shortlist of its labels (it has
        more labels than ``shortlist``), not for every label."""
        return self.centroids_ is not None

    def _shortlist_of(self, x: sp.csr_matrix) -> np.ndarray:
        """The ``shortlist`` labels [rows, shortlist] of each row of ``x`` (module docstring)."""
        width = self.centroids_.shape[0]
        step = max(1, BLOCK_ELEMENTS // (BLOCK_COPIES * width))
        terms = x.shape[1] - self.dim_
        out = []
        for start in range(0, x.shape[0], step):
            rows = x[start : start + step]
            affinity = (rows[:, :terms] @ self._centroid_terms).toarray()
            if self.dense_scale:
                affinity += rows[:, terms:].toarray() @ self._centroid_dense
            out.append(np.argpartition(-affinity, self.shortlist - 1, axis=1)[:, : self.shortlist])
        return np.vstack(out) if out else np.empty((0, self.shortlist), dtype=np.int64)

    def _shortlisted_rows(self, x: sp.csr_matrix) -> Callable[[int], np.ndarray | None]:
        """For a label, the training rows it is shortlisted for (None: every row)."""
        if not self.shortlists:
            return lambda c: None
        lists = self._shortlist_of(x)
        rows = np.repeat(np.arange(x.shape[0]), lists.shape[1])
        by_label = sp.csr_matrix(
            (np.ones(rows.size, dtype=np.int8), (lists.ravel(), rows)), shape=(self.centroids_.shape[0], x.shape[0])
        )
        return lambda c: by_label.indices[by_label.indptr[c] : by_label.indptr[c + 1]]

    def _fit_label(
        self, x: sp.csr_matrix, positives: np.ndarray, shortlisted: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """One label's kept weight columns, their values and the intercept, fitted on the rows
        ``shortlisted`` for it and its ``positives`` (every row where None)."""
        n = x.shape[0]
        if len(positives) in (0, n):  # sklearn refuses one class: the constant score
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32), np.inf if len(positives) else -np.inf
        rows = None if shortlisted is None else np.union1d(shortlisted, positives)
        if rows is not None and len(rows) > len(positives):  # else no negative is shortlisted: every row
            x, positives, n = x[rows], np.searchsorted(rows, positives), len(rows)
        target = np.zeros(n, dtype=np.int8)
        target[positives] = 1
        if self.loss == "logistic":
            model = LogisticRegression(C=self.C, solver="liblinear", dual=True, max_iter=1000, random_state=0)
        else:
            model = LinearSVC(C=self.C, dual="auto", max_iter=1000, random_state=0)
        w = model.fit(x, target).coef_[0]
        kept = np.flatnonzero(np.abs(w) >= self.prune)
        return kept.astype(np.int32), w[kept].astype(np.float32), float(model.intercept_[0])

    def calibrate(
        self, texts: Sequence[str], Y: LabelMatrix, embeddings: np.ndarray, *, seed: int = 0
    ) -> DenseSparseLinear:
        """Fit the Platt scaling ``(a, a0)`` shared by all labels on held-out ``texts``, their
        labels ``Y`` [n, C] and ``embeddings``: a logistic regression of "the item holds the
        label" on the margin ``m_ic``, over every positive entry and at most
        ``CALIBRATION_NEGATIVES`` negative ones (drawn with ``seed``, weighted back to all of
        them); labels no training item or every training item held (constant scores) are
        left out. Without positives, or with margins that do not rise with the labels
        (``a <= 0``), the scaling stays ``(1, 0)``. Returns ``self``."""
        y = check_labels(Y, len(texts)).tocsr()
        x = self._inputs(texts, embeddings).astype(np.float32)
        finite = np.isfinite(self.intercept_)
        total_negatives = int(y.shape[0] * finite.sum() - y[:, finite].nnz)
        keep = min(1.0, CALIBRATION_NEGATIVES / max(total_negatives, 1))
        rng = np.random.default_rng(seed)
        margins, truth = [], []
        step = max(1, BLOCK_ELEMENTS // (BLOCK_COPIES * max(self.n_labels, 1)))
        for start in range(0, y.shape[0], step):
            rows = slice(start, start + step)
            block = self._margins(x[rows])[:, finite]
            held = y[rows][:, finite].toarray().astype(bool)
            drawn = (held | (rng.random(block.shape) < keep)) & np.isfinite(block)
            margins.append(block[drawn])
            truth.append(held[drawn])
        m, t = np.concatenate(margins), np.concatenate(truth)
        self.platt = (1.0, 0.0)
        if t.any() and not t.all():
            weight = np.where(t, 1.0, 1.0 / keep)
            fit = LogisticRegression(C=1e4).fit(m[:, None].astype(np.float64), t, sample_weight=weight)
            a, a0 = float(fit.coef_[0, 0]), float(fit.intercept_[0])
            if a > 0:
                self.platt = (a, a0)
        return self

    def _margins(self, x: sp.csr_matrix) -> np.ndarray:
        """Dense margins ``w_c . x + b_c`` [rows, C] of the input rows ``x``; -inf for the labels
        a row is not shortlisted for."""
        lists = self._shortlist_of(x) if self.shortlists else None
        margins = (x @ self._coef_t).toarray()
        margins += self.intercept_
        if lists is not None:
            outside = np.ones(margins.shape, dtype=bool)
            np.put_along_axis(outside, lists, False, axis=1)
            margins[outside] = -np.inf
        return margins

    def _set(self, coef: sp.csr_matrix, intercept: np.ndarray) -> None:
        self.coef_, self.intercept_ = coef, intercept
        self._coef_t = coef.T.tocsr()  # [V + D, C]: a block of rows @ this is one sparse product

    @property
    def n_labels(self) -> int:
        """The labels scored (columns of :meth:`sparse_scores`)."""
        return self.coef_.shape[0]

    def add_label_columns(self, count: int) -> None:
        """Append ``count`` labels that no training item holds (labels added after training): they score 0."""
        coef = sp.vstack([self.coef_, sp.csr_matrix((count, self.coef_.shape[1]), dtype=np.float32)], format="csr")
        if self.shortlists:
            self._set_shortlist(sp.vstack([self.centroids_, sp.csr_matrix((count, self.coef_.shape[1]))], format="csr"))
        self._set(coef, np.concatenate([self.intercept_, np.full(count, -np.inf, dtype=np.float32)]))

    def sparse_scores(
        self, texts: Sequence[str], embeddings: np.ndarray, *, show_progress: bool = False
    ) -> sp.csr_matrix:
        """Probabilities float32 CSR [len(texts), C], those below ``floor`` left out."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("DenseSparseLinear is not fitted: call fit() or DenseSparseLinear.load() first")
        x = self._inputs(texts, embeddings).astype(np.float32)

        def probabilities(rows: slice) -> sp.csr_matrix:
            a, a0 = self.platt
            scores = self._margins(x[rows]).astype(np.float32, copy=False)
            scores *= a
            scores += a0
            with np.errstate(invalid="ignore"):  # a constant label's infinite margin stays infinite
                expit(scores, out=scores)
            scores[scores < self.floor] = 0
            return sp.csr_matrix(scores)

        width = BLOCK_COPIES * self.n_labels
        return sparse_blocks(x.shape[0], width, self.n_labels, probabilities, "dense+sparse", show_progress)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the TF-IDF features (:meth:`LexicalFeatures.save`), the kept weights and intercepts."""
        directory = Path(directory)
        self.features_.save(directory)
        arrays = {
            **csr_to_arrays(self.coef_, "coef"),
            "intercept": self.intercept_,
            "dim": np.array(self.dim_),
            "params": np.array([self.C, self.dense_scale, self.prune, self.floor, *self.platt]),
            "loss": np.array(self.loss),
            "shortlist": np.array(self.shortlist or 0),
        }
        if self.shortlists:
            arrays.update(csr_to_arrays(self.centroids_, "centroids"))
        with atomic_open(directory / RANKER_FILE, "wb") as handle:
            np.savez(handle, **arrays)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DenseSparseLinear:
        """Rebuild the ranker saved by :meth:`save`; a file that is missing, unreadable or not
        as saved raises :class:`labelcon.filecheck.ModelLoadError` naming it."""
        directory = Path(directory)
        features = LexicalFeatures.load(directory)
        with reading(directory / RANKER_FILE):
            with np.load(directory / RANKER_FILE, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            params = [float(v) for v in arrays["params"]]
            if len(params) == 4:  # written before the SVM and the Platt scaling: logistic, unscaled
                params += [1.0, 0.0]
            if len(params) != 6:
                raise ValueError(
                    f"holds {len(params)} params; expected 6 (C, dense_scale, prune, floor and the Platt "
                    "scaling a, a0) or 4 (a ranker saved before the scaling)"
                )
            C, dense_scale, prune, floor, a, a0 = params
            loss = str(arrays["loss"]) if "loss" in arrays else "logistic"
            shortlist = int(arrays["shortlist"]) if "shortlist" in arrays else 0  # saved before shortlists: none
            ranker = cls(C=C, dense_scale=dense_scale, prune=prune, floor=floor, loss=loss, shortlist=shortlist or None)  # type: ignore[arg-type]
            ranker.platt = (a, a0)
            ranker.features_, ranker.dim_ = features, int(arrays["dim"])
            coef = csr_from_arrays(arrays, "coef")
            width = len(features.vectorizer_.vocabulary) + ranker.dim_
            if coef.shape[1] != width or arrays["intercept"].shape != (coef.shape[0],):
                raise ValueError(
                    f"holds weights of shape {coef.shape} and {arrays['intercept'].shape[0]} intercepts; expected "
                    f"one intercept per label and {width} columns (the terms of the vocabulary + dim {ranker.dim_})"
                )
            centroids = csr_from_arrays(arrays, "centroids") if "centroids_data" in arrays else None
            if centroids is not None and (
                centroids.shape != coef.shape or coef.shape[0] <= (shortlist or 0) or not shortlist
            ):
                raise ValueError(
                    f"holds label centroids of shape {centroids.shape} for a shortlist of {shortlist}; expected the "
                    f"weights' shape {coef.shape} and more labels than the shortlist"
                )
        ranker._set(coef, arrays["intercept"])
        ranker._set_shortlist(centroids)
        return ranker
