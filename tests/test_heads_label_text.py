import json

import numpy as np
import pytest
import scipy.sparse as sp

from labelcon.heads import Head, LabelTextHead, build_head
from labelcon.metrics import precision_at_k

DIM = 32


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def centres(n, seed=123):
    return unit(np.random.default_rng(seed).standard_normal((n, DIM)))


def items(centre_rows, n, seed, noise=0.6, max_labels=2):
    """Items near the sum of one to ``max_labels`` centres, labelled by those centres."""
    rng = np.random.default_rng(seed)
    c = len(centre_rows)
    y = np.zeros((n, c), dtype=np.int64)
    x = np.zeros((n, DIM))
    for i in range(n):
        labels = rng.choice(c, size=rng.integers(1, max_labels + 1), replace=False)
        y[i, labels] = 1
        x[i] = centre_rows[labels].sum(axis=0) + noise * rng.standard_normal(DIM) / np.sqrt(DIM) * np.sqrt(len(labels))
    return unit(x).astype(np.float32), sp.csr_matrix(y)


def label_texts(centre_rows, seed=7, noise=0.3):
    """The labels' "text embeddings": their centres, perturbed."""
    rng = np.random.default_rng(seed)
    return unit(centre_rows + noise * rng.standard_normal(centre_rows.shape) / np.sqrt(DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def setting():
    all_centres = centres(8)
    seen, unseen = all_centres[:6], all_centres[6:]
    x_train, y_train = items(seen, 600, seed=0)
    x_test, y_test = items(seen, 200, seed=1)
    x_new, _ = items(unseen, 100, seed=2, max_labels=1)
    new_labels = np.argmax(x_new @ unseen.T, axis=1)  # every new item sits near one unseen centre
    return x_train, y_train, x_test, y_test, label_texts(seen), label_texts(unseen, seed=8), x_new, new_labels


def test_ranks_labels_whose_text_sits_near_the_items(setting):
    x_train, y_train, x_test, y_test, texts, *_ = setting
    head = build_head("label_text").fit(x_train, y_train, label_embeddings=texts)
    assert isinstance(head, LabelTextHead) and head.n_labels_ == 6
    scores = head.predict_scores(x_test)
    assert scores.shape == y_test.shape and scores.dtype == np.float32
    assert 0 <= scores.min() and scores.max() <= 1
    assert precision_at_k(y_test, scores, 1) >= 0.97
    # calibrated: true labels score above 0.5, the others below, for nearly all entries
    assert ((scores > 0.5) == y_test.toarray().astype(bool)).mean() >= 0.95
    idx, top = head.predict_top_k(x_test, 2, block_size=37)
    np.testing.assert_allclose(np.take_along_axis(scores, idx, axis=1), top, rtol=1e-5)  # BLAS blocks may round apart


def test_label_added_after_fit_is_ranked_first_for_its_items(setting):
    x_train, y_train, x_test, y_test, texts, new_texts, x_new, new_labels = setting
    head = LabelTextHead().fit(x_train, y_train, label_embeddings=texts).add_labels(new_texts)
    assert head.n_labels_ == 8 and head.label_counts_[6:].tolist() == [0, 0]
    idx, scores = head.predict_top_k(x_new, 1)
    assert np.mean(idx[:, 0] == 6 + new_labels) >= 0.97
    assert np.median(scores) > 0.5
    # the old labels keep their ranking on the old items, and the new ones stay out of it
    old = head.predict_scores(x_test)
    assert precision_at_k(sp.hstack([y_test, sp.csr_matrix((len(x_test), 2))]), old, 1) >= 0.97
    assert np.mean(old[:, 6:] < 0.5) >= 0.95


def test_bias_formula_by_hand(setting):
    x_train, y_train, _, _, texts, new_texts, *_ = setting
    kappa = 2.0
    head = LabelTextHead(prior_strength=kappa).fit(x_train, y_train, label_embeddings=texts)
    y = y_train.toarray().astype(bool)
    s = x_train.astype(np.float64) @ texts.T.astype(np.float64)
    pooled = s[y].mean()
    assert head.pooled_positive_ == pytest.approx(pooled, abs=1e-6)
    for c in range(6):
        pos = (s[y[:, c], c].sum() + kappa * pooled) / (y[:, c].sum() + kappa)
        assert head.bias_[c] == pytest.approx((pos + s[~y[:, c], c].mean()) / 2, abs=1e-5)
    head.add_labels(new_texts)
    s_new = x_train.astype(np.float64) @ new_texts.T.astype(np.float64)
    np.testing.assert_allclose(head.bias_[6:], (pooled + s_new.mean(axis=0)) / 2, atol=1e-5)


def test_label_without_training_items_gets_the_default_offset(setting):
    x_train, y_train, _, _, texts, *_ = setting
    y = y_train.tolil()
    y[:, 2] = 0  # label 2 present in the label space but held by no training item
    head = LabelTextHead().fit(x_train, y.tocsr(), label_embeddings=texts)
    refit = LabelTextHead().fit(x_train, y.tocsr()[:, [0, 1, 3, 4, 5]], label_embeddings=texts[[0, 1, 3, 4, 5]])
    refit.add_labels(texts[2:3])
    assert head.bias_[2] == pytest.approx(refit.bias_[5], abs=1e-6)
    assert head.pooled_positive_ == pytest.approx(refit.pooled_positive_)


def test_save_load_round_trip_keeps_added_labels(setting, tmp_path):
    x_train, y_train, x_test, _, texts, new_texts, *_ = setting
    head = LabelTextHead(temperature=0.1).fit(x_train, y_train, label_embeddings=texts)
    head.save(tmp_path / "head")
    loaded = Head.load(tmp_path / "head")
    assert type(loaded) is LabelTextHead and loaded.get_params() == head.get_params()
    np.testing.assert_array_equal(loaded.predict_scores(x_test), head.predict_scores(x_test))
    loaded.add_labels(new_texts)
    head.add_labels(new_texts)
    np.testing.assert_array_equal(loaded.predict_scores(x_test), head.predict_scores(x_test))
    loaded.save(tmp_path / "again")
    meta = json.loads((tmp_path / "again" / "head.json").read_text())
    assert meta["type"] == "label_text" and meta["n_labels"] == 8 and meta["dim"] == DIM
    np.testing.assert_array_equal(Head.load(tmp_path / "again").predict_scores(x_test), head.predict_scores(x_test))


def test_input_errors(setting):
    x_train, y_train, _, _, texts, *_ = setting
    with pytest.raises(ValueError, match="needs label_embeddings"):
        LabelTextHead().fit(x_train, y_train)
    with pytest.raises(ValueError, match="5 rows but Y has 6 label columns"):
        LabelTextHead().fit(x_train, y_train, label_embeddings=texts[:5])
    with pytest.raises(ValueError, match="must have dim 32"):
        LabelTextHead().fit(x_train, y_train, label_embeddings=texts[:, :8])
    with pytest.raises(RuntimeError, match="not fitted"):
        LabelTextHead().add_labels(texts)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LabelTextHead(temperature=0)
    with pytest.raises(ValueError, match="prior_strength must be >= 0"):
        build_head("label_text", prior_strength=-1)
