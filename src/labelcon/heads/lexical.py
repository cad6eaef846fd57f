"""Lexical features: TF-IDF vectors of texts, the words an embedding may blur.

A contrastively trained encoder places texts by meaning, but on long documents whose
labels hang on rare terms (a commodity name, a legal article, a chemical) an exact
word match is strong evidence that a 384-number summary can lose. Dense and sparse
retrieval are known to err differently and their mix to beat either (Luan et al. 2021,
"Sparse, dense, and attentional representations for text retrieval"); extreme
multi-label systems feed TF-IDF next to the fine-tuned embedding for the same reason
(XR-Transformer, Zhang et al. 2021). The ``lexical`` setting adds a kNN vote over these
vectors to the head's scores in the prediction stage (:mod:`labelcon.prediction`).

:class:`LexicalFeatures` is scikit-learn's ``TfidfVectorizer`` with word 1-2-grams,
sublinear tf (1 + log tf), ``min_df=2`` and L2-normalised rows, fitted on training texts
only, and saved as its vocabulary and idf weights (JSON + ``.npy``, no pickle).
:class:`LexicalKNN` is the vote of :class:`labelcon.heads.KNNHead` (softmax over the k
nearest training texts' similarities, ``score_c`` = the weighted share holding label c)
with TF-IDF cosine as the similarity: exact, a block of queries against all training
rows as one sparse product at a time. A training text sharing no term with the query
(cosine 0) never votes.

>>> import tempfile
>>> lex = LexicalFeatures().fit(["wheat exports rose", "wheat prices fell", "oil prices rose"])
>>> lex.transform(["wheat"]).nnz
1
>>> back = LexicalFeatures.load(lex.save(tempfile.mkdtemp()))
>>> bool((back.transform(["oil prices"]) != lex.transform(["oil prices"])).nnz == 0)
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from tqdm.auto import tqdm

from labelcon.filecheck import expect_object, reading
from labelcon.heads.base import check_labels, csr_from_arrays, csr_to_arrays, labels_from_arrays, labels_to_arrays
from labelcon.heads.knn import neighbour_votes
from labelcon.io import atomic_open, read_json, write_json
from labelcon.metrics import BLOCK_ELEMENTS, LabelMatrix, top_k

VOCABULARY_FILE = "vocabulary.json"
IDF_FILE = "idf.npy"
KNN_FILE = "knn.npz"


class LexicalFeatures:
    """TF-IDF word n-grams (1 to ``ngram_max``) of terms in at least ``min_df`` training texts."""

    def __init__(self, ngram_max: int = 2, min_df: int = 2) -> None:
        if ngram_max < 1:
            raise ValueError(f"ngram_max must be >= 1; got {ngram_max}")
        if min_df < 1:
            raise ValueError(f"min_df must be >= 1; got {min_df}")
        self.ngram_max, self.min_df = ngram_max, min_df
        self.vectorizer_: TfidfVectorizer | None = None

    def _vectorizer(self, **params) -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, self.ngram_max), sublinear_tf=True, dtype=np.float32, **params)

    def fit(self, texts: Sequence[str]) -> LexicalFeatures:
        """Learn the vocabulary and idf weights from ``texts``; a text set too small or too
        repetitive for any term to reach ``min_df`` keeps every term instead."""
        texts = list(texts)
        try:
            self.vectorizer_ = self._vectorizer(min_df=self.min_df).fit(texts)
        except ValueError:  # sklearn: "After pruning, no terms remain"
            self.vectorizer_ = self._vectorizer(min_df=1).fit(texts)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """L2-normalised TF-IDF rows, float32 CSR [n, vocabulary]."""
        if self.vectorizer_ is None:
            raise RuntimeError("LexicalFeatures is not fitted: call fit() or LexicalFeatures.load() first")
        return self.vectorizer_.transform(list(texts)).tocsr()

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the settings and vocabulary (terms in column order) and the idf weights."""
        if self.vectorizer_ is None:
            raise RuntimeError("nothing to save: LexicalFeatures is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocabulary = self.vectorizer_.vocabulary_
        terms = sorted(vocabulary, key=vocabulary.__getitem__)
        with atomic_open(directory / IDF_FILE, "wb") as handle:
            np.save(handle, self.vectorizer_.idf_.astype(np.float64))
        write_json(directory / VOCABULARY_FILE, {"ngram_max": self.ngram_max, "min_df": self.min_df, "terms": terms})
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LexicalFeatures:
        """Rebuild the features saved by :meth:`save`; a file that is missing, unreadable or
        not as saved raises :class:`labelcon.filecheck.ModelLoadError` naming it."""
        directory = Path(directory)
        with reading(directory / VOCABULARY_FILE):
            fields = {"ngram_max": int, "min_df": int, "terms": list}
            meta = expect_object(read_json(directory / VOCABULARY_FILE), fields)
            features = cls(ngram_max=meta["ngram_max"], min_df=meta["min_df"])
            vocabulary = {term: i for i, term in enumerate(meta["terms"])}
            if len(vocabulary) != len(meta["terms"]):
                raise ValueError("expected distinct terms, got repeats")
        with reading(directory / IDF_FILE):
            idf = np.load(directory / IDF_FILE, allow_pickle=False)
            if idf.shape != (len(vocabulary),):
                raise ValueError(
                    f"holds idf weights of shape {idf.shape}, but {VOCABULARY_FILE} lists {len(vocabulary)} terms"
                )
        features.vectorizer_ = features._vectorizer(vocabulary=vocabulary)
        features.vectorizer_.idf_ = idf
        return features


class LexicalKNN:
    """kNN label vote over TF-IDF cosine (module docstring): ``k`` neighbours, softmax
    ``temperature`` as in :class:`labelcon.heads.KNNHead`.

    >>> import numpy as np
    >>> vote = LexicalKNN(k=1).fit(["wheat exports", "oil prices"], np.eye(2))
    >>> vote.sparse_scores(["wheat harvest", "no shared words"]).toarray().tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """

    #: A scorer of texts (the :class:`labelcon.heads.Head` declaration): the prediction
    #: stage gives it the features' texts, where heads get their embeddings.
    needs_texts = True
    #: It reads no embeddings (the dense+sparse ranker does).
    needs_embeddings = False
    #: The file that holds the vote's labels (named in load errors).
    labels_file = KNN_FILE

    def __init__(self, k: int = 20, temperature: float = 0.05) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.k, self.temperature = k, temperature

    def fit(self, texts: Sequence[str], Y: LabelMatrix) -> LexicalKNN:
        """Vectorise the training ``texts`` (fitting :class:`LexicalFeatures` on them) with their labels."""
        texts = list(texts)
        self.labels_ = check_labels(Y, len(texts))
        self.features_ = LexicalFeatures().fit(texts)
        self._index(self.features_.transform(texts))
        return self

    def _index(self, items: sp.csr_matrix) -> None:
        self.items_ = items
        self._items_t = items.T.tocsr()  # [vocabulary, n]: queries @ this is one sparse product

    @property
    def n_labels(self) -> int:
        """The labels voted for (columns of :meth:`sparse_scores`)."""
        return self.labels_.shape[1]

    def add_label_columns(self, count: int) -> None:
        """Append ``count`` label columns that no training text holds (labels added after training)."""
        self.labels_ = sp.hstack([self.labels_, sp.csr_matrix((self.labels_.shape[0], count))], format="csr")

    def sparse_scores(self, texts: Sequence[str], *, show_progress: bool = False) -> sp.csr_matrix:
        """Vote shares float32 CSR [len(texts), C], non-zero only for the neighbours' labels."""
        if not hasattr(self, "items_"):
            raise RuntimeError("LexicalKNN is not fitted: call fit() or LexicalKNN.load() first")
        queries = self.features_.transform(texts)
        n_items = self.items_.shape[0]
        k = min(self.k, n_items)

        def votes(rows: slice) -> sp.csr_matrix:
            idx, sims = top_k((queries[rows] @ self._items_t).toarray(), k)
            return neighbour_votes(sims, np.where(sims > 0, idx, -1), self.labels_, self.temperature)

        return sparse_blocks(queries.shape[0], n_items, self.labels_.shape[1], votes, "lexical vote", show_progress)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the features (:meth:`LexicalFeatures.save`), the training rows and labels."""
        directory = Path(directory)
        self.features_.save(directory)
        items = csr_to_arrays(self.items_, "items")
        with atomic_open(directory / KNN_FILE, "wb") as handle:
            np.savez(handle, k=self.k, temperature=self.temperature, **items, **labels_to_arrays(self.labels_))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LexicalKNN:
        """Rebuild the vote saved by :meth:`save`; a file that is missing, unreadable or not
        as saved raises :class:`labelcon.filecheck.ModelLoadError` naming it."""
        directory = Path(directory)
        features = LexicalFeatures.load(directory)
        with reading(directory / KNN_FILE):
            with np.load(directory / KNN_FILE, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            vote = cls(k=int(arrays["k"]), temperature=float(arrays["temperature"]))
            vote.features_, vote.labels_ = features, labels_from_arrays(arrays)
            items = csr_from_arrays(arrays, "items")
            width = len(features.vectorizer_.vocabulary)
            if items.shape != (vote.labels_.shape[0], width):
                raise ValueError(
                    f"holds training rows of shape {items.shape}; expected {vote.labels_.shape[0]} rows "
                    f"(one per labelled item) of the {width} terms of {VOCABULARY_FILE}"
                )
        vote._index(items)
        return vote


def mix_scores(scores: np.ndarray, votes: sp.csr_matrix, weight: float, keep: Sequence[int] = ()) -> np.ndarray:
    """``(1 - weight) * scores + weight * votes`` ([n, C] dense and sparse), float32, except
    the columns ``keep``, which hold ``scores`` unchanged (the prediction stage keeps there
    the labels a head scores for a threshold of its own, :attr:`Head.fallback_threshold`).
    The votes are added at their non-zeros only: one dense [n, C] array besides ``scores``.

    >>> mix_scores(np.array([[0.2, 0.8]]), sp.csr_matrix([[1.0, 0.0]]), 0.25, keep=[1]).tolist()
    [[0.4000000059604645, 0.800000011920929]]
    """
    mixed = np.multiply(scores, 1 - weight, dtype=np.float32)
    coo = sp.coo_matrix(votes)
    mixed[coo.row, coo.col] += weight * coo.data.astype(np.float32)  # a CSR matrix has no repeated entries
    if len(keep):
        mixed[:, keep] = scores[:, keep]
    return mixed


def sparse_blocks(
    n_rows: int,
    width: int,
    n_labels: int,
    score: Callable[[slice], sp.csr_matrix],
    desc: str,
    show_progress: bool,
) -> sp.csr_matrix:
    """float32 CSR ``[n_rows, n_labels]``: ``score(rows)`` for consecutive row slices, each
    slice as many rows as keep a dense ``[rows, width]`` product within ``BLOCK_ELEMENTS``,
    stacked; a progress bar named ``desc`` counts the blocks.

    >>> sparse_blocks(3, 1, 2, lambda rows: sp.csr_matrix(np.ones((len(range(3)[rows]), 2))), "x", False).shape
    (3, 2)
    """
    step = max(1, BLOCK_ELEMENTS // max(width, 1))
    blocks = [sp.csr_matrix((0, n_labels), dtype=np.float32)]
    starts = range(0, n_rows, step)
    for start in tqdm(starts, desc=desc, unit="block", disable=not show_progress, dynamic_ncols=True):
        blocks.append(score(slice(start, start + step)))
    return sp.vstack(blocks, format="csr")
