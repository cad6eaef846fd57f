import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import hypergeom
from sklearn.metrics import f1_score

from labelcon.heads import Thresholds, best_global_threshold, top_k_labels
from labelcon.heads.thresholds import MAX_CHANCE, MAX_FLOOD


def dev_case(n=120, c=8, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.25).astype(int)
    y[:, 6] = 0
    y[:2, 6] = 1  # a rare label: 2 positives
    y[:, 7] = 0  # a label without positives
    scores = np.clip(0.3 * y + rng.random((n, c)) * 0.8, 0, 1)
    scores = (np.round(scores * 20) / 20).astype(np.float32)  # ties
    return scores, y


def informative(s, y, t):
    """The rule of the module docstring, written out: better than chance, and no flood."""
    predicted, hits = int((s >= t).sum()), int(((s >= t) & (y == 1)).sum())
    return hypergeom.sf(hits - 1, len(y), y.sum(), predicted) <= MAX_CHANCE and predicted <= MAX_FLOOD * y.sum()


def brute_force_best_f1(s, y):
    """The best F1 over the informative thresholds (None when there is none)."""
    return max((f1_score(y, s >= t, zero_division=0) for t in np.unique(s) if informative(s, y, t)), default=None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_label_thresholds_maximise_f1_among_informative_ones(seed):
    s, y = dev_case(seed=seed)
    th = Thresholds.calibrate(s, sp.csr_matrix(y), min_positives=3)
    decisions = th.apply(s)
    for c in range(6):
        best = brute_force_best_f1(s[:, c], y[:, c])
        assert th.per_label[c] == (best is not None)
        if best is not None:
            assert th.thresholds[c] in s[:, c]
            assert f1_score(y[:, c], decisions[:, c]) == pytest.approx(best)
        else:
            assert th.thresholds[c] == np.float32(th.global_threshold)


def test_a_label_whose_positives_all_score_lowest_takes_the_fallback():
    rng = np.random.default_rng(3)
    y = np.zeros((200, 2), dtype=int)
    y[:20, 0] = y[20:60, 1] = 1
    s = rng.uniform(0.5, 1.0, (200, 2)).astype(np.float32)
    s[:20, 0] = rng.uniform(0.0, 0.1, 20)  # label 0: its positives score below every other item
    s[20:60, 1] += 0.5  # label 1: well separated
    th = Thresholds.calibrate(np.clip(s, 0, 1), y)
    assert th.per_label.tolist() == [False, True]
    assert th.apply(np.clip(s, 0, 1))[:, 0].mean() < 1.0  # not predicted for every item


@pytest.mark.parametrize("seed", range(20))
def test_thresholds_on_random_scores_never_flood(seed):
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.01, 0.4, 12)
    y = (rng.random((300, 12)) < prevalence).astype(int)
    s = rng.random((300, 12)).astype(np.float32)
    th = Thresholds.calibrate(s, y, min_positives=3)
    share = th.apply(s).mean(axis=0)
    own = th.per_label
    assert (share[own] <= MAX_FLOOD * y.mean(axis=0)[own] + 1e-9).all()


def test_rare_labels_get_the_global_micro_f1_threshold():
    s, y = dev_case()
    th = Thresholds.calibrate(s, y, min_positives=3)
    assert th.per_label.tolist() == [True] * 6 + [False, False]
    assert th.thresholds[6] == th.thresholds[7] == np.float32(th.global_threshold)
    best = max(f1_score(y, s >= t, average="micro") for t in np.unique(s))
    assert f1_score(y, s >= th.global_threshold, average="micro") == pytest.approx(best)
    assert th.global_threshold == best_global_threshold(s, y)
    fixed = Thresholds.calibrate(s, y, min_positives=3, fallback=0.42)
    assert fixed.thresholds[6] == np.float32(0.42) and fixed.global_threshold == 0.42
    with pytest.raises(ValueError, match="fallback must be 'global' or a number"):
        Thresholds.calibrate(s, y, fallback="median")


def test_global_threshold_with_small_blocks(monkeypatch):
    import labelcon.heads.thresholds as module

    s, y = dev_case(seed=4)
    expected_global, expected = best_global_threshold(s, y), Thresholds.calibrate(s, y).thresholds
    monkeypatch.setattr(module, "BLOCK_ELEMENTS", 50)  # many row blocks and column blocks
    assert best_global_threshold(s, y) == expected_global
    np.testing.assert_array_equal(Thresholds.calibrate(s, y).thresholds, expected)


def test_at_least_one():
    th = Thresholds(np.array([0.9, 0.9, 0.9]), np.ones(3, dtype=bool), 0.9)
    s = np.array([[0.95, 0.1, 0.2], [0.3, 0.5, 0.4], [0.0, 0.0, 0.0]], dtype=np.float32)
    assert th.apply(s).sum(axis=1).tolist() == [1, 0, 0]
    forced = th.apply(s, at_least_one=True)
    assert forced.astype(int).tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="scores have 2 label columns but the thresholds cover 3"):
        th.apply(s[:, :2])


def test_json_round_trip():
    s, y = dev_case()
    th = Thresholds.calibrate(s, y)
    again = Thresholds.from_json(th.to_json())
    np.testing.assert_array_equal(again.thresholds, th.thresholds)
    np.testing.assert_array_equal(again.per_label, th.per_label)
    with pytest.raises(ValueError, match="lacks keys"):
        Thresholds.from_json({"thresholds": []})
    with pytest.raises(ValueError, match="finite"):
        Thresholds.from_json({**th.to_json(), "thresholds": [float("nan")] * len(th)})


def test_extended_thresholds_put_new_labels_under_the_global_threshold():
    s, y = dev_case()
    th = Thresholds.calibrate(s, y)
    more = th.extended(2)
    np.testing.assert_array_equal(more.thresholds[: len(th)], th.thresholds)
    assert more.thresholds[len(th) :].tolist() == [np.float32(th.global_threshold)] * 2
    assert not more.per_label[len(th) :].any() and len(more) == len(th) + 2


def test_top_k_labels():
    s = np.array([[0.1, 0.9, 0.5, 0.3], [0.8, 0.1, 0.2, 0.7]], dtype=np.float32)
    pred = top_k_labels(s, 2)
    assert sp.issparse(pred)
    assert pred.toarray().tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]
    assert top_k_labels(s, 10).nnz == 8


def test_calibrate_shape_mismatch():
    s, y = dev_case()
    with pytest.raises(ValueError, match=r"scores has shape \(120, 7\) but the labels have shape \(120, 8\)"):
        Thresholds.calibrate(s[:, :7], y)


@pytest.mark.parametrize("seed", range(6))
def test_calibrate_blocks_equals_calibrate(seed):
    rng = np.random.default_rng(seed)
    n, c = 120, 17
    scores = rng.random((n, c)).astype(np.float32)
    if seed % 2:
        scores = np.round(scores, 1).astype(np.float32)  # many ties
    y = (rng.random((n, c)) < 0.1).astype(np.float32)
    y[:, 3] = 0  # a label without positives
    y[:2, 4], y[2:, 4] = 1, 0  # a label below min_positives
    for min_positives, fallback in ((1, "global"), (3, "global"), (3, 0.25)):
        dense = Thresholds.calibrate(scores, y, min_positives=min_positives, fallback=fallback)
        for step in (1, 7, n):
            blocks = Thresholds.calibrate_blocks(
                lambda: (scores[i : i + step] for i in range(0, n, step)),  # noqa: B023 (called in this iteration)
                y,
                min_positives=min_positives,
                fallback=fallback,
            )
            np.testing.assert_array_equal(blocks.thresholds, dense.thresholds)
            np.testing.assert_array_equal(blocks.per_label, dense.per_label)
            assert blocks.global_threshold == dense.global_threshold


def test_calibrate_blocks_checks_the_blocks():
    y = np.eye(4)
    with pytest.raises(ValueError, match="covered 2 rows; the labels have 4"):
        Thresholds.calibrate_blocks(lambda: iter([np.zeros((2, 4), np.float32)]), y)
    with pytest.raises(ValueError, match=r"consecutive row blocks of a \[4, 4\] matrix; got a block of shape \(2, 3\)"):
        Thresholds.calibrate_blocks(lambda: iter([np.zeros((2, 3), np.float32)]), y)
