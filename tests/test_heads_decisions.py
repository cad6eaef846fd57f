"""Decision rules chosen on dev: per-label thresholds, one global threshold, top-k, rank caps."""

import numpy as np
import pytest

from labelcon.heads import Thresholds
from labelcon.heads.decisions import MARGIN, PER_LABEL, candidate_rules, choose_rule, rule_name


def offset_case(n=300, c=40, seed=0):
    """One true label per item that scores best in its row, under a row offset that no
    single threshold can see through; each label has few dev positives."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, n)
    y = np.zeros((n, c), dtype=int)
    y[np.arange(n), truth] = 1
    s = rng.uniform(0, 0.3, (n, c)) + rng.uniform(0, 0.5, (n, 1))
    s[np.arange(n), truth] += 0.35
    return np.clip(s, 0, 1).astype(np.float32), y


def test_top_k_wins_where_no_threshold_can_and_the_choice_is_recorded():
    s, y = offset_case()
    calibrated = Thresholds.calibrate(s, y, min_positives=3)
    rule, figures = choose_rule(lambda: [s[:100], s[100:]], y, calibrated)
    assert rule.rank_cap == 1 and (rule.apply(s).sum(axis=1) == 1).all()
    assert figures["top-1: dev micro-F1"] == pytest.approx(1.0)
    assert figures["top-1: dev micro-F1"] > figures[f"{PER_LABEL}: dev micro-F1"] + MARGIN
    assert set(figures) == {f"{name}: dev micro-F1" for name in candidate_rules(calibrated, calibrated)}


def test_per_label_thresholds_stay_unless_another_rule_leads_by_the_margin():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 6)) < 0.2).astype(int)
    s = np.clip(0.5 * y + rng.uniform(0, 0.45, y.shape), 0, 1).astype(np.float32)  # separable per label
    calibrated = Thresholds.calibrate(s, y)
    for metric in ("micro", "macro", "samples"):
        rule, figures = choose_rule(lambda: [s], y, calibrated, metric=metric)
        assert rule is calibrated
        assert figures[f"{PER_LABEL}: dev {metric}-F1"] == max(figures.values())


def test_a_rank_cap_keeps_at_most_k_labels_an_item_and_survives_json():
    s = np.array([[0.9, 0.8, 0.7, 0.1], [0.2, 0.9, 0.1, 0.1]], dtype=np.float32)
    capped = Thresholds(np.full(4, 0.5), np.ones(4, bool), 0.5, rank_cap=2)
    assert capped.apply(s).astype(int).tolist() == [[1, 1, 0, 0], [0, 1, 0, 0]]
    again = Thresholds.from_json(capped.to_json())
    assert again.rank_cap == 2 and (again.apply(s) == capped.apply(s)).all()
    assert capped.extended(1).rank_cap == 2
    with pytest.raises(ValueError, match="rank_cap"):
        Thresholds(np.zeros(2), np.zeros(2, bool), 0.5, rank_cap=0)


def test_a_rule_is_named_as_the_candidates_name_it():
    s, y = offset_case()
    calibrated = Thresholds.calibrate(s, y, min_positives=3)
    global_rule = Thresholds.calibrate(s, y, min_positives=len(y) + 1)
    assert calibrated.per_label.any() and not global_rule.per_label.any()
    for name, rule in candidate_rules(calibrated, global_rule).items():
        assert rule_name(rule) == name
