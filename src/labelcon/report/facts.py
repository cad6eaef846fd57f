"""What a report shows about one run, gathered once: its files, its model and the figures
of its prediction stage on the run's test items.

The run directory gives the settings (``run.json``), the metrics, the training history
and the test items with their gold labels (``predictions_test.jsonl``; without it, the
dev data when its file still holds what the run used). Those items are embedded and
scored again through the prediction stage (:class:`labelcon.prediction.PredictionStage`:
``scores`` and ``decide``), a seeded sample of them when items x labels exceed
``MAX_ENTRIES``, so the per-label figures, the score distributions and the map come from
one set of scores. Training frequencies are counted in the run's training file, when it
is still where the run read it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from labelcon.data import DataError, Dataset, LabelSpace, read_dataset
from labelcon.io import read_json
from labelcon.metrics import average_precision_per_label
from labelcon.modeldir import MODEL_FILE
from labelcon.prediction import PredictionStage
from labelcon.training_run import RUN_FILE

#: Test items scored again for the report, at most (a seeded sample beyond).
MAX_ITEMS = 2000
#: ... and at most this many item x label scores.
MAX_ENTRIES = 4_000_000
#: A label with fewer training items than this is marked rare.
RARE_ITEMS = 10
PREDICTIONS_FILE = "predictions_test.jsonl"


class ReportError(ValueError):
    """A report that cannot be built as asked."""


@dataclass
class Evaluation:
    """The items a report's per-label figures come from, scored by the run's stage."""

    split: str  #: "test", or "dev" when the run has no test predictions
    source: str
    sha256: str  #: of the whole set (texts and gold labels), to tell runs on the same data
    total: int  #: items in the set; ``len(texts)`` of them were scored
    texts: list[str]
    y: sp.csr_matrix  #: gold labels [n, C] in the run's label space
    scores: np.ndarray  #: [n, C]
    decisions: np.ndarray  #: bool [n, C]
    embeddings: np.ndarray  #: [n, D]
    unknown: Counter  #: gold labels outside the label space, by name
    seconds: float  #: spent embedding and scoring them


@dataclass
class LabelFigures:
    """Per-label figures on the evaluation items, in label-space order."""

    names: list[str]
    train: np.ndarray | None  #: training items per label (None: training file unavailable)
    support: np.ndarray  #: evaluation items holding the label
    predicted: np.ndarray
    hits: np.ndarray
    f1: np.ndarray  #: NaN for labels without evaluation items
    ap: np.ndarray  #: NaN for labels without evaluation items
    threshold: np.ndarray
    own: np.ndarray  #: whether the label has a threshold of its own (else the fallback)

    def worst(self, k: int) -> list[int]:
        """The ``k`` labels with evaluation items and the lowest F1 (then AP), worst first."""
        held = np.flatnonzero(self.support > 0)
        order = np.lexsort((np.nan_to_num(self.ap[held]), self.f1[held]))
        return [int(c) for c in held[order[:k]]]

    def rare(self) -> np.ndarray:
        """Labels with 1 to ``RARE_ITEMS - 1`` training items (all False without counts)."""
        return np.zeros(len(self.names), bool) if self.train is None else (self.train > 0) & (self.train < RARE_ITEMS)

    def zero_shot(self) -> np.ndarray:
        """Labels without training items (all False without counts)."""
        return np.zeros(len(self.names), bool) if self.train is None else self.train == 0


@dataclass
class RunFacts:
    """Everything a report shows about one run; ``notes`` say what was unavailable and why."""

    path: Path
    state: dict[str, Any]  #: run.json: status, config, data fingerprints
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    objective: str | None
    stage: PredictionStage | None  #: None for a run trained without labels
    train: Dataset | None
    evaluation: Evaluation | None = None
    labels: LabelFigures | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.resolve().name


def gather(
    run_dir: str | os.PathLike,
    model: Any,
    *,
    test: str | os.PathLike | None = None,
    max_items: int = MAX_ITEMS,
    max_entries: int = MAX_ENTRIES,
) -> RunFacts:
    """The facts of the run in ``run_dir`` (a ``labelcon train --out`` directory) and its
    ``model`` (``Labelcon.load(run_dir)``, or the model just fitted there); ``test``: a
    labelled file to compute the label figures on instead of the run's test items."""
    path = Path(run_dir)
    state = read_json(path / RUN_FILE) if (path / RUN_FILE).is_file() else {}
    facts = RunFacts(
        path,
        state,
        state.get("config") or model.config.model_dump(),
        model.metrics_,
        model.history_,
        read_json(path / MODEL_FILE).get("objective"),
        model.stage_,
        None,
    )
    facts.train, problem = _read_run_data(facts, "train")
    if problem:
        facts.notes.append(f"training frequencies: {problem}" + ("; they are approximate" if facts.train else ""))
    if facts.stage is None:
        facts.notes.append("the run trained an encoder without labels: no label figures")
        return facts
    data = ("test", _read(str(test), facts.config)) if test is not None else _evaluation_data(facts)
    if data is not None:
        facts.evaluation = _evaluate(model, data, max_items, max_entries)
        facts.labels = _label_figures(facts.stage, facts.evaluation, facts.train)
    return facts


def _read(source: str, config: dict[str, Any]) -> Dataset:
    return read_dataset(
        source,
        text_field=config.get("text_field", "text"),
        labels_field=config.get("labels_field", "labels"),
        label_sep=config.get("label_sep"),
    )


def _read_run_data(facts: RunFacts, split: str) -> tuple[Dataset | None, str]:
    """The run's ``split`` data read again from its file, and what is off about it: ""
    when it holds what the run used (its fingerprint matches)."""
    print_ = facts.state.get("data", {}).get(split) or {}
    source = print_.get("source")
    if not source or not Path(source).is_file():
        return None, f"the {split} data ({source or 'given in memory'}) is not readable here"
    try:
        data = _read(source, facts.config)
    except (DataError, OSError, ValueError) as error:
        return None, f"the {split} data is not readable: {error}"
    if data.fingerprint()["sha256"] != print_.get("sha256"):
        return data, (
            f"{source} holds {len(data)} items where the run's {split} data had {print_.get('items')} "
            "(a dev carve-out, --shots, or a changed file)"
        )
    return data, ""


def _evaluation_data(facts: RunFacts) -> tuple[str, Dataset] | None:
    """The test items of ``predictions_test.jsonl``, else the run's dev data unchanged."""
    predictions = facts.path / PREDICTIONS_FILE
    if predictions.is_file():
        return "test", read_dataset(predictions)
    dev, problem = _read_run_data(facts, "dev")
    if dev is not None and not problem:
        facts.notes.append(
            "no test predictions (train with --test): the label figures are on dev, where the "
            "thresholds were chosen, so they flatter the model"
        )
        return "dev", dev
    facts.notes.append(f"no test predictions (train with --test), and {problem or 'no dev data'}: no label figures")
    return None


def _evaluate(model: Any, data: tuple[str, Dataset], max_items: int, max_entries: int) -> Evaluation:
    """``data`` (a seeded sample of it beyond ``max_items`` or ``max_entries`` scores) embedded and scored."""
    split, dataset = data
    stage = model.stage_
    n = min(len(dataset), max_items, max(1, max_entries // max(len(stage.labels), 1)))
    rows = np.sort(np.random.default_rng(0).permutation(len(dataset))[:n])
    part = dataset.subset(rows)
    y, unknown = part.label_matrix(stage.labels, ignore_unknown=True)
    started = time.monotonic()
    features = model.features(part.texts)
    embeddings = features.embeddings
    scores = stage.scores(features)
    return Evaluation(
        split,
        str(dataset.source),
        dataset.fingerprint()["sha256"],
        len(dataset),
        list(part.texts),
        sp.csr_matrix(y),
        scores,
        stage.decide(scores),
        embeddings,
        unknown,
        time.monotonic() - started,
    )


def _label_figures(stage: PredictionStage, evaluation: Evaluation, train: Dataset | None) -> LabelFigures:
    y, decisions = evaluation.y, sp.csr_matrix(evaluation.decisions)
    support, predicted, hits = (
        np.asarray(m.sum(axis=0)).ravel().astype(int) for m in (y, decisions, y.multiply(decisions))
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support > 0, 2 * hits / (support + predicted), np.nan)
    counts = None
    if train is not None:
        held = Counter(name for names in train.labels for name in names)
        counts = np.array([held.get(name, 0) for name in stage.labels.names])
    ap = average_precision_per_label(y, evaluation.scores)
    rule = stage.thresholds
    return LabelFigures(
        list(stage.labels.names), counts, support, predicted, hits, f1, ap, rule.thresholds, rule.per_label
    )


def label_sets_matrix(data: Dataset, names: list[str]) -> sp.csr_matrix:
    """``data``'s label sets as a matrix over ``names`` (other labels dropped)."""
    return data.label_matrix(LabelSpace(names), ignore_unknown=True)[0]
