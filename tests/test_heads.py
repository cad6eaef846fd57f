import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from labelcon.heads import Head, KNNHead, LinearProbeHead, PrototypeHead, build_head
from labelcon.metrics import precision_at_k


def clustered(n, n_clusters=6, dim=32, noise=1.0, seed=0):
    """Items near one or two of ``n_clusters`` centres on the sphere, labelled by those centres."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).standard_normal((n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.zeros((n, n_clusters), dtype=np.int64)
    x = np.zeros((n, dim))
    for i in range(n):
        labels = rng.choice(n_clusters, size=rng.integers(1, 3), replace=False)
        y[i, labels] = 1
        x[i] = centres[labels].sum(axis=0) + noise * rng.standard_normal(dim) / np.sqrt(dim) * np.sqrt(len(labels))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), sp.csr_matrix(y)


@pytest.fixture(scope="module")
def data():
    x_train, y_train = clustered(600, seed=0)
    x_test, y_test = clustered(200, seed=1)
    return x_train, y_train, x_test, y_test


def top_set_accuracy(y, scores):
    """Fraction of items whose |Y| highest-scored labels are exactly Y."""
    y = y.toarray()
    hits = [set(np.argsort(-s)[: t.sum()]) == set(np.flatnonzero(t)) for t, s in zip(y, scores)]
    return float(np.mean(hits))


HEADS = [("knn", {}), ("prototype", {}), ("linear", {"C": 10.0})]


@pytest.mark.parametrize("name,params", HEADS)
def test_head_ranks_true_labels_first(data, name, params):
    x_train, y_train, x_test, y_test = data
    head = build_head(name, **params).fit(x_train, y_train)
    scores = head.predict_scores(x_test)
    assert scores.shape == y_test.shape and scores.dtype == np.float32
    assert scores.min() >= 0 and scores.max() <= 1
    assert precision_at_k(y_test, scores, 1) >= 0.97
    assert top_set_accuracy(y_test, scores) >= 0.9
    idx, top = head.predict_top_k(x_test, 2, block_size=64)
    # blocked and unblocked float32 products round differently (up to ~1e-6): compare the
    # ranked scores, and the chosen labels' scores, within that rounding
    np.testing.assert_allclose(top, -np.sort(-scores, axis=1)[:, :2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(scores, idx, axis=1), top, rtol=0, atol=1e-5)
    assert (np.diff(top, axis=1) <= 0).all()


@pytest.mark.parametrize("name,params", HEADS)
def test_save_load_round_trip(data, name, params, tmp_path):
    x_train, y_train, x_test, _ = data
    head = build_head(name, **params).fit(x_train, y_train)
    head.save(tmp_path / "head")
    meta = json.loads((tmp_path / "head" / "head.json").read_text())
    assert meta["type"] == name and meta["n_labels"] == 6 and meta["dim"] == 32
    loaded = Head.load(tmp_path / "head")
    assert type(loaded) is type(head) and loaded.get_params() == head.get_params()
    np.testing.assert_array_equal(loaded.predict_scores(x_test), head.predict_scores(x_test))
    assert not [p.name for p in (tmp_path / "head").iterdir() if p.name.endswith(".tmp")]


def test_knn_round_trip_with_faiss_index(data, tmp_path):
    pytest.importorskip("faiss")
    x_train, y_train, x_test, _ = data
    head = KNNHead(k=10, exact=False).fit(x_train, y_train)
    assert not head.index_.exact
    head.save(tmp_path)
    loaded = Head.load(tmp_path)
    assert not loaded.index_.exact
    np.testing.assert_array_equal(loaded.predict_scores(x_test), head.predict_scores(x_test))


def test_knn_formula_by_hand():
    x = np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    y = np.array([[1, 0], [1, 1], [0, 1]])
    head = KNNHead(k=2, temperature=0.5).fit(x, y)
    q = np.array([[0.6, 0.8]], dtype=np.float32)
    sims = np.array([0.6 * 0.8 + 0.8 * 0.6, 0.8])  # neighbours: item 1 (0.96), item 2 (0.8)
    w = np.exp(sims / 0.5) / np.exp(sims / 0.5).sum()
    np.testing.assert_allclose(head.predict_scores(q)[0], [w[0], w[0] + w[1]], rtol=1e-5)


def test_knn_leave_one_out_matches_refitting(data):
    x_train, y_train, _, _ = data
    x, y = x_train[:80], y_train[:80]
    head = KNNHead(k=5).fit(x, y)
    loo = head.predict_scores(x, exclude_self=True)
    for i in (0, 17, 79):
        rest = np.delete(np.arange(80), i)
        expected = KNNHead(k=5).fit(x[rest], y[rest]).predict_scores(x[i : i + 1])[0]
        np.testing.assert_allclose(loo[i], expected, atol=1e-6)
    # without exclusion an item votes for itself; a label held by one item shows it
    y_single = sp.hstack([y, sp.csr_matrix(np.eye(80)[:, :1])]).tocsr()
    head = KNNHead(k=5).fit(x, y_single)
    assert head.predict_scores(x[:1])[0, -1] > 0.1
    assert head.predict_scores(x, exclude_self=True)[0, -1] == 0


def test_prototype_bias_is_midpoint_of_leave_one_out_and_negative_means(data):
    x_train, y_train, _, _ = data
    head = PrototypeHead().fit(x_train, y_train)
    y = y_train.toarray().astype(bool)
    c = 2
    pos = np.flatnonzero(y[:, c])
    s = x_train[pos].sum(axis=0)
    loo = [(x_train[i] @ (s - x_train[i])) / np.linalg.norm(s - x_train[i]) for i in pos]
    neg = x_train[~y[:, c]] @ (s / np.linalg.norm(s))
    assert head.bias_[c] == pytest.approx((np.mean(loo) + neg.mean()) / 2, abs=1e-5)
    np.testing.assert_allclose(head.prototypes_[c], s / np.linalg.norm(s), atol=1e-6)


def test_labels_without_positives_score_zero(data):
    x_train, y_train, x_test, _ = data
    y = sp.hstack([y_train, sp.csr_matrix((len(x_train), 1))]).tocsr()  # a label nobody holds
    for name, params in HEADS:
        scores = build_head(name, **params).fit(x_train, y).predict_scores(x_test)
        assert np.all(scores[:, -1] == 0), name
    y_all = sp.hstack([y_train, sp.csr_matrix(np.ones((len(x_train), 1)))]).tocsr()  # a label everyone holds
    assert np.all(LinearProbeHead().fit(x_train, y_all).predict_scores(x_test)[:, -1] == 1)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_linear_probe_agrees_with_sklearn(class_weight):
    rng = np.random.default_rng(0)
    n, d, c = 400, 16, 5
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((d, c))
    y = ((x @ w + 2.0 * rng.standard_normal((n, c))) > np.array([0, 1, 2, 3, 1.5])).astype(int)  # noisy, imbalanced
    ours = LinearProbeHead(C=0.5, class_weight=class_weight).fit(x, y)
    ref = OneVsRestClassifier(LogisticRegression(C=0.5, class_weight=class_weight, max_iter=2000, tol=1e-10)).fit(x, y)
    x_test = rng.standard_normal((300, d)).astype(np.float32)
    p_ours, p_ref = ours.predict_scores(x_test), ref.predict_proba(x_test)
    for j in range(c):
        assert np.corrcoef(p_ours[:, j], p_ref[:, j])[0, 1] > 0.999
    assert np.abs(p_ours - p_ref).max() < 0.01
    np.testing.assert_allclose(ours.coef_, np.vstack([e.coef_ for e in ref.estimators_]), atol=0.02)


def test_build_head_and_input_errors(data):
    x_train, y_train, _, _ = data
    assert isinstance(build_head("knn", k=3), KNNHead)
    expected = (
        r"unknown head 'svm'; expected one of \['ensemble', 'fallback', 'knn', 'label_text', 'linear', 'prototype'\]"
    )
    with pytest.raises(ValueError, match=expected):
        build_head("svm")
    with pytest.raises(ValueError, match=r"unknown parameters \['depth'\]"):
        build_head("knn", depth=3)
    with pytest.raises(ValueError, match="Y has 10 rows but the embeddings have 600"):
        KNNHead().fit(x_train, y_train[:10])
    head = PrototypeHead().fit(x_train, y_train)
    with pytest.raises(ValueError, match=r"must have dim 32 \(as in fit\); got shape \(2, 8\)"):
        head.predict_scores(np.zeros((2, 8), dtype=np.float32))
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearProbeHead().predict_scores(x_train)
    with pytest.raises(FileNotFoundError, match="head.json"):
        Head.load("/nonexistent/dir")
