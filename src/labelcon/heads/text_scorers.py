"""Text scorers mixed into a head's scores, one on top of another.

A text scorer reads an item's text (and, for the ranker, its embedding) and gives sparse
label scores in [0, 1]: the TF-IDF kNN vote (:class:`labelcon.heads.LexicalKNN`) or the
dense+sparse ranker (:class:`labelcon.heads.DenseSparseLinear`). The prediction stage
mixes a chain of them into the head's scores ``s_0``, each with its weight::

    s_k = (1 - w_k) * s_(k-1) + w_k * t_k          k = 1 .. K, in the chain's order

which is one mix of the head's scores with one sparse matrix (:func:`chain_scores`)::

    s_K = (1 - W) * s_0 + W * V      1 - W = prod_k (1 - w_k)
                                     V = sum_k c_k t_k / W,   c_k = w_k prod_(j > k) (1 - w_j)

so scoring a chain costs one mix whatever its length. Scorers that err differently add up:
the vote counts the labels of training texts with the same words, the ranker weighs each
word for each label, as the rankers of XR-Transformer (Zhang et al. 2021) combine sparse
and dense evidence. On arXiv the vote alone ranked dev at macro-AP 0.584, the ranker alone
0.583, the ranker on top of the vote 0.593 (BENCHMARKS.md, arXiv). The stage builds the
chain on dev greedily (:meth:`labelcon.prediction.PredictionStage.fit`).

>>> import numpy as np, scipy.sparse as sp
>>> t1, t2 = sp.csr_matrix([[1.0, 0.0]]), sp.csr_matrix([[0.0, 1.0]])
>>> votes, weight = chain_scores([(t1, 0.5), (t2, 0.5)])
>>> weight, votes.toarray().round(4).tolist()
(0.75, [[0.3333, 0.6667]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from labelcon.heads.dense_sparse import SHORTLIST, DenseSparseLinear
from labelcon.heads.lexical import LexicalKNN
from labelcon.metrics import LabelMatrix

#: ``lexical="auto"``: the weights of the lexical vote tried on dev.
LEXICAL_WEIGHTS = (0.0, 0.25, 0.5)
#: ``lexical="auto"``: the weights of the dense+sparse ranker tried on dev (besides 0), higher
#: than the vote's: it is a ranker of its own, where the vote only adds evidence.
DENSE_SPARSE_WEIGHTS = (0.25, 0.5, 0.75)
#: ... and 1 (the ranker in the head's place) for a ranker that shortlists (above 400 labels):
#: there its own scores of every label decide, and on the arXiv-titles proxy (5,080 labels)
#: dev kept it at 1 with the vote at 0.25 on top, micro-F1 0.371 to 0.386 and P@5 0.378 to
#: 0.390 against 0.75 (BENCHMARKS.md, many labels).
RANKER_ALONE = 1.0
#: The dense+sparse ranker's C values, each fitted and weighed on dev: a 10x grid (on
#: GoEmotions the ranker ranked dev best at 0.1, on Reuters-21578 at 1).
DENSE_SPARSE_C = (0.1, 1.0)
#: ``lexical_scorer="auto"`` fits the ranker at every C of ``DENSE_SPARSE_C`` beside the kNN
#: vote when its fits' rows, the training texts x the labels each is shortlisted for
#: (:func:`ranker_cells`), are at most this many (Reuters-21578 0.6 million, GoEmotions 1.2
#: million) ...
DENSE_SPARSE_AUTO_MAX = 2_000_000
#: ... and at C = 1 alone up to this many: at arXiv's 7 million (47,315 texts, 147 labels)
#: a fit took 1m 28s to 1m 44s and the ranker alone ranked dev no better than the vote
#: (macro-AP 0.583 against 0.584), but on top of the vote it raised dev macro-AP to 0.593
#: (BENCHMARKS.md, arXiv). Beyond it the ranker reads the TF-IDF half alone ...
DENSE_SPARSE_ONE_C_MAX = 10_000_000
#: ... up to this many: on the arXiv proxy with titles (47,315 texts, 5,455 labels, a
#: 400-label shortlist: 19 million) its fit took 3 minutes (BENCHMARKS.md, many labels).
SPARSE_MAX = 25_000_000
#: The text scorers by name (``lexical_scorer``): the TF-IDF kNN vote, the dense+sparse ranker.
KNN_VOTE, DENSE_SPARSE = "knn", "dense_sparse"
SCORERS: dict[str, type[LexicalKNN] | type[DenseSparseLinear]] = {KNN_VOTE: LexicalKNN, DENSE_SPARSE: DenseSparseLinear}

TextScorerModel = LexicalKNN | DenseSparseLinear


@dataclass(frozen=True)
class TextScorer:
    """A fitted text scorer and the ``weight`` it is mixed in with (module docstring)."""

    scorer: TextScorerModel
    weight: float

    @property
    def kind(self) -> str:
        """Its key in :data:`SCORERS`."""
        return scorer_kind(self.scorer)

    def scores(self, texts: Sequence[str], embeddings: np.ndarray, *, show_progress: bool = False) -> sp.csr_matrix:
        """Sparse scores [n, C] of the items' texts (and embeddings, where the scorer reads them)."""
        return scorer_scores(self.scorer, texts, embeddings, show_progress)


def scorer_kind(scorer: TextScorerModel) -> str:
    """A scorer's key in :data:`SCORERS`.

    >>> scorer_kind(LexicalKNN()), scorer_kind(DenseSparseLinear())
    ('knn', 'dense_sparse')
    """
    return next(kind for kind, cls in SCORERS.items() if isinstance(scorer, cls))


def lexical_scorers(setting: str, n_train: int, n_labels: int) -> list[TextScorerModel]:
    """The unfitted text scorers that ``lexical_scorer=setting`` tries on dev for ``n_train``
    training texts and ``n_labels`` labels: the kNN vote and the ranker at each C of
    ``DENSE_SPARSE_C`` (the one named, or both for ``"auto"``). For ``"auto"`` the ranker's
    fits grow with :func:`ranker_cells`: both C values up to ``DENSE_SPARSE_AUTO_MAX``, C = 1
    up to ``DENSE_SPARSE_ONE_C_MAX``; with more labels than a shortlist, also the ranker of
    the TF-IDF half alone at C = 1 (about half the fit time; on a weak encoder's embedding
    it ranked better) up to ``SPARSE_MAX``; no ranker beyond.

    >>> names = lambda setting, n, c: [scorer_name(s) for s in lexical_scorers(setting, n, c)]
    >>> names("knn", 7000, 90), names("auto", 7000, 90)
    (['knn'], ['knn', 'dense+sparse(C=0.1)', 'dense+sparse(C=1)'])
    >>> names("auto", 47315, 147), names("auto", 8000, 5080)
    (['knn', 'dense+sparse(C=1)'], ['knn', 'dense+sparse(C=1)', 'sparse(C=1)'])
    >>> names("auto", 45000, 4271), names("auto", 500000, 4271)
    (['knn', 'sparse(C=1)'], ['knn'])
    """
    if setting == KNN_VOTE:
        return [LexicalKNN()]
    cells = ranker_cells(n_train, n_labels)
    if setting == DENSE_SPARSE or cells <= DENSE_SPARSE_AUTO_MAX:
        return [*([] if setting == DENSE_SPARSE else [LexicalKNN()]), *(DenseSparseLinear(C=c) for c in DENSE_SPARSE_C)]
    ranker = [DenseSparseLinear(C=1.0)] if cells <= DENSE_SPARSE_ONE_C_MAX else []
    if n_labels > SHORTLIST and cells <= SPARSE_MAX:
        ranker.append(DenseSparseLinear(C=1.0, dense_scale=0.0))
    return [LexicalKNN(), *ranker]


def ranker_cells(n_train: int, n_labels: int) -> int:
    """The rows the ranker's per-label fits read together: each of ``n_train`` texts for each
    label it is shortlisted for (every label up to :data:`labelcon.heads.dense_sparse.SHORTLIST`).

    >>> ranker_cells(7000, 90), ranker_cells(45000, 4271)
    (630000, 18000000)
    """
    return n_train * min(n_labels, SHORTLIST)


def weights_to_try(scorer: TextScorerModel) -> tuple[float, ...]:
    """``lexical="auto"``: the weights a fitted scorer is tried at on dev, 0 (left out) first;
    a ranker that shortlists its labels also at :data:`RANKER_ALONE`."""
    if not isinstance(scorer, DenseSparseLinear):
        return (0.0, *LEXICAL_WEIGHTS[1:])
    alone = (RANKER_ALONE,) if scorer.shortlists and RANKER_ALONE not in DENSE_SPARSE_WEIGHTS else ()
    return (0.0, *DENSE_SPARSE_WEIGHTS, *alone)


def scorer_name(scorer: TextScorerModel) -> str:
    """A text scorer's name among the candidates of the stage's ``selection``.

    >>> scorer_name(LexicalKNN()), scorer_name(DenseSparseLinear(C=0.1)), scorer_name(DenseSparseLinear(dense_scale=0))
    ('knn', 'dense+sparse(C=0.1)', 'sparse(C=1)')
    """
    if not isinstance(scorer, DenseSparseLinear):
        return KNN_VOTE
    return f"{'dense+sparse' if scorer.dense_scale else 'sparse'}(C={scorer.C:g})"


def chain_name(chain: Sequence[tuple[str, float]]) -> str:
    """The name of a chain of (scorer name, weight) among the stage's candidates: the first
    scorer by its weight (the kNN vote's name left out, as the stage has always named it),
    each one stacked on top as ``+ name at weight``; the empty chain is weight 0.

    >>> chain_name([]), chain_name([("knn", 0.5)]), chain_name([("knn", 0.5), ("dense+sparse(C=1)", 0.25)])
    ('lexical weight 0', 'lexical weight 0.5', 'lexical weight 0.5 + dense+sparse(C=1) at 0.25')
    >>> chain_name([("dense+sparse(C=1)", 0.75), ("knn", 0.25)])
    'lexical weight 0.75, dense+sparse(C=1) + knn at 0.25'
    """
    if not chain:
        return "lexical weight 0"
    (name, weight), *stacked = chain
    first = f"lexical weight {weight:g}" + (f", {name}" if name != KNN_VOTE else "")
    return first + "".join(f" + {name} at {w:g}" for name, w in stacked)


def fit_scorer(
    scorer: TextScorerModel,
    train_texts: Sequence[str],
    y_train: LabelMatrix,
    train_embeddings: np.ndarray,
    dev_texts: Sequence[str],
    y_dev: LabelMatrix,
    dev_embeddings: np.ndarray,
    *,
    seed: int,
    show_progress: bool,
) -> None:
    """Fit ``scorer`` on train; a dense+sparse ranker's Platt scaling on dev."""
    if isinstance(scorer, DenseSparseLinear):
        scorer.fit(train_texts, y_train, train_embeddings, show_progress=show_progress)
        scorer.calibrate(dev_texts, y_dev, dev_embeddings, seed=seed)
    else:
        scorer.fit(train_texts, y_train)


def scorer_scores(
    scorer: TextScorerModel, texts: Sequence[str], embeddings: np.ndarray, show_progress: bool = False
) -> sp.csr_matrix:
    """The sparse scores [n, C] of a text scorer, given the embeddings too where it reads them."""
    if scorer.needs_embeddings:
        return scorer.sparse_scores(texts, embeddings, show_progress=show_progress)
    return scorer.sparse_scores(texts, show_progress=show_progress)


def chain_scores(chain: Sequence[tuple[sp.csr_matrix, float]]) -> tuple[sp.csr_matrix | None, float]:
    """``(V, W)`` of the module docstring for the scorers' scores ``t_k`` [n, C] and weights
    ``w_k`` of a chain, in its order: mixing ``V`` into the head's scores at weight ``W``
    (:func:`labelcon.heads.lexical.mix_scores`) mixes the whole chain. ``W = 0`` for the
    empty chain (``V`` is then None)."""
    if not chain:
        return None, 0.0
    kept = 1.0  # prod over the later scorers of (1 - w)
    total = None
    for scores, weight in reversed(chain):
        part = scores.astype(np.float32) * np.float32(weight * kept)
        total = part if total is None else total + part
        kept *= 1 - weight
    mixed_weight = chain_weight([weight for _, weight in chain])
    return sp.csr_matrix(total / np.float32(mixed_weight)), mixed_weight


def chain_weight(weights: Sequence[float]) -> float:
    """``W = 1 - prod_k (1 - w_k)``: the weight a chain's scorers have together in the mix.

    >>> chain_weight([]), chain_weight([0.5, 0.5])
    (0.0, 0.75)
    """
    kept = 1.0
    for weight in weights:
        kept *= 1 - weight
    return 1 - kept
