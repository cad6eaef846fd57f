"""One target metric (``target_metric``) picks the head, the lexical weight and the decision rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, label_ranking_average_precision_score

from labelcon import Labelcon
from labelcon.config import Config, ConfigError
from labelcon.data import LabelSpace
from labelcon.heads import select_on_dev
from labelcon.heads.decisions import MACRO_MAX_LABELS, resolve_target_metric
from labelcon.metrics import ranking_quality
from labelcon.prediction import Features, PredictionStage, StageSettings
from tests.helpers import FAST


def test_ranking_quality_equals_sklearn_for_each_target() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((80, 7)) < 0.3).astype(int)
    y[0] = 1  # every column has a positive; every row too (sklearn's LRAP counts an empty row as 1)
    y[:, 0] = 1
    s = rng.random((80, 7)).astype(np.float32)
    assert ranking_quality(y, s, "macro") == pytest.approx(average_precision_score(y, s, average="macro"))
    assert ranking_quality(y, s, "micro") == pytest.approx(average_precision_score(y.ravel(), s.ravel()))
    assert ranking_quality(y, s, "samples") == pytest.approx(label_ranking_average_precision_score(y, s))
    with pytest.raises(ValueError, match="macro, micro or samples, got 'weighted'"):
        ranking_quality(y, s, "weighted")


def test_auto_is_macro_up_to_the_many_label_regime_and_micro_beyond() -> None:
    assert resolve_target_metric("auto", MACRO_MAX_LABELS) == "macro"
    assert resolve_target_metric("auto", MACRO_MAX_LABELS + 1) == "micro"
    assert resolve_target_metric("micro", 3) == "micro"
    with pytest.raises(ValueError, match="got 'f1'"):
        resolve_target_metric("f1", 3)


def test_config_reads_the_former_name_and_refuses_both_names_that_disagree() -> None:
    assert Config(decision_metric="micro").target_metric == "micro"
    assert Config.build({"decision_metric": "macro"}).target_metric == "macro"
    with pytest.raises(ConfigError, match="decision_metric is its former name"):
        Config.build({"decision_metric": "macro", "target_metric": "micro"})
    with pytest.raises(ConfigError, match="field 'target_metric'"):
        Config.build({"target_metric": "f1"})


def _features(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Items of 5 labels with one frequent label: macro and micro rank the candidates differently."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 5)) < np.array([0.6, 0.1, 0.1, 0.05, 0.05])).astype(int)
    x = rng.normal(size=(n, 16)) + 1.5 * y @ rng.normal(size=(5, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


@pytest.mark.parametrize("metric", ["macro", "micro", "samples"])
def test_every_choice_of_the_stage_follows_the_target_metric(metric: str) -> None:
    (xt, yt), (xd, yd) = _features(0, 300), _features(1, 150)
    texts = [f"item {i} " + " ".join(f"w{c}" for c in np.flatnonzero(row)) for i, row in enumerate(yt)]
    dev_texts = [f"item {i} " + " ".join(f"w{c}" for c in np.flatnonzero(row)) for i, row in enumerate(yd)]
    stage = PredictionStage.fit(
        LabelSpace(list("abcde")), Features(xt, texts), yt, Features(xd, dev_texts), yd,
        StageSettings(target_metric=metric),
    )  # fmt: skip
    _, head_figures = select_on_dev(xt, yt, xd, yd, metric=metric)
    name = {"macro": "macro-AP", "micro": "micro-AP", "samples": "LRAP"}[metric]
    assert {k: v for k, v in stage.selection.items() if ": " not in k} == pytest.approx(head_figures)
    weights = {k: v for k, v in stage.selection.items() if k.startswith("lexical weight")}
    assert weights and all(k.endswith(f": dev {name}") for k in weights)
    rules = {k: v for k, v in stage.selection.items() if k.endswith("-F1")}
    assert rules and all(k.endswith(f": dev cross-fitted {metric}-F1") for k in rules)


def test_select_on_dev_keeps_the_candidate_best_by_the_metric() -> None:
    (xt, yt), (xd, yd) = _features(2, 300), _features(3, 150)
    for metric in ("macro", "micro"):
        head, figures = select_on_dev(xt, yt, xd, yd, metric=metric)
        assert ranking_quality(yd, head.predict_scores(xd), metric) == pytest.approx(max(figures.values()))


def test_target_metric_is_a_keyword_and_reaches_the_stage(toy_data) -> None:
    model = Labelcon(**{**FAST, "epochs": 1, "head": "linear", "target_metric": "micro"})
    model.fit(toy_data["train"], toy_data["dev"], show_progress=False)
    assert any(k.endswith(": dev cross-fitted micro-F1") for k in model.stage_.selection)
    default = Labelcon(**{**FAST, "epochs": 1, "head": "linear"}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    assert any(k.endswith(": dev cross-fitted macro-F1") for k in default.stage_.selection)  # few labels: auto is macro
