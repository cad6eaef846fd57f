"""The report's numbers, from a run's facts: loss points, time per phase, the choices made
on dev, data statistics, example errors, the machine. Both the HTML page and the
Markdown summary read them from here."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from labelcon.heads.decisions import rule_name
from labelcon.metrics import HEADLINE_METRICS, RANKING_NAMES
from labelcon.prediction import PredictionStage, pooling_candidate
from labelcon.report.facts import RARE_ITEMS, Evaluation, RunFacts

#: The metrics of the headline table, in order.
HEADLINE = tuple(HEADLINE_METRICS)
#: The dev metrics drawn per epoch (those a run checked): the labels', dev pairs' and dev retrieval's.
EPOCH_METRICS = ("macro_ap", "micro_f1", "macro_f1", "precision_at_1", "pairs_spearman", "ndcg@10")
#: The metric that picks the kept epoch: the first of these that the run checked (as the trainer's recipe).
KEPT_BY = ("macro_ap", "pairs_spearman", "ndcg@10")
LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "transformers", "matplotlib")


def loss_points(history: list[dict[str, Any]]) -> np.ndarray:
    """``[step, seconds, loss]`` rows: the history's loss points, or one per epoch for
    histories written before the trainer kept points."""
    rows = [point for record in history for point in record.get("losses", [])]
    if not rows:
        rows = [[r["step"], r["seconds"], r["loss"]] for r in history if np.isfinite(r.get("loss", np.nan))]
    return np.array(rows, dtype=float).reshape(-1, 3)


def dev_epochs(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epochs checked on dev: ``{"epoch": n, metric: value, ...}``."""
    return [{"epoch": r["epoch"], **r["dev"]} for r in history if "dev" in r]


def kept_by(epochs: list[dict[str, Any]]) -> str:
    """The metric the run kept its best epoch by (:data:`KEPT_BY`).

    >>> kept_by([{"epoch": 1, "pairs_spearman": 0.8, "ndcg@10": 0.5}])
    'pairs_spearman'
    """
    return next((m for m in KEPT_BY if any(m in e for e in epochs)), KEPT_BY[0])


def time_phases(facts: RunFacts) -> list[tuple[str, float]]:
    """Seconds per phase of the run: training steps, dev checks, then the stage's phases."""
    history, phases = facts.history, []
    if history:
        dev = [r.get("dev_seconds", 0.0) for r in history]
        # each epoch's clock includes the dev checks of the epochs before it; histories
        # written before the trainer timed its checks (no loss points either) cannot tell them apart
        timed = "losses" in history[-1]
        phases.append(
            ("training steps" if timed else "training and dev checks", history[-1]["seconds"] - sum(dev[:-1]))
        )
        if any(dev):
            phases.append(("dev checks", sum(dev)))
    if facts.stage is not None:
        phases += list(facts.stage.timings.items())
    return [(name, float(seconds)) for name, seconds in phases]


@dataclass
class Choice:
    """One choice made on dev: the candidates' dev figures, the one picked and why."""

    title: str
    metric: str
    figures: dict[str, float]
    picked: str | None

    def describe(self) -> str:
        """What was picked, with its dev figure, in words."""
        if self.picked is None:
            return self.title
        figure = self.figures.get(self.picked, float("nan"))
        return f"{self.title}: {self.picked} ({self.metric} {figure:.3f}, {len(self.figures)} candidates)"


def choices(stage: PredictionStage) -> list[Choice]:
    """The head, the rare labels' fallback probe, the score pooling over windows, the lexical
    weight and the decision rule,
    from the stage's ``selection`` (each candidate's dev figure, by ``"name: metric"``;
    the head candidates' names carry no metric: the ranking figure of the target metric
    whose F1 the rules carry, :data:`labelcon.metrics.RANKING_NAMES`, macro-AP in older models)."""
    target = next((name.rsplit(" ", 1)[-1] for name in stage.selection if name.endswith("-F1")), "macro-F1")
    head_metric = f"dev {RANKING_NAMES.get(target.removesuffix('-F1'), 'macro-AP')}"
    groups: dict[str, tuple[str, dict[str, float]]] = {}
    for name, value in stage.selection.items():
        candidate, metric = name.split(": ", 1) if ": " in name else (name, head_metric)
        kind = (
            "fallback"
            if name.startswith("fallback")
            else "lexical"
            if name.startswith("lexical weight")
            else "pooling"
            if name.startswith("scores ")
            else "rule"
            if ": " in name
            else "head"
        )
        groups.setdefault(kind, (metric, {}))[1][candidate] = float(value)
    out = []
    if "head" in groups:
        out.append(Choice("head (auto)", *groups["head"], _best(groups["head"][1])))
    else:
        params = ", ".join(f"{k}={v}" for k, v in stage.head.get_params().items())
        out.append(Choice(f"head: {stage.head.name}({params}), as configured", "", {}, None))
    if "fallback" in groups:
        title = f"probe for the {len(stage.head.fallback_threshold.columns)} labels too rare in dev"
        out.append(Choice(title, *groups["fallback"], _best(groups["fallback"][1])))
    if "pooling" in groups:
        out.append(Choice("score pooling over windows", *groups["pooling"], pooling_candidate(stage.score_pooling)))
    if "lexical" in groups:
        out.append(Choice("text scorer and weight", *groups["lexical"], stage.lexical_candidate))
    if "rule" in groups:
        out.append(Choice("decision rule", *groups["rule"], rule_name(stage.thresholds)))
    return out


def _best(figures: dict[str, float]) -> str:
    return max(figures, key=lambda name: -np.inf if np.isnan(figures[name]) else figures[name])


def data_statistics(facts: RunFacts) -> list[tuple[str, str]]:
    """(what, value) rows about the run's data."""
    rows = []
    for split, print_ in facts.state.get("data", {}).items():
        rows.append((f"{split} items", f"{print_.get('items')} ({print_.get('source') or 'given in memory'})"))
    if facts.train is not None:
        sizes = np.array([len(labels) for labels in facts.train.labels])
        rows += [
            (
                "labels per training item",
                f"{sizes.mean():.2f} (max {sizes.max()}, {int((sizes == 0).sum())} items without labels)",
            )
        ]
    labels = facts.labels
    if labels is not None:
        rows.append(("labels", str(len(labels.names))))
        if labels.train is not None:
            rows += [
                (
                    "training items per label",
                    f"min {labels.train.min()}, median {np.median(labels.train):g}, max {labels.train.max()}",
                ),
                ("rare labels", f"{int(labels.rare().sum())} (1 to {RARE_ITEMS - 1} training items)"),
                ("zero-shot labels", f"{int(labels.zero_shot().sum())} (no training items)"),
            ]
    evaluation = facts.evaluation
    if evaluation is not None:
        scored = "all" if len(evaluation.texts) == evaluation.total else f"a seeded sample of {len(evaluation.texts)}"
        rows.append(
            (
                f"{evaluation.split} items scored for this report",
                f"{scored} of {evaluation.total}, embedded and scored in {evaluation.seconds:.1f} s",
            )
        )
        if evaluation.unknown:
            names = ", ".join(name for name, _ in evaluation.unknown.most_common(5))
            rows.append(
                (f"{evaluation.split} labels unseen in training", f"{sum(evaluation.unknown.values())} ({names})")
            )
    return rows


@dataclass
class Example:
    """An item the stage got wrong on a label: its text, gold labels, predicted labels and the label's score."""

    text: str
    gold: list[str]
    predicted: list[str]
    score: float


def examples(evaluation: Evaluation, names: list[str], column: int, k: int = 2) -> tuple[list[Example], list[Example]]:
    """Up to ``k`` misses (gold, not predicted) and ``k`` false alarms of label ``column``,
    the most confident errors first."""
    gold = evaluation.y[:, column].toarray().ravel() > 0
    said, scores = evaluation.decisions[:, column], evaluation.scores[:, column]

    def pick(rows: np.ndarray, highest: bool) -> list[Example]:
        rows = rows[np.argsort(-scores[rows] if highest else scores[rows])][:k]
        return [
            Example(
                evaluation.texts[i],
                [names[c] for c in evaluation.y[i].indices],
                [names[c] for c in np.flatnonzero(evaluation.decisions[i])],
                float(scores[i]),
            )
            for i in rows
        ]

    return pick(np.flatnonzero(gold & ~said), highest=False), pick(np.flatnonzero(~gold & said), highest=True)


def changed_settings(config: dict[str, Any]) -> set[str]:
    """The settings of ``config`` that differ from labelcon's defaults."""
    from labelcon.config import Config

    defaults = Config().model_dump()
    return {key for key, value in config.items() if key in defaults and defaults[key] != value}


def machine() -> list[tuple[str, str]]:
    """(what, value) rows: the machine and library versions this report was built with."""
    rows = [
        ("platform", platform.platform()),
        ("processor", platform.processor() or platform.machine()),
        ("CPU cores", str(os.cpu_count())),
        ("Python", sys.version.split()[0]),
        ("labelcon", metadata.version("labelcon")),
    ]
    for name in LIBRARIES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows
