import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score, f1_score, hamming_loss, label_ranking_average_precision_score

from labelcon.metrics import (
    average_precision_per_label,
    evaluate,
    evaluate_blocks,
    label_propensities,
    label_ranking_average_precision,
    ndcg_at_k,
    precision_at_k,
    psp_at_k,
    top_k,
)


def random_case(n=60, c=12, density=0.2, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < density).astype(np.int64)
    y[0] = 0  # an item without labels
    y[:, 3] = 0  # a label without positives
    scores = rng.random((n, c)).astype(np.float32)
    if ties:
        scores = np.round(scores * 8) / 8  # many tied scores
    return y, scores


# ------------------------------------------------------------ hand-computed values

Y = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
S = np.array([[0.9, 0.8, 0.7, 0.1], [0.6, 0.5, 0.1, 0.2], [0.3, 0.2, 0.1, 0.0]], dtype=np.float32)


def test_precision_at_k_by_hand():
    # item 0 top: 0(hit) 1(miss) 2(hit); item 1 top: 0(miss) 1(hit) 3(miss); item 2 has no labels
    assert precision_at_k(Y, S, 1) == pytest.approx((1 + 0 + 0) / 3)
    assert precision_at_k(Y, S, 2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert precision_at_k(Y, S, 3) == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)


def test_ndcg_at_k_by_hand():
    d = lambda r: 1 / math.log2(r + 1)  # noqa: E731
    item0 = (d(1) + d(3)) / (d(1) + d(2))
    item1 = d(2) / d(1)
    assert ndcg_at_k(Y, S, 3) == pytest.approx((item0 + item1 + 0) / 3)


def test_propensities_formula():
    y = sp.csr_matrix(np.array([[1, 1, 0]] * 3 + [[1, 0, 0]] * 7))  # counts 10, 3, 0 over N=10
    p = label_propensities(y)
    c = (math.log(10) - 1) * 2.5**0.55
    expected = [1 / (1 + c * (n + 1.5) ** -0.55) for n in (10, 3, 0)]
    np.testing.assert_allclose(p, expected)
    assert p[0] > p[1] > p[2]  # frequent labels are more likely to be observed


def test_psp_at_k_by_hand():
    p = np.array([0.5, 0.25, 0.5, 1.0])
    # item 0 top-2: 0 (hit, 2), 1 (miss); best: labels 0,2 -> 2 + 2; item 1 top-2: 0 miss, 1 hit (4); best 4
    assert psp_at_k(Y, S, 2, p) == pytest.approx((2 + 4) / (4 + 4))
    # ranking by 1/p among true labels is optimal
    assert psp_at_k(Y, Y / p, 2, p) == pytest.approx(1.0)


def test_top_k_pair_matches_dense_scores():
    idx, val = top_k(S, 3)
    rng = np.random.default_rng(0)
    shuffle = rng.permutation(3)  # the pair need not be sorted
    pair = (idx[:, shuffle], val[:, shuffle])
    for k in (1, 2, 3):
        assert precision_at_k(Y, pair, k) == precision_at_k(Y, S, k)
        assert ndcg_at_k(Y, pair, k) == ndcg_at_k(Y, S, k)
    padded = (np.array([[0, -1]] * 3), np.array([[0.9, 0.0]] * 3))
    assert precision_at_k(Y, padded, 2) == pytest.approx((1 / 2) / 3)


def test_top_k_clips_to_label_count_and_orders():
    idx, val = top_k(S, 10)
    assert idx.shape == (3, 4)
    assert np.all(np.diff(val, axis=1) <= 0)
    assert precision_at_k(Y, S, 5) == pytest.approx((2 / 5 + 1 / 5) / 3)


# ------------------------------------------------------------ against scikit-learn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_with_ties(seed):
    y, s = random_case(seed=seed)
    ours = average_precision_per_label(sp.csr_matrix(y), s)
    for c in range(y.shape[1]):
        if y[:, c].sum() == 0:
            assert np.isnan(ours[c])
        else:
            assert ours[c] == pytest.approx(average_precision_score(y[:, c], s[:, c]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lrap_matches_sklearn_on_items_with_labels(seed):
    y, s = random_case(seed=seed)
    keep = y.sum(axis=1) > 0
    expected = label_ranking_average_precision_score(y[keep], s[keep])
    assert label_ranking_average_precision(sp.csr_matrix(y), s) == pytest.approx(expected)


def test_evaluate_matches_sklearn():
    y, s = random_case(seed=3)
    pred = s >= 0.5
    m = evaluate(sp.csr_matrix(y), s, pred)
    assert m["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro", zero_division=0))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["samples_f1"] == pytest.approx(f1_score(y, pred, average="samples", zero_division=0))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    has_pos = y.sum(axis=0) > 0
    expected_ap = np.mean([average_precision_score(y[:, c], s[:, c]) for c in np.flatnonzero(has_pos)])
    assert m["macro_ap"] == pytest.approx(expected_ap)
    assert m["n_items"] == 60 and m["n_labels"] == 12
    assert set(m) == {
        "micro_f1",
        "macro_f1",
        "samples_f1",
        "macro_ap",
        "precision_at_1",
        "precision_at_3",
        "precision_at_5",
        "lrap",
        "hamming_loss",
        "n_items",
        "n_labels",
    }
    assert all(isinstance(v, (int, float)) for v in m.values())
    # dense, sparse and bool inputs agree
    assert evaluate(y, s, sp.csr_matrix(pred)) == m


def test_f1s_match_sklearn_where_items_and_labels_have_neither_truth_nor_predictions():
    y, s = random_case(seed=4)
    pred = s >= 0.5
    pred[0] = False  # item 0 has no labels either
    pred[:, 3] = False  # nor has label 3
    m = evaluate(sp.csr_matrix(y), s, sp.csr_matrix(pred))
    for average in ("micro", "macro", "samples"):
        assert m[f"{average}_f1"] == pytest.approx(f1_score(y, pred, average=average, zero_division=0))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))


def test_evaluate_takes_a_single_label_column():
    y = np.array([[1], [0], [1], [0], [1]])
    s = np.array([[0.9], [0.8], [0.4], [0.1], [0.7]], dtype=np.float32)
    pred = s >= 0.5
    blocks = [(s[:2], pred[:2]), (s[2:], pred[2:])]
    for m in (evaluate(sp.csr_matrix(y), s, sp.csr_matrix(pred)), evaluate_blocks(y, blocks)):
        assert m["micro_f1"] == m["macro_f1"] == pytest.approx(f1_score(y[:, 0], pred[:, 0]))  # 2 TP, 1 FP, 1 FN
        assert m["samples_f1"] == pytest.approx(2 / 5)  # items 0 and 4 right; the rest score 0
        assert m["hamming_loss"] == pytest.approx(2 / 5) and m["n_labels"] == 1
        assert m["precision_at_1"] == pytest.approx(3 / 5)
    assert evaluate(y, s, pred)["macro_ap"] == pytest.approx(average_precision_score(y[:, 0], s[:, 0]))


def test_large_sparse_label_space():
    n, c = 50, 100_000
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(n), 3)
    cols = rng.integers(0, c, size=3 * n)
    y = sp.csr_matrix((np.ones(3 * n), (rows, cols)), shape=(n, c))
    y.data[:] = 1
    s = rng.random((n, c)).astype(np.float32)
    s[rows[::3], cols[::3]] = 2.0  # the first label of every item ranks first
    assert precision_at_k(y, s, 1) == 1.0
    pair = top_k(s, 5)
    assert precision_at_k(y, pair, 5) == precision_at_k(y, s, 5)
    assert psp_at_k(y, pair, 3, label_propensities(y)) > 0.3
    m = evaluate(y, s, sp.csr_matrix(s > 1.5))
    assert m["precision_at_1"] == 1.0 and m["n_labels"] == c
    sub = np.unique(cols)[:40]  # spot-check AP on a few labels against sklearn
    ap = average_precision_per_label(y, s)
    for col in sub:
        assert ap[col] == pytest.approx(average_precision_score(y[:, col].toarray().ravel(), s[:, col]))


# ------------------------------------------------------------ input errors


def test_shape_mismatch_errors():
    with pytest.raises(ValueError, match=r"scores has shape \(3, 3\) but the labels have shape \(3, 4\)"):
        precision_at_k(Y, S[:, :3], 1)
    with pytest.raises(ValueError, match=r"y_pred has shape \(2, 4\) but the labels have shape \(3, 4\)"):
        evaluate(Y, S, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        evaluate(Y * 2, S, Y)
    with pytest.raises(ValueError, match="propensities must have shape"):
        psp_at_k(Y, S, 1, np.ones(3))
    with pytest.raises(ValueError, match="holds only 2 labels"):
        precision_at_k(Y, top_k(S, 2), 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        precision_at_k(Y, S, 0)
    with pytest.raises(ValueError, match="NaN"):
        precision_at_k(Y, np.full((3, 4), np.nan), 1)
