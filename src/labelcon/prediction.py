"""The prediction stage: everything between the encoder's embeddings and label decisions.

::

    Features(embeddings [n, D], texts, windows)
      -> scorers: the head (embeddings, or each window's embedding with its scores pooled
         per item) and, for texts, a chain of text scorers (the TF-IDF vote, the dense+sparse
         ranker), each mixed in on top of the ones before with its weight w_k
         scores = (1 - w_k) * scores + w_k * scorer_k, except the columns the head keeps for its own threshold
      -> decisions: per-label thresholds calibrated on dev, or the rule that decides dev better
         (one global threshold, top-k, rank-capped thresholds), + the at-least-one rule
      -> label sets, top-k, metrics; every path scores ``BLOCK_ELEMENTS`` entries at a time

:meth:`PredictionStage.fit` makes every choice on dev (the ``auto`` head, the score pooling
of an encoder that reads windows, the lexical weight, the thresholds, the decision rule) and
records the dev figures behind each in ``selection``. The
stage saves itself into a model directory and loads back from it; the estimator, search,
serving and the report use it through its public methods only. What a head needs or
brings (label embeddings, a threshold of its own, sparse scores, texts) is declared by
the head (:class:`labelcon.heads.Head`), never found out from its class here.

>>> import numpy as np
>>> from labelcon.data import LabelSpace
>>> x = np.eye(4, dtype=np.float32); y = np.eye(4)[:, :2]
>>> stage = PredictionStage.fit(LabelSpace(["a", "b"]), Features(x), y, Features(x), y,
...                             StageSettings(head="knn", head_params={"k": 1}, min_positives=1))
>>> stage.label_sets(Features(x[:2]))
[['a'], ['b']]
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from labelcon.config import Config
from labelcon.data import LabelSpace
from labelcon.device import resolve_device
from labelcon.filecheck import damaged, expect_object, reading
from labelcon.heads import Head, Thresholds, build_head, mix_scores, select_on_dev
from labelcon.heads.base import HEAD_FILE
from labelcon.heads.decisions import choose_rule, resolve_target_metric
from labelcon.heads.index import QUERY_BLOCK
from labelcon.heads.text_scorers import (
    KNN_VOTE,
    SCORERS,
    TextScorer,
    TextScorerModel,
    chain_name,
    chain_scores,
    chain_weight,
    fit_scorer,
    lexical_scorers,
    scorer_kind,
    scorer_name,
    scorer_scores,
    weights_to_try,
)
from labelcon.io import atomic_directory, read_json, write_json
from labelcon.metrics import (
    BLOCK_ELEMENTS,
    DENSE_EVALUATION,
    RANKING_NAMES,
    LabelMatrix,
    concat_top_k,
    dense_rows,
    evaluate_blocks,
    ranking_quality,
    sparse_top_k,
    top_k,
)
from labelcon.metrics import evaluate as evaluate_scores
from labelcon.parts import AUTO_HEAD  # head="auto": a linear probe, a kNN vote or their average, picked on dev

#: How the head scores an item read as windows: the embedding the encoder pooled from its
#: windows (``"embedding"``), or each window's embedding, the scores pooled per item by
#: ``"max"`` (evidence in one window counts in full) or ``"mean"``.
EMBEDDING = "embedding"
SCORE_POOLING = (EMBEDDING, "max", "mean")
META_FILE = "prediction.json"
FORMAT = 1

Ranked = list[list[tuple[str, float]]]


@dataclass(frozen=True)
class WindowFeatures:
    """The windows of some items: L2-normalised ``embeddings`` [W, D], one per window, and
    ``owner`` [W], the item each belongs to (each item's windows together, in item order;
    :meth:`labelcon.encoders.Encoder.encode_windows` gives both)."""

    embeddings: np.ndarray
    owner: np.ndarray

    def __post_init__(self) -> None:
        if len(self.owner) != len(self.embeddings):
            raise ValueError(f"got {len(self.embeddings)} window embeddings but {len(self.owner)} owners")
        if np.any(np.diff(self.owner) < 0):
            raise ValueError("expected each item's windows together, in item order (owner non-decreasing)")

    @cached_property
    def starts(self) -> np.ndarray:
        """[n + 1]: item i's windows are rows ``starts[i]:starts[i + 1]``."""
        items = int(self.owner[-1]) + 1 if len(self.owner) else 0
        return np.searchsorted(self.owner, np.arange(items + 1))

    @cached_property
    def most(self) -> int:
        """The most windows any item has."""
        return int(np.diff(self.starts).max(initial=0))


@dataclass(frozen=True)
class Features:
    """What the stage scores: L2-normalised ``embeddings`` [n, D], for text items the
    ``texts`` themselves (the lexical vote reads them; None for feature vectors), and for
    an encoder that reads windows, optionally the items' ``windows`` (a stage that scores
    each window embeds them from the texts when they are not given)."""

    embeddings: np.ndarray
    texts: Sequence[str] | None = None
    windows: WindowFeatures | None = None

    def __post_init__(self) -> None:
        if self.texts is not None and len(self.texts) != len(self.embeddings):
            raise ValueError(f"got {len(self.embeddings)} embeddings but {len(self.texts)} texts")
        if self.windows is not None:
            counts = np.diff(self.windows.starts)
            if len(counts) != len(self.embeddings) or counts.min(initial=1) < 1:
                raise ValueError(
                    f"expected windows owned by each of the {len(self.embeddings)} items, got owners "
                    f"covering {len(counts)} items ({int((counts == 0).sum())} of them without a window)"
                )

    def __len__(self) -> int:
        return len(self.embeddings)

    def subset(self, rows: np.ndarray) -> Features:
        """The items ``rows`` (positions, in that order), with their texts and windows."""
        rows = np.asarray(rows, dtype=np.int64)
        texts = None if self.texts is None else [self.texts[r] for r in rows]
        windows = None
        if self.windows is not None:
            starts = self.windows.starts
            picked = np.concatenate([np.arange(starts[r], starts[r + 1]) for r in rows] or [np.empty(0, np.int64)])
            owner = np.repeat(np.arange(len(rows)), np.diff(starts)[rows])
            windows = WindowFeatures(self.windows.embeddings[picked], owner)
        return Features(self.embeddings[rows], texts, windows)


@dataclass(frozen=True)
class StageSettings:
    """The settings the stage uses (the fields of the same names in :class:`labelcon.config.Config`)."""

    head: str = AUTO_HEAD
    head_params: dict[str, Any] = field(default_factory=dict)
    lexical: float | Literal["auto"] = "auto"
    lexical_scorer: Literal["knn", "dense_sparse", "auto"] = "auto"
    min_positives: int = 3
    target_metric: Literal["auto", "micro", "macro", "samples"] = "auto"
    #: For dev items with windows (:attr:`Features.windows`): one of :data:`SCORE_POOLING`,
    #: or ``"auto"``, whichever ranks dev best.
    score_pooling: Literal["auto", "embedding", "max", "mean"] = EMBEDDING
    seed: int = 13
    #: Where the head scores (:func:`labelcon.device.resolve_device`; the kNN search uses it).
    device: str = "auto"

    @classmethod
    def from_config(cls, config: Config) -> StageSettings:
        """The stage's settings of ``config``."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


class _Prepared(NamedTuple):
    """A features bundle with each scorer's input computed once: the embeddings, the
    lexical vote's sparse scores [n, C] when the stage mixes it in, and the windows when
    the head scores each window."""

    embeddings: np.ndarray
    votes: sp.csr_matrix | None
    windows: WindowFeatures | None = None


@dataclass
class PredictionStage:
    """A fitted head, the text scorers mixed into its scores with their weights
    (:mod:`labelcon.heads.text_scorers`), thresholds and the label names.

    With :attr:`score_pooling` other than ``"embedding"`` the head scores each window of an
    item and pools the scores; the windows come with the features, or from
    :attr:`window_embedder` (which :class:`labelcon.Labelcon` sets) given the texts."""

    labels: LabelSpace
    head: Head
    thresholds: Thresholds
    label_texts: list[str]
    _: KW_ONLY  # the rest by name: a list of scorers must not land in ``at_least_one``
    at_least_one: bool = True
    #: The text scorers mixed into the head's scores, in order, each on top of the ones before.
    text_scorers: list[TextScorer] = field(default_factory=list)
    #: Dev figures of every choice made on dev, by name (head candidates, lexical weights).
    selection: dict[str, float] = field(default_factory=dict)
    #: Seconds spent fitting, by phase (and on the inputs, as :meth:`fit` was told).
    timings: dict[str, float] = field(default_factory=dict)
    #: One of :data:`SCORE_POOLING`: how the head scores an item.
    score_pooling: str = EMBEDDING
    #: Texts to their windows' features, for a stage that scores windows (not saved).
    window_embedder: Callable[[list[str]], WindowFeatures] | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        labels: LabelSpace,
        train: Features,
        y_train: LabelMatrix,
        dev: Features,
        y_dev: LabelMatrix,
        settings: StageSettings = StageSettings(),
        *,
        label_texts: Sequence[str] | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        at_least_one: bool = True,
        show_progress: bool = False,
        timings: dict[str, float] | None = None,
    ) -> PredictionStage:
        """Fit the head (and the lexical vote) on train, choose on dev, calibrate thresholds on dev;
        with ``dev.windows`` whose items have more than one window, the score pooling too
        (:meth:`_choose_pooling`); every choice follows ``settings.target_metric`` (``"auto"``
        resolved by the label count, :func:`labelcon.heads.decisions.resolve_target_metric`).

        ``embed`` turns label texts (``label_texts``, default the names) into embeddings
        for heads that need them; ``at_least_one`` is the rule applied to decisions;
        ``timings``: seconds already spent on the inputs (embedding them), kept in
        :attr:`timings` with the seconds of each phase here.
        """
        texts = list(labels.names if label_texts is None else label_texts)
        settings = replace(settings, target_metric=resolve_target_metric(settings.target_metric, len(labels)))
        y_train, y_dev = sp.csr_matrix(y_train), sp.csr_matrix(y_dev)
        spent = {name: round(seconds, 3) for name, seconds in (timings or {}).items()}
        with _timed(spent, "head choice"):
            head, selection = _fit_head(
                train, y_train, dev, y_dev, settings, texts, embed, show_progress, resolve_device(settings.device)
            )
        # the thresholds are chosen last, on the scores of the whole stage (head and vote); until then, none
        stage = cls(
            labels,
            head,
            Thresholds(np.zeros(len(labels)), np.zeros(len(labels), bool), 0.5),
            texts,
            at_least_one=at_least_one,
            selection=selection,
            timings=spent,
        )
        if dev.windows is not None and settings.score_pooling != EMBEDDING and dev.windows.most > 1:
            with _timed(spent, "score pooling"):
                stage._choose_pooling(dev, y_dev, settings)
        with _timed(spent, "lexical vote"):
            prepared = stage._fit_lexical(train, y_train, dev, y_dev, settings, show_progress)
        with _timed(spent, "thresholds and decision rule"):
            stage.thresholds = stage._decide_on_dev(prepared, y_dev, settings)
        return stage

    def _choose_pooling(self, dev: Features, y_dev: sp.csr_matrix, settings: StageSettings) -> None:
        """Keep ``settings.score_pooling``, or for ``"auto"`` the pooling of
        :data:`SCORE_POOLING` whose head scores rank dev best by the target metric's
        :func:`labelcon.metrics.ranking_quality` (on the rows :meth:`_fit_lexical` ranks; ties
        to the pooled embedding), before the lexical vote is weighed against it."""
        if settings.score_pooling != "auto":
            self.score_pooling = settings.score_pooling
            return
        rows = dense_rows(len(dev), y_dev.shape[1], settings.seed)
        figures = {}
        for rule in SCORE_POOLING:
            self.score_pooling = rule
            scores = self._head_scores(self._dev_prepared(dev, None), rows)
            figures[rule] = ranking_quality(y_dev[rows], scores, settings.target_metric)
        self.score_pooling = max(figures, key=figures.get)
        ranking = RANKING_NAMES[settings.target_metric]
        self.selection.update({f"{pooling_candidate(rule)}: dev {ranking}": v for rule, v in figures.items()})

    def _dev_prepared(self, dev: Features, votes: sp.csr_matrix | None) -> _Prepared:
        """``dev`` prepared for fitting: its windows kept when the head scores windows."""
        return _Prepared(dev.embeddings, votes, dev.windows if self.score_pooling != EMBEDDING else None)

    def _fit_lexical(
        self,
        train: Features,
        y_train: sp.csr_matrix,
        dev: Features,
        y_dev: sp.csr_matrix,
        settings: StageSettings,
        show_progress: bool,
    ) -> _Prepared:
        """Fit the text scorers of ``settings.lexical_scorer`` (:func:`lexical_scorers`; the
        dense+sparse ranker at each C of ``DENSE_SPARSE_C``, its margins Platt-scaled on dev)
        and keep the scorer and weight whose mix ranks dev best by the target metric's
        :func:`labelcon.metrics.ranking_quality` (macro-AP for macro-F1; on a seeded sample
        of dev rows when dev x labels exceeds ``DENSE_EVALUATION``): the configured weight,
        or for ``"auto"`` each of the scorer's weights
        (:func:`labelcon.heads.text_scorers.weights_to_try`) and 0. Under ``"auto"``, scorers
        of the other kind are then stacked on top of the kept one while they rank dev better
        (:meth:`_stack_on_dev`). A single scorer at a configured weight is kept without a dev
        check. Items without texts, or weight 0, leave the head's scores alone. Returns dev,
        prepared."""
        if settings.lexical == 0 or train.texts is None or dev.texts is None:
            return self._dev_prepared(dev, None)
        scorers = lexical_scorers(settings.lexical_scorer, len(train), y_train.shape[1])
        rows = dense_rows(len(dev), y_dev.shape[1], settings.seed)
        head_scores = self._head_scores(self._dev_prepared(dev, None), rows)
        fitted: dict[str, tuple[TextScorerModel, sp.csr_matrix]] = {}
        figures: dict[str, float] = {}  # every candidate chain's dev figure, by chain_name
        single: dict[tuple[str, float], float] = {}
        for scorer in scorers:
            name = scorer_name(scorer)
            fit_scorer(
                scorer, train.texts, y_train, train.embeddings, dev.texts, y_dev, dev.embeddings,
                seed=settings.seed, show_progress=show_progress,
            )  # fmt: skip
            fitted[name] = (scorer, scorer_scores(scorer, dev.texts, dev.embeddings, show_progress))
            if len(scorers) == 1 and settings.lexical != "auto":
                break
            weights = weights_to_try(scorer) if settings.lexical == "auto" else (float(settings.lexical),)
            for w in weights:
                candidate = chain_name([(name, w)] if w else [])  # weight 0, the head alone, is one candidate
                if candidate not in figures:
                    mixed = mix_scores(head_scores, fitted[name][1][rows], w, self._unmixed_columns())
                    figures[candidate] = ranking_quality(y_dev[rows], mixed, settings.target_metric)
                single[(name, w)] = figures[candidate]
        if single:
            name, weight = max(single, key=single.get)
        else:
            name, weight = next(iter(fitted)), float(settings.lexical)
        chain = [(name, weight)] if weight else []
        if chain and settings.lexical == "auto":
            on_rows = {name: (scorer, scores[rows]) for name, (scorer, scores) in fitted.items()}
            chain = self._stack_on_dev(chain, on_rows, head_scores, figures, y_dev[rows], settings.target_metric)
        ranking = RANKING_NAMES[settings.target_metric]
        self.selection.update({f"{name}: dev {ranking}": value for name, value in figures.items()})
        self.text_scorers = [TextScorer(fitted[name][0], w) for name, w in chain]
        votes, _ = chain_scores([(fitted[name][1], w) for name, w in chain])
        return self._dev_prepared(dev, votes)

    def _stack_on_dev(
        self,
        chain: list[tuple[str, float]],
        scored: dict[str, tuple[TextScorerModel, sp.csr_matrix]],
        head_scores: np.ndarray,
        figures: dict[str, float],
        y_rows: sp.csr_matrix,
        metric: str,
    ) -> list[tuple[str, float]]:
        """Grow ``chain`` (scorer names and weights, the best single one first) on dev: on top
        of its mix, try each fitted scorer (``scored``: by name, with its scores of the dev rows
        that ``head_scores`` and ``y_rows`` hold) of a kind not yet in it at each of its weights,
        and add the best while it ranks those rows better than the chain without it; each
        try's figure goes into ``figures`` by its :func:`chain_name`."""
        unmixed = self._unmixed_columns()
        votes, weight = chain_scores([(scored[name][1], w) for name, w in chain])
        current = mix_scores(head_scores, votes, weight, unmixed)
        best = figures[chain_name(chain)]
        while True:
            used = {scorer_kind(scored[name][0]) for name, _ in chain}
            tries = {}
            for name, (scorer, scores) in scored.items():
                if scorer_kind(scorer) in used:
                    continue
                for w in weights_to_try(scorer)[1:]:
                    figure = ranking_quality(y_rows, mix_scores(current, scores, w, unmixed), metric)
                    tries[(name, w)] = figures[chain_name([*chain, (name, w)])] = figure
            if not tries or max(tries.values()) <= best:
                return chain
            name, w = max(tries, key=tries.get)
            best, chain = tries[(name, w)], [*chain, (name, w)]
            current = mix_scores(current, scored[name][1], w, unmixed)

    @property
    def lexical_weight(self) -> float:
        """The weight ``W`` the text scorers' scores have together in the stage's
        (:func:`labelcon.heads.text_scorers.chain_scores`); 0 without text scorers."""
        return chain_weight([part.weight for part in self.text_scorers])

    @property
    def lexical_candidate(self) -> str:
        """The name of the kept chain of text scorers among the candidates of :attr:`selection`."""
        return chain_name([(scorer_name(part.scorer), part.weight) for part in self.text_scorers])

    def _decide_on_dev(self, dev: _Prepared, y_dev: sp.csr_matrix, settings: StageSettings) -> Thresholds:
        """The decision rule chosen on dev (:meth:`rule_on_dev`), its figures kept in :attr:`selection`."""
        if y_dev.shape[0] * y_dev.shape[1] <= DENSE_EVALUATION:
            scores = self._scores(dev)
            blocks: Callable[[], Iterable[np.ndarray]] = lambda: [scores]  # noqa: E731
        else:  # many labels: a block of dev rows at a time, never [n_dev, C]
            blocks = lambda: self._blocks(dev)  # noqa: E731
        rule, figures = self.rule_on_dev(blocks, y_dev, settings)
        self.selection.update(figures)
        return rule

    def rule_on_dev(
        self, score_blocks: Callable[[], Iterable[np.ndarray]], y_dev: LabelMatrix, settings: StageSettings
    ) -> tuple[Thresholds, dict[str, float]]:
        """The decision rule :func:`labelcon.heads.decisions.choose_rule` chooses on this
        stage's dev scores (``score_blocks()`` yields them as row blocks) under ``settings``:
        the head's own threshold, if it brings one, for its columns, the stage's at-least-one
        rule, and the target metric resolved by the label count. Returns the rule and every
        candidate's figure."""
        return choose_rule(
            score_blocks,
            y_dev,
            min_positives=settings.min_positives,
            fallback=self.head.fallback_threshold,
            metric=resolve_target_metric(settings.target_metric, len(self.labels)),
            at_least_one=self.at_least_one,
            seed=settings.seed,
        )

    def to(self, device: str | torch.device) -> PredictionStage:
        """Score on ``device`` (a name for :func:`labelcon.device.resolve_device`) where the
        head gains from it: the kNN search. Returns ``self``."""
        self.head.to(resolve_device(device))
        return self

    def add_labels(self, names: Sequence[str], texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Add labels never seen in training (heads with ``needs_label_embeddings``), from the
        ``embeddings`` of their ``texts``; they are decided under the global threshold."""
        if len(texts) != len(names):
            raise ValueError(f"got {len(names)} names but {len(texts)} texts")
        clash = [name for name in names if name in self.labels.names]
        if clash:
            raise ValueError(f"labels already known: {clash}")
        self.head.add_labels(embeddings)
        for part in self.text_scorers:  # no training text holds the new labels: they get no votes
            part.scorer.add_label_columns(len(names))
        self.labels = LabelSpace([*self.labels.names, *names])
        self.label_texts = [*self.label_texts, *texts]
        self.thresholds = self.thresholds.extended(len(names))

    # ------------------------------------------------------------------ scoring
    def _votes(self, features: Features, show_progress: bool = False) -> sp.csr_matrix | None:
        """The text scorers' scores of the items, as one sparse matrix [n, C] to mix in at
        :attr:`lexical_weight` (:func:`labelcon.heads.text_scorers.chain_scores`); None when
        the stage mixes in no text scorer."""
        if not self.text_scorers:
            return None
        if features.texts is None:
            raise ValueError("this model mixes a vote over texts into its scores: give the items' texts too")
        parts = [
            (part.scores(features.texts, features.embeddings, show_progress=show_progress), part.weight)
            for part in self.text_scorers
        ]
        return chain_scores(parts)[0]

    def _prepare(self, features: Features, show_progress: bool = False) -> _Prepared:
        votes = self._votes(features, show_progress)
        if self.score_pooling == EMBEDDING:
            return _Prepared(features.embeddings, votes)
        windows = features.windows
        if windows is None:
            if features.texts is None or self.window_embedder is None:
                raise ValueError(
                    f"this model scores each window of a text (score_pooling={self.score_pooling!r}), but the "
                    "items come without windows and no window_embedder can embed them from their texts (an "
                    "exported encoder embeds pooled vectors only): predict from the labelcon model folder, "
                    "or give Features(windows=...)"
                )
            windows = self.window_embedder(list(features.texts))
            Features(features.embeddings, None, windows)  # checks the windows cover the items
        return _Prepared(features.embeddings, votes, windows)

    def _head_scores(self, prepared: _Prepared, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """The head's scores [rows, C]: of the embeddings, or of the windows, pooled per item."""
        if prepared.windows is None:
            return self.head.predict_scores(prepared.embeddings[rows])
        return pooled_scores(self.head.predict_scores, prepared.windows, rows, self.score_pooling)

    def _unmixed_columns(self) -> list[int]:
        own = self.head.fallback_threshold
        return [] if own is None else own.columns

    def _mix(self, scores: np.ndarray, votes: sp.csr_matrix | None) -> np.ndarray:
        return scores if votes is None else mix_scores(scores, votes, self.lexical_weight, self._unmixed_columns())

    def _scores(self, prepared: _Prepared, rows: slice = slice(None)) -> np.ndarray:
        votes = prepared.votes[rows] if prepared.votes is not None else None
        return self._mix(self._head_scores(prepared, rows), votes)

    def mixed(self, head_scores: np.ndarray, items: Features) -> np.ndarray:
        """``head_scores`` [n, C], the head's scores of some other embeddings of ``items``
        (one window of each, say), mixed with the text scorers over ``items`` (their texts,
        and for the dense+sparse ranker their embeddings) as :meth:`scores` mixes the head's
        scores of the items' own embeddings."""
        return self._mix(head_scores, self._votes(items))

    def _blocks(self, prepared: _Prepared) -> Iterator[np.ndarray]:
        """Dense scores of consecutive blocks of rows, each at most ``BLOCK_ELEMENTS`` entries
        (window scores too: a block holds fewer items when items have several windows)."""
        per_item = 1 if prepared.windows is None else max(prepared.windows.most, 1)
        step = max(1, BLOCK_ELEMENTS // (max(len(self.labels), 1) * per_item))
        for start in range(0, len(prepared.embeddings), step):
            yield self._scores(prepared, slice(start, start + step))

    def scores(self, features: Features, *, show_progress: bool = False) -> np.ndarray:
        """Scores [n, C] in [0, 1], one dense matrix (for few labels; the other paths are blocked)."""
        return self._scores(self._prepare(features, show_progress))

    def score_blocks(self, features: Features) -> Iterator[np.ndarray]:
        """Dense scores of consecutive blocks of rows, each at most ``BLOCK_ELEMENTS`` entries."""
        return self._blocks(self._prepare(features))

    def decide(self, scores: np.ndarray, at_least_one: bool | None = None) -> np.ndarray:
        """Boolean decisions [n, C] from scores: the calibrated thresholds and the at-least-one rule
        (the stage's own unless ``at_least_one`` is given)."""
        return self.thresholds.apply(scores, at_least_one=self.at_least_one if at_least_one is None else at_least_one)

    def _decisions(self, prepared: _Prepared, at_least_one: bool | None) -> sp.csr_matrix:
        empty = sp.csr_matrix((0, len(self.labels)), dtype=bool)
        blocks = [sp.csr_matrix(self.decide(s, at_least_one)) for s in self._blocks(prepared)]
        return sp.vstack([empty, *blocks], format="csr")

    def _label_sets(self, decisions: sp.csr_matrix) -> list[list[str]]:
        names, bounds = self.labels.names, decisions.indptr
        return [[names[c] for c in decisions.indices[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _ranked(self, prepared: _Prepared, k: int) -> Ranked:
        x, votes = prepared.embeddings, prepared.votes
        if votes is None and prepared.windows is None:
            idx, values = self.head.predict_top_k(x, k)
        elif self.head.sparse and prepared.windows is None:  # both scores sparse: their mix is too, whatever C is
            w = self.lexical_weight
            parts = [
                sparse_top_k(
                    (1 - w) * self.head.sparse_scores(x[i : i + QUERY_BLOCK]) + w * votes[i : i + QUERY_BLOCK], k
                )
                for i in range(0, len(x), QUERY_BLOCK)
            ]
            idx, values = concat_top_k(parts, k)
        else:
            idx, values = concat_top_k([top_k(scores, k) for scores in self._blocks(prepared)], k)
        names = self.labels.names
        return [[(names[c], float(v)) for c, v in zip(*row, strict=True)] for row in zip(idx, values, strict=True)]

    def label_sets(self, features: Features, *, at_least_one: bool | None = None) -> list[list[str]]:
        """Each item's labels: those whose score clears its threshold."""
        return self._label_sets(self._decisions(self._prepare(features), at_least_one))

    def top_k(self, features: Features, k: int = 5) -> Ranked:
        """The ``k`` best labels of each item with their scores, best first."""
        return self._ranked(self._prepare(features), k)

    def predict(
        self, features: Features, k: int = 5, *, at_least_one: bool | None = None
    ) -> tuple[list[list[str]], Ranked]:
        """``(label_sets(features), top_k(features, k))``, preparing the features once."""
        prepared = self._prepare(features)
        return self._label_sets(self._decisions(prepared, at_least_one)), self._ranked(prepared, k)

    def evaluate(
        self, features: Features, y_true: LabelMatrix, *, missed: LabelMatrix | None = None, show_progress: bool = False
    ) -> dict[str, Any]:
        """Metrics of :func:`labelcon.metrics.evaluate`: from one dense matrix of scores up to
        ``DENSE_EVALUATION`` items x labels, else a block at a time without ``macro_ap``.
        ``missed`` [n, M]: labels the items hold outside the label space, counted as labels
        never predicted (score 0), as extreme-classification benchmarks count them."""
        prepared, y_true = self._prepare(features, show_progress), sp.csr_matrix(y_true)
        extra = missed.shape[1] if missed is not None else 0
        if extra:
            y_true = sp.hstack([y_true, sp.csr_matrix(missed)], format="csr")

        def widened(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if not extra:
                return scores, self.decide(scores)
            pad = np.zeros((len(scores), extra), dtype=np.float32)
            return np.hstack([scores, pad]), np.hstack([self.decide(scores), pad.astype(bool)])

        if y_true.shape[0] * y_true.shape[1] <= DENSE_EVALUATION:
            return evaluate_scores(y_true, *widened(self._scores(prepared)))
        return evaluate_blocks(y_true, (widened(s) for s in self._blocks(prepared)))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``head/``, each text scorer's folder (:func:`scorer_folder`), ``labels.json``,
        ``label_texts.json``, ``thresholds.json`` and ``prediction.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_directory(directory / "head") as tmp:
            self.head.save(tmp)
        for i, part in enumerate(self.text_scorers):
            with atomic_directory(directory / scorer_folder(i)) as tmp:
                part.scorer.save(tmp)
        write_json(directory / "labels.json", self.labels.to_json())
        write_json(directory / "label_texts.json", self.label_texts)
        write_json(directory / "thresholds.json", self.thresholds.to_json())
        write_json(
            directory / META_FILE,
            {
                "format": FORMAT,
                "at_least_one": self.at_least_one,
                "text_scorers": [{"scorer": part.kind, "weight": part.weight} for part in self.text_scorers],
                "score_pooling": self.score_pooling,
                "selection": self.selection,
                "timings": self.timings,
            },
        )
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, *, dim: int | None = None) -> PredictionStage:
        """Rebuild the stage that :meth:`save` wrote into ``directory``. ``dim``: the
        encoder's, which the head must take. A file that is missing, unreadable, or does not
        fit the others (as many labels in each, the head's dim) raises
        :class:`labelcon.filecheck.ModelLoadError` naming it."""
        directory = Path(directory)
        source = directory / META_FILE
        with reading(source):
            optional = {
                "at_least_one": bool,
                "text_scorers": list,
                "lexical_weight": (int, float),
                "lexical_scorer": str,
                "score_pooling": str,
                "selection": dict,
                "timings": dict,
            }
            meta = expect_object(read_json(source), {}, optional)
            chain = _saved_chain(meta)
            pooling = meta.get("score_pooling", EMBEDDING)
            if pooling not in SCORE_POOLING:
                raise ValueError(f"expected 'score_pooling' one of {list(SCORE_POOLING)}, got {pooling!r}")
        with reading(directory / "labels.json"):
            labels = LabelSpace.from_json(read_json(directory / "labels.json"))
        with reading(directory / "label_texts.json"):
            texts = read_json(directory / "label_texts.json") if (directory / "label_texts.json").exists() else None
            if texts is not None and not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
                raise ValueError("expected a list of label texts (strings)")
        with reading(directory / "thresholds.json"):
            thresholds = Thresholds.from_json(read_json(directory / "thresholds.json"))
        with reading(directory / "head" / HEAD_FILE):  # the folder or its head.json missing
            head = Head.load(directory / "head")
        text_scorers = [
            TextScorer(SCORERS[kind].load(directory / scorer_folder(i)), weight)
            for i, (kind, weight) in enumerate(chain)
        ]
        sizes = {
            "labels.json": len(labels),
            "head/head.json": head.n_labels_,
            "thresholds.json": len(thresholds),
            **({"label_texts.json": len(texts)} if texts is not None else {}),
            **{
                f"{scorer_folder(i)}/{part.scorer.labels_file}": part.scorer.n_labels
                for i, part in enumerate(text_scorers)
            },
        }
        usual = Counter(sizes.values()).most_common(1)[0][0]  # the files of one model cover the same labels
        odd = next((name for name, size in sizes.items() if size != usual), None)
        if odd is not None:
            others = ", ".join(name for name, size in sizes.items() if size == usual)
            raise damaged(directory / odd, f"covers {sizes[odd]} labels, but {others} cover {usual}")
        if dim is not None and head.dim_ != dim:
            raise damaged(
                directory / "head/head.json",
                f"a head of dim {head.dim_}, but the encoder beside it makes embeddings of dim {dim}",
            )
        texts = list(labels.names) if texts is None else texts
        return cls(
            labels,
            head,
            thresholds,
            texts,
            at_least_one=meta.get("at_least_one", True),
            text_scorers=text_scorers,
            selection=dict(meta.get("selection", {})),
            timings=dict(meta.get("timings", {})),
            score_pooling=pooling,
        )


def scorer_folder(position: int) -> str:
    """The folder of a model directory that holds the text scorer at ``position`` of the chain.

    >>> scorer_folder(0), scorer_folder(1)
    ('lexical', 'lexical.2')
    """
    return "lexical" if position == 0 else f"lexical.{position + 1}"


def _saved_chain(meta: dict[str, Any]) -> list[tuple[str, float]]:
    """The (scorer kind, weight) chain that ``prediction.json`` lists under ``text_scorers``,
    or in a model saved before chains, its one ``lexical_scorer`` at ``lexical_weight``
    (weight 0: none). Each weight of a chain must lie in (0, 1] (1: the scorer in the head's
    place), the old single weight in [0, 1), each kind be one of :data:`SCORERS`."""
    if "text_scorers" not in meta:
        weight = float(meta.get("lexical_weight", 0.0))
        if not 0 <= weight < 1:
            raise ValueError(f"expected 'lexical_weight' in [0, 1), got {weight}")
        kind = meta.get("lexical_scorer", KNN_VOTE)
        if kind not in SCORERS:
            raise ValueError(f"expected 'lexical_scorer' one of {sorted(SCORERS)}, got {kind!r}")
        return [(kind, weight)] if weight else []
    chain = []
    for i, entry in enumerate(meta["text_scorers"]):
        part = expect_object(entry, {"scorer": str, "weight": (int, float)})
        if part["scorer"] not in SCORERS or not 0 < part["weight"] <= 1:
            raise ValueError(
                f"expected each of 'text_scorers' to name a scorer of {sorted(SCORERS)} at a weight in (0, 1]; "
                f"entry {i} is {part['scorer']!r} at {part['weight']}"
            )
        chain.append((part["scorer"], float(part["weight"])))
    return chain


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds the body takes to ``timings[name]``."""
    start = time.monotonic()
    yield
    timings[name] = round(timings.get(name, 0.0) + time.monotonic() - start, 3)


def _fit_head(
    train: Features,
    y_train: sp.csr_matrix,
    dev: Features,
    y_dev: sp.csr_matrix,
    settings: StageSettings,
    label_texts: list[str],
    embed: Callable[[list[str]], np.ndarray] | None,
    show_progress: bool,
    device: torch.device,
) -> tuple[Head, dict[str, float]]:
    """The configured head fitted on train, or for ``"auto"`` the one chosen on dev, scoring on ``device``."""
    if settings.head == AUTO_HEAD:
        return select_on_dev(
            train.embeddings,
            y_train,
            dev.embeddings,
            y_dev,
            min_positives=settings.min_positives,
            show_progress=show_progress,
            device=device,
            metric=settings.target_metric,
        )
    head = build_head(settings.head, **settings.head_params).to(device)
    if not head.needs_label_embeddings:
        return head.fit(train.embeddings, y_train), {}
    if embed is None:
        raise ValueError(f"the {settings.head!r} head needs the label texts embedded: pass embed=")
    return head.fit(train.embeddings, y_train, label_embeddings=embed(label_texts)), {}


def pooled_scores(
    score: Callable[[np.ndarray], np.ndarray], windows: WindowFeatures, rows: slice | np.ndarray, rule: str
) -> np.ndarray:
    """[len(rows), C]: the windows of the items ``rows`` scored by ``score`` and the scores
    pooled per item by ``rule`` (``"max"`` or ``"mean"``).

    >>> w = WindowFeatures(np.array([[0.2], [0.9], [0.4]]), np.array([0, 0, 1]))
    >>> pooled_scores(lambda x: x, w, slice(None), "max").ravel().tolist()
    [0.9, 0.4]
    """
    starts = windows.starts
    items = np.arange(len(starts) - 1)[rows]
    counts = starts[items + 1] - starts[items]
    offsets = np.cumsum(counts) - counts
    picked = np.repeat(starts[items] - offsets, counts) + np.arange(counts.sum())
    scores = score(windows.embeddings[picked])
    if not len(items):
        return scores
    if rule == "max":
        return np.maximum.reduceat(scores, offsets, axis=0)
    if rule == "mean":
        return (np.add.reduceat(scores, offsets, axis=0) / counts[:, None]).astype(scores.dtype)
    raise ValueError(f"expected a score pooling 'max' or 'mean', got {rule!r}")


def pooling_candidate(rule: str) -> str:
    """The name of a score pooling in :attr:`PredictionStage.selection`.

    >>> pooling_candidate("embedding"), pooling_candidate("max")
    ('scores of the pooled embedding', 'scores per window, max')
    """
    return "scores of the pooled embedding" if rule == EMBEDDING else f"scores per window, {rule}"
