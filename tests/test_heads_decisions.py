"""Decision rules chosen on dev, cross-fitted or in-sample: per-label thresholds, one global threshold,
top-k, rank caps."""

import numpy as np
import pytest
import scipy.sparse as sp

from labelcon import metrics
from labelcon.heads import FallbackThreshold, Thresholds, decisions
from labelcon.heads.decisions import GLOBAL_FALLBACK, MARGIN, PER_LABEL, _count, candidate_rules, choose_rule, rule_name


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


def noisy_case(n, c=30, seed=0):
    """Rare labels (3% of items each) whose positives score higher than the rest on one
    scale for every label, under noise: per-label thresholds fit dev's few positives."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.03).astype(int)
    return np.clip(0.25 * y + rng.normal(0.4, 0.12, y.shape), 0, 1).astype(np.float32), y


def macro_f1(rule, s, y):
    counts = _count({"rule": rule}, [s], sp.csr_matrix(y), False)["rule"]
    return counts.f1("macro")


def test_top_k_wins_where_no_threshold_can_and_the_choice_is_recorded():
    s, y = offset_case()
    rule, figures = choose_rule(lambda: [s[:100], s[100:]], y, min_positives=3)
    assert rule.rank_cap == 1 and (rule.apply(s).sum(axis=1) == 1).all()
    assert figures["top-1: dev cross-fitted micro-F1"] == pytest.approx(1.0)
    assert figures["top-1: dev cross-fitted micro-F1"] == max(figures.values())
    names = candidate_rules(lambda: [s], y, min_positives=3)
    assert set(figures) == {f"{name}: dev cross-fitted micro-F1" for name in names}


def test_cross_fitting_rejects_per_label_thresholds_that_only_fit_dev():
    s, y = noisy_case(200)
    rules = candidate_rules(lambda: [s], y, min_positives=3)
    in_sample = {name: macro_f1(rule, s, y) for name, rule in rules.items()}
    assert in_sample[PER_LABEL] > in_sample["one global threshold"] + 0.05  # dev flatters per-label thresholds
    rule, figures = choose_rule(lambda: [s], y, min_positives=3, metric="macro")
    assert rule.name == "one global threshold" and rule_name(rule) == rule.name
    assert (
        figures["one global threshold: dev cross-fitted macro-F1"] > figures[f"{PER_LABEL}: dev cross-fitted macro-F1"]
    )
    s_test, y_test = noisy_case(5000, seed=100)  # and on new items the choice is the better one
    assert macro_f1(rule, s_test, y_test) > macro_f1(rules[PER_LABEL], s_test, y_test) + 0.03


def test_in_sample_per_label_thresholds_stay_unless_another_rule_leads_by_the_margin(monkeypatch):
    monkeypatch.setattr(decisions, "CROSS_FIT_MAX", 0)  # as for many labels: no cross-fitting
    s, y = noisy_case(200)
    rule, figures = choose_rule(lambda: [s], y, min_positives=3, metric="macro")
    assert rule.name == PER_LABEL and figures[f"{PER_LABEL}: dev macro-F1"] == max(figures.values())
    s, y = offset_case()
    rule, figures = choose_rule(lambda: [s], y, min_positives=3)
    assert rule.rank_cap == 1 and figures["top-1: dev micro-F1"] > figures[f"{PER_LABEL}: dev micro-F1"] + MARGIN


def test_separable_labels_keep_per_label_thresholds_by_every_metric():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 6)) < 0.2).astype(int)
    offset = np.linspace(0, 0.4, 6)  # separable per label, on scales no global threshold fits
    s = np.clip(0.3 * y + rng.uniform(0, 0.25, y.shape) + offset, 0, 1).astype(np.float32)
    calibrated = Thresholds.calibrate(s, y)
    for metric in ("micro", "macro", "samples"):
        rule, figures = choose_rule(lambda: [s], y, metric=metric)
        assert rule.name == PER_LABEL and (rule.thresholds == calibrated.thresholds).all()
        assert figures[f"{PER_LABEL}: dev cross-fitted {metric}-F1"] == max(figures.values())


def test_a_heads_fallback_threshold_decides_its_own_columns_and_competes_with_the_global_one():
    s, y = offset_case()
    rules = candidate_rules(lambda: [s], y, min_positives=3)
    t = rules["one global threshold"].global_threshold
    without = np.flatnonzero(~rules[PER_LABEL].per_label)
    heads, others = without[::2], without[1::2]
    rules = candidate_rules(lambda: [s], y, min_positives=3, fallback=FallbackThreshold(heads.tolist(), 0.99))
    own, global_fallback = rules[PER_LABEL], rules[GLOBAL_FALLBACK]
    assert heads.size and others.size
    assert (own.thresholds[heads] == pytest.approx(0.99)) and (own.thresholds[others] == t).all()
    assert (global_fallback.thresholds[without] == t).all()
    assert (global_fallback.thresholds[own.per_label] == own.thresholds[own.per_label]).all()
    assert (rules[f"{PER_LABEL}, at most 2 per item"].thresholds == own.thresholds).all()
    assert GLOBAL_FALLBACK not in candidate_rules(lambda: [s], y, min_positives=3)


def two_scales_case(n, seed):
    """Labels 0-9 scored by a main head (positives about 0.6, the rest 0.3), each held by
    1% of items; labels 10-19 by a probe on a lower scale (positives 0.35, the rest 0.15),
    each held by 0.5%, whose own threshold is 0.27."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 20), dtype=int)
    for label, share in [(c, 0.01) for c in range(10)] + [(c, 0.005) for c in range(10, 20)]:
        y[rng.choice(n, max(1, round(share * n)), replace=False), label] = 1
    main = np.where(y[:, :10], rng.normal(0.6, 0.05, (n, 10)), rng.normal(0.3, 0.08, (n, 10)))
    probe = np.where(y[:, 10:], rng.normal(0.35, 0.02, (n, 10)), rng.normal(0.15, 0.03, (n, 10)))
    return np.clip(np.hstack([main, probe]), 0, 1).astype(np.float32), y


def test_cross_fitting_applies_the_heads_threshold_to_its_columns_only():
    # In a fold a main label can fall under min_positives; were it decided by the probe's
    # threshold there, the cross-fitted figure of the head's fallback would sink far below
    # what the rule reaches on new items (0.53 against 0.89 here).
    s, y = two_scales_case(300, seed=1)  # main labels 3 dev positives each, probe labels 2
    fallback = FallbackThreshold(list(range(10, 20)), 0.27)
    rule, figures = choose_rule(lambda: [s], y, min_positives=3, fallback=fallback, metric="macro")
    fresh, y_fresh = two_scales_case(20_000, seed=2)
    assert rule.name == PER_LABEL
    assert figures[f"{PER_LABEL}: dev cross-fitted macro-F1"] == pytest.approx(macro_f1(rule, fresh, y_fresh), abs=0.06)
    rules = candidate_rules(lambda: [s], y, min_positives=3, fallback=fallback)
    assert macro_f1(rule, fresh, y_fresh) > macro_f1(rules[GLOBAL_FALLBACK], fresh, y_fresh) + 0.3


def test_a_rank_cap_keeps_at_most_k_labels_an_item_and_survives_json():
    s = np.array([[0.9, 0.8, 0.7, 0.1], [0.2, 0.9, 0.1, 0.1]], dtype=np.float32)
    capped = Thresholds(np.full(4, 0.5), np.ones(4, bool), 0.5, rank_cap=2)
    assert capped.apply(s).astype(int).tolist() == [[1, 1, 0, 0], [0, 1, 0, 0]]
    again = Thresholds.from_json(capped.to_json())
    assert again.rank_cap == 2 and (again.apply(s) == capped.apply(s)).all()
    assert capped.extended(1).rank_cap == 2
    with pytest.raises(ValueError, match="rank_cap"):
        Thresholds(np.zeros(2), np.zeros(2, bool), 0.5, rank_cap=0)


def test_a_rule_is_named_as_the_candidates_name_it_and_keeps_its_name_through_json():
    s, y = offset_case()
    rules = candidate_rules(lambda: [s], y, min_positives=3, fallback=FallbackThreshold([0, 1], 0.9))
    for name, rule in rules.items():
        assert rule_name(rule) == name == rule_name(Thresholds.from_json(rule.to_json()))
    unnamed = {name: Thresholds(r.thresholds, r.per_label, r.global_threshold, r.rank_cap) for name, r in rules.items()}
    for name in (PER_LABEL, "one global threshold", "top-2", f"{PER_LABEL}, at most 3 per item"):
        assert rule_name(unnamed[name]) == name  # models saved before rules had names
    with pytest.raises(ValueError, match="'name'"):
        Thresholds.from_json({**rules[PER_LABEL].to_json(), "name": 3})


def test_dev_beyond_the_dense_limit_is_scored_in_sample_from_its_blocks(monkeypatch):
    s, y = offset_case()
    monkeypatch.setattr(metrics, "DENSE_EVALUATION", s.size - 1)  # a caller that reads dev in blocks for memory
    rule, figures = choose_rule(lambda: [s[:100], s[100:200], s[200:]], y, min_positives=3)
    assert rule.rank_cap == 1 and all(name.endswith(": dev micro-F1") for name in figures)
