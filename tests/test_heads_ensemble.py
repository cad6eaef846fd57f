"""The ensemble head and the ``auto`` head's choice on dev."""

from __future__ import annotations

import numpy as np
import pytest

from labelcon.heads import EnsembleHead, Head, build_head, select_on_dev
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
    np.testing.assert_allclose(head.predict_scores(x), (linear.predict_scores(x) + knn.predict_scores(x)) / 2,
                               rtol=1e-5, atol=1e-6)
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
    assert len(report) == 3 + 2 + 6  # 3 linear, 2 knn, 6 averages
    best = max(report, key=report.get)
    assert report[best] == pytest.approx(np.nanmean(average_precision_per_label(dev_y, head.predict_scores(dev_x))))
    assert isinstance(head, EnsembleHead) == ("+" in best)


def test_select_on_dev_uses_knn_alone_above_the_label_limit(monkeypatch) -> None:
    monkeypatch.setattr(ensemble_module, "AUTO_MAX_LABELS", 3)
    x, y = _clusters(100, 1)
    head, report = select_on_dev(x, y, x[:20], y[:20])
    assert head.name == "knn" and head.k == 20 and report == {}
