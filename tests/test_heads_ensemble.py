"""The ensemble head and the ``auto`` head's choice on dev."""

from __future__ import annotations

import numpy as np
import pytest

from labelcon.heads import (
    EnsembleHead,
    FallbackHead,
    Head,
    Thresholds,
    best_global_threshold,
    build_head,
    select_on_dev,
)
from labelcon.heads import ensemble as ensemble_module
from labelcon.metrics import average_precision_per_label


def _clusters(n: int, seed: int, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Items near one of 4 centres in 16-d, labelled by their centre (plus a second label
    for centres 0 and 1), normalised."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(4, 16))
    which = rng.integers(0, 4, n)
    x = centres[which] + noise * rng.normal(size=(n, 16))
    y = np.zeros((n, 5))
    y[np.arange(n), which] = 1
    y[which < 2, 4] = 1
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def test_ensemble_averages_its_members_and_round_trips(tmp_path) -> None:
    x, y = _clusters(200, 1)
    members = [{"type": "linear", "params": {"C": 4.0}}, {"type": "knn", "params": {"k": 10}}]
    head = EnsembleHead(members).fit(x, y)
    linear, knn = build_head("linear", C=4.0).fit(x, y), build_head("knn", k=10).fit(x, y)
    np.testing.assert_allclose(
        head.predict_scores(x), (linear.predict_scores(x) + knn.predict_scores(x)) / 2, rtol=1e-5, atol=1e-6
    )
    loaded = Head.load(head.save(tmp_path / "head"))
    assert isinstance(loaded, EnsembleHead) and loaded.members == members
    np.testing.assert_array_equal(loaded.predict_scores(x[:7]), head.predict_scores(x[:7]))
    idx, _ = loaded.predict_top_k(x[:7], 2)
    np.testing.assert_array_equal(idx, np.argsort(-head.predict_scores(x[:7]), axis=1, kind="stable")[:, :2])


def test_ensemble_needs_two_members() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        EnsembleHead([{"type": "knn"}])


def test_select_on_dev_returns_the_candidate_with_the_best_dev_macro_ap() -> None:
    x, y = _clusters(300, 1)
    dev_x, dev_y = _clusters(120, 2)
    head, report = select_on_dev(x, y, dev_x, dev_y)
    assert len(report) == 4 + 2 + 8  # 4 linear, 2 knn, 8 averages; every label has dev positives
    best = max(report, key=report.get)
    assert report[best] == pytest.approx(np.nanmean(average_precision_per_label(dev_y, head.predict_scores(dev_x))))
    assert isinstance(head, EnsembleHead) == ("+" in best)


def test_select_on_dev_uses_knn_alone_above_the_label_limit(monkeypatch) -> None:
    monkeypatch.setattr(ensemble_module, "AUTO_MAX_LABELS", 3)
    x, y = _clusters(100, 1)
    head, report = select_on_dev(x, y, x[:20], y[:20])
    assert head.name == "knn" and head.k == 20 and report == {}


def test_fallback_head_takes_the_rare_columns_from_the_fallback_and_round_trips(tmp_path) -> None:
    x, y = _clusters(200, 1)
    main, balanced = build_head("knn", k=10).fit(x, y), build_head("linear", C=4.0, class_weight="balanced").fit(x, y)
    head = FallbackHead.of(main, balanced, np.array([1, 4]), threshold=0.7)
    expected = main.predict_scores(x)
    expected[:, [1, 4]] = balanced.predict_scores(x)[:, [1, 4]]
    np.testing.assert_array_equal(head.predict_scores(x), expected)
    loaded = Head.load(head.save(tmp_path / "head"))
    assert isinstance(loaded, FallbackHead) and loaded.columns == [1, 4] and loaded.threshold == pytest.approx(0.7)
    np.testing.assert_array_equal(loaded.predict_scores(x[:9]), expected[:9])
    refit = FallbackHead(head.main, head.fallback, [1, 4], 0.7).fit(x, y)
    np.testing.assert_allclose(refit.predict_scores(x), expected, rtol=1e-5, atol=1e-6)


def test_labels_rare_in_dev_are_scored_by_a_balanced_probe_under_one_threshold() -> None:
    x, y = _clusters(300, 1)
    dev_x, dev_y = _clusters(120, 2)
    dev_y[np.flatnonzero(dev_y[:, 3])[2:], 3] = 0  # label 3: 2 dev positives, below min_positives=3
    head, report = select_on_dev(x, y, dev_x, dev_y, min_positives=3)
    assert isinstance(head, FallbackHead) and head.columns == [3]
    fallback = head.heads_[1]
    assert fallback.class_weight == "balanced" and fallback.C in (4.0, 16.0, 64.0)
    assert head.threshold == pytest.approx(best_global_threshold(fallback.predict_scores(dev_x), dev_y))
    micro = {k: v for k, v in report.items() if k.startswith("fallback")}
    assert len(micro) == 3 and micro[
        f"fallback linear(C={fallback.C:g}, balanced): dev micro-F1 at one threshold"
    ] == max(micro.values())
    scores = head.predict_scores(dev_x)
    np.testing.assert_array_equal(scores[:, 3], fallback.predict_scores(dev_x)[:, 3])
    thresholds = Thresholds.calibrate(scores, dev_y, min_positives=3, fallback=head.threshold)
    assert thresholds.per_label.tolist() == [True, True, True, False, True]
    assert thresholds.thresholds[3] == pytest.approx(head.threshold)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dev_positives", ["many", "two", "none"])
def test_auto_and_linear_heads_score_a_single_label_column(dev_positives) -> None:
    x, y = _clusters(200, 1)
    dev_x, dev_y = _clusters(80, 2)
    y, dev_y = y[:, 4:], dev_y[:, 4:]  # one label: centres 0 and 1
    if dev_positives != "many":
        dev_y[np.flatnonzero(dev_y[:, 0])[2 if dev_positives == "two" else 0 :], 0] = 0
    head, report = select_on_dev(x, y, dev_x, dev_y, min_positives=3)
    assert isinstance(head, FallbackHead) == (dev_positives != "many")
    scores = head.predict_scores(dev_x)
    assert scores.shape == (80, 1) and np.isfinite(scores).all()
    assert np.isnan(list(report.values())[0]) == (dev_positives == "none")
    assert Thresholds.calibrate(scores, dev_y, min_positives=3).apply(scores).shape == (80, 1)
    linear = build_head("linear").fit(x, y)
    assert linear.predict_scores(dev_x).shape == (80, 1)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("held_by", ["no item", "every item"])
def test_heads_fit_a_label_that_no_training_item_or_every_one_holds(held_by) -> None:
    x, y = _clusters(60, 1)
    dev_x, dev_y = _clusters(40, 2)
    y[:, 2] = 0 if held_by == "no item" else 1
    constant = 0.0 if held_by == "no item" else 1.0
    for head in [
        build_head("linear"),
        build_head("linear", class_weight="balanced"),
        build_head("knn", k=5),
        build_head("prototype"),
    ]:
        scores = head.fit(x, y).predict_scores(dev_x)
        assert scores.shape == (40, 5) and np.isfinite(scores).all()
    np.testing.assert_array_equal(build_head("linear").fit(x, y).predict_scores(dev_x)[:, 2], constant)
    for y_train in (y, y[:, 2:3]):
        head, _ = select_on_dev(x, y_train, dev_x, dev_y[:, : y_train.shape[1]])
        assert head.predict_scores(dev_x).shape == (40, y_train.shape[1])
