import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from labelcon import Labelcon, prediction
from labelcon.data import LabelSpace
from labelcon.filecheck import ModelLoadError
from labelcon.heads import DenseSparseLinear, dense_sparse, text_scorers
from labelcon.heads.base import l2_normalize
from labelcon.prediction import Features, PredictionStage, StageSettings
from tests.helpers import FAST, make_items

WORDS = ["wheat", "oil", "gold", "rice", "corn", "copper", "sugar", "cocoa"]


def toy(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts naming their labels among filler words, labels [n, 5], random unit embeddings [n, 8]."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 5), dtype=np.int8)
    texts = []
    for i in range(n):
        held = rng.choice(5, size=rng.integers(1, 3), replace=False)
        y[i, held] = 1
        texts.append(" ".join([WORDS[c] for c in held] + list(rng.choice(WORDS[5:], 4))))
    return texts, y, l2_normalize(rng.normal(size=(n, 8)))


def side_by_side(texts: list[str], z: np.ndarray, query: list[str], zq: np.ndarray, scale: float):
    """``[tfidf ; scale * z]`` of the training texts and of the queries, built here with sklearn."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(texts)
    return (
        sp.hstack([vectorizer.transform(texts), scale * z], format="csr"),
        sp.hstack([vectorizer.transform(query), scale * zq], format="csr"),
    )


def test_logistic_scores_equal_sklearn_on_tfidf_and_embedding_side_by_side():
    texts, y, z = toy(60, 0)
    ranker = DenseSparseLinear(C=2.0, dense_scale=0.5, prune=0, floor=0, n_jobs=1, loss="logistic").fit(texts, y, z)
    query, _, zq = toy(10, 1)
    x, xq = side_by_side(texts, z, query, zq, 0.5)
    plain = np.column_stack(
        [
            LogisticRegression(C=2.0, solver="liblinear", dual=True, max_iter=1000, random_state=0)
            .fit(x, y[:, c])
            .predict_proba(xq)[:, 1]
            for c in range(y.shape[1])
        ]
    )
    np.testing.assert_allclose(ranker.sparse_scores(query, zq).toarray(), plain, atol=1e-5)


def test_svm_scores_are_the_platt_scaled_margins_of_sklearns_linear_svc():
    texts, y, z = toy(60, 0)
    ranker = DenseSparseLinear(C=0.5, prune=0, floor=0, n_jobs=1).fit(texts, y, z)
    query, yq, zq = toy(40, 1)
    x, xq = side_by_side(texts, z, query, zq, 1.0)
    margins = np.column_stack(
        [LinearSVC(C=0.5, dual="auto", random_state=0).fit(x, y[:, c]).decision_function(xq) for c in range(5)]
    )
    np.testing.assert_allclose(ranker.sparse_scores(query, zq).toarray(), expit(margins), atol=1e-5)  # (1, 0)
    ranker.calibrate(query, yq, zq)
    platt = LogisticRegression(C=1e4).fit(margins.reshape(-1, 1), yq.ravel())  # 200 entries: no sampling
    a, a0 = ranker.platt
    assert a == pytest.approx(platt.coef_[0, 0], rel=1e-3) and a0 == pytest.approx(platt.intercept_[0], abs=1e-3)
    np.testing.assert_allclose(ranker.sparse_scores(query, zq).toarray(), expit(a * margins + a0), atol=1e-5)


def plain_shortlist(x: sp.csr_matrix, y: np.ndarray, xq: sp.csr_matrix, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The shortlists [n, size] of the training rows and the queries, by the module's formula."""
    centroids = normalize(y.T.astype(np.float64) @ x.toarray())
    return tuple(np.argsort(-(rows.toarray() @ centroids.T), axis=1)[:, :size] for rows in (x, xq))


def test_a_shortlist_fits_each_label_on_its_positives_and_the_items_it_is_shortlisted_for():
    texts, y, z = toy(90, 9)
    ranker = DenseSparseLinear(C=0.5, prune=0, floor=0, n_jobs=1, shortlist=2).fit(texts, y, z)
    query, _, zq = toy(30, 10)
    x, xq = side_by_side(texts, z, query, zq, 1.0)
    lists, query_lists = plain_shortlist(x, y, xq, 2)
    expected = np.zeros((30, 5))
    for c in range(5):
        rows = np.flatnonzero((lists == c).any(axis=1) | (y[:, c] == 1))
        assert 0 < y[rows, c].sum() < len(rows)  # each label meets negatives here
        svm = LinearSVC(C=0.5, dual="auto", random_state=0).fit(x[rows], y[rows, c])
        np.testing.assert_allclose(ranker.coef_[c].toarray()[0], svm.coef_[0], atol=1e-5)
        shortlisted = (query_lists == c).any(axis=1)
        expected[shortlisted, c] = expit(svm.decision_function(xq[shortlisted]))
    np.testing.assert_allclose(ranker.sparse_scores(query, zq).toarray(), expected, atol=1e-5)
    assert (ranker.sparse_scores(query, zq).getnnz(axis=1) == 2).all()


def test_a_shortlist_as_long_as_the_labels_changes_nothing_and_saves_no_centroids(tmp_path):
    texts, y, z = toy(60, 11)
    every = DenseSparseLinear(n_jobs=1, shortlist=None).fit(texts, y, z)
    long = DenseSparseLinear(n_jobs=1, shortlist=5).fit(texts, y, z)
    assert (long.sparse_scores(texts, z) != every.sparse_scores(texts, z)).nnz == 0
    with np.load(long.save(tmp_path / "r") / "dense_sparse.npz") as data:
        assert not any(key.startswith("centroids") for key in data.files)


def test_a_shortlisted_ranker_round_trips_and_added_labels_score_0(tmp_path):
    texts, y, z = toy(60, 12)
    ranker = DenseSparseLinear(shortlist=3).fit(texts, y, z).calibrate(texts, y, z)
    back = DenseSparseLinear.load(ranker.save(tmp_path / "r"))
    assert back.shortlist == 3 and (back.sparse_scores(texts, z) != ranker.sparse_scores(texts, z)).nnz == 0
    back.add_label_columns(2)
    scores = back.sparse_scores(texts, z)
    assert scores.shape == (60, 7) and scores[:, 5:].nnz == 0 and (scores.getnnz(axis=1) <= 3).all()
    with pytest.raises(ValueError, match="shortlist must be >= 1"):
        DenseSparseLinear(shortlist=0)
    saved = ranker.save(tmp_path / "damaged")
    with np.load(saved / "dense_sparse.npz") as data:
        arrays = {key: data[key] for key in data.files}
    np.savez(saved / "dense_sparse.npz", **{**arrays, "shortlist": np.array(8)})
    with pytest.raises(ModelLoadError, match="label centroids of shape .* for a shortlist of 8"):
        DenseSparseLinear.load(saved)


def test_calibration_samples_the_negatives_and_weighs_them_back(monkeypatch):
    texts, y, z = toy(280, 8)
    ranker = DenseSparseLinear(C=0.5, n_jobs=1).fit(texts[:80], y[:80], z[:80])
    noisy = y[80:] ^ (np.random.default_rng(0).random(y[80:].shape) < 0.2)  # margins that overlap
    full = ranker.calibrate(texts[80:], noisy, z[80:]).platt
    monkeypatch.setattr(dense_sparse, "CALIBRATION_NEGATIVES", 300)  # of about 600: each weighs about 2
    sampled = ranker.calibrate(texts[80:], noisy, z[80:], seed=1).platt
    assert sampled != full and sampled == pytest.approx(full, rel=0.2, abs=0.2)
    assert ranker.calibrate(texts[80:], np.zeros_like(y[80:]), z[80:]).platt == (1.0, 0.0)  # no positives


def test_pruning_and_floor_keep_the_model_and_scores_sparse():
    texts, y, z = toy(80, 2)
    full = DenseSparseLinear(prune=0, floor=0, n_jobs=1).fit(texts, y, z)
    pruned = DenseSparseLinear(prune=0.3, floor=0.2, n_jobs=1).fit(texts, y, z)
    dense_coef = full.coef_.toarray()
    kept = np.abs(dense_coef) >= 0.3
    np.testing.assert_allclose(pruned.coef_.toarray(), np.where(kept, dense_coef, 0), atol=1e-6)
    assert pruned.coef_.nnz == kept.sum() < full.coef_.nnz
    scores = pruned.sparse_scores(texts, z)
    assert sp.issparse(scores) and scores.data.min() >= 0.2


def test_labels_fitted_in_threads_agree_with_one_at_a_time_within_liblinears_tolerance():
    texts, y, z = toy(80, 7)
    one = DenseSparseLinear(prune=0, floor=0, n_jobs=1).fit(texts, y, z)
    threads = DenseSparseLinear(prune=0, floor=0, n_jobs=3).fit(texts, y, z)
    np.testing.assert_allclose(threads.coef_.toarray(), one.coef_.toarray(), atol=1e-3)
    np.testing.assert_allclose(
        threads.sparse_scores(texts, z).toarray(), one.sparse_scores(texts, z).toarray(), atol=1e-3
    )


def test_labels_without_positives_score_0_and_labels_everyone_holds_score_1():
    texts, y, z = toy(30, 3)
    y = np.hstack([y, np.zeros((30, 1), np.int8), np.ones((30, 1), np.int8)])
    scores = DenseSparseLinear(floor=0).fit(texts, y, z).sparse_scores(texts, z).toarray()
    assert (scores[:, 5] == 0).all() and (scores[:, 6] == 1).all()


def test_save_load_round_trip_and_added_labels_score_0(tmp_path):
    texts, y, z = toy(40, 4)
    ranker = DenseSparseLinear(C=8.0, dense_scale=2.0).fit(texts, y, z).calibrate(texts, y, z)
    back = DenseSparseLinear.load(ranker.save(tmp_path / "r"))
    assert (back.C, back.dense_scale, back.prune, back.floor, back.loss) == (8.0, 2.0, 0.01, 1e-3, "squared_hinge")
    assert back.platt == ranker.platt != (1.0, 0.0)
    assert (back.sparse_scores(texts, z) != ranker.sparse_scores(texts, z)).nnz == 0
    back.add_label_columns(2)
    scores = back.sparse_scores(texts, z)
    assert scores.shape == (40, 7) and scores[:, 5:].nnz == 0


def test_a_ranker_saved_before_the_svm_loads_as_the_unscaled_logistic_model(tmp_path):
    texts, y, z = toy(40, 4)
    ranker = DenseSparseLinear(C=8.0, loss="logistic").fit(texts, y, z)
    saved = ranker.save(tmp_path / "r")
    with np.load(saved / "dense_sparse.npz") as data:
        arrays = {key: data[key] for key in data.files if key != "loss"}
    arrays["params"] = arrays["params"][:4]  # C, dense_scale, prune, floor: the old file
    np.savez(saved / "dense_sparse.npz", **arrays)
    back = DenseSparseLinear.load(saved)
    assert (back.loss, back.platt) == ("logistic", (1.0, 0.0))
    assert (back.sparse_scores(texts, z) != ranker.sparse_scores(texts, z)).nnz == 0


def test_errors(tmp_path):
    texts, y, z = toy(20, 5)
    with pytest.raises(RuntimeError, match="not fitted"):
        DenseSparseLinear().sparse_scores(texts, z)
    bad_params = [
        ({"C": 0}, "C must be > 0"),
        ({"floor": 1.0}, "floor"),
        ({"prune": -1}, "prune"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"loss": "hinge"}, "loss must be one of"),
    ]
    for bad, message in bad_params:
        with pytest.raises(ValueError, match=message):
            DenseSparseLinear(**bad)
    ranker = DenseSparseLinear().fit(texts, y, z)
    with pytest.raises(ValueError, match="got 20 texts but 19 embeddings"):
        ranker.sparse_scores(texts, z[:19])
    with pytest.raises(ValueError, match=r"dim 8 \(as in fit\)"):
        ranker.sparse_scores(texts, z[:, :4])
    saved = ranker.save(tmp_path / "r")
    with np.load(saved / "dense_sparse.npz") as data:
        arrays = {key: data[key] for key in data.files}
    np.savez(saved / "dense_sparse.npz", **{**arrays, "params": arrays["params"][:5]})
    with pytest.raises(ModelLoadError, match=r"holds 5 params; expected 6 \(C, dense_scale"):
        DenseSparseLinear.load(saved)
    (saved / "dense_sparse.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="dense_sparse.npz"):
        DenseSparseLinear.load(saved)


def test_stage_picks_scorer_and_weight_by_dev_macro_ap_and_saves_it(tmp_path):
    texts, y, z = toy(120, 6)
    train, dev = slice(0, 80), slice(80, 120)
    settings = StageSettings(head="linear", lexical_scorer="dense_sparse", min_positives=1)
    stage = PredictionStage.fit(
        LabelSpace(WORDS[:5]),
        Features(z[train], texts[train]),
        y[train],
        Features(z[dev], texts[dev]),
        y[dev],
        settings,
    )
    tried = {name.split(": ")[0]: v for name, v in stage.selection.items() if name.startswith("lexical weight")}
    assert set(tried) == {"lexical weight 0"} | {
        f"lexical weight {w:g}, dense+sparse(C={c:g})" for w in (0.25, 0.5, 0.75) for c in (0.1, 1)
    }
    assert stage.lexical_candidate == max(tried, key=tried.get) != "lexical weight 0"  # the words name the labels
    features = Features(z[dev], texts[dev])
    head = stage.head.predict_scores(z[dev])
    (ranker,) = stage.text_scorers  # one kind of scorer: nothing to stack
    ranked = ranker.scorer.sparse_scores(texts[dev], z[dev]).toarray()
    w = stage.lexical_weight
    np.testing.assert_allclose(stage.scores(features), (1 - w) * head + w * ranked, atol=1e-6)
    back = PredictionStage.load(stage.save(tmp_path / "stage"), dim=8)
    assert [type(part.scorer) for part in back.text_scorers] == [DenseSparseLinear] and back.lexical_weight == w
    np.testing.assert_array_equal(back.scores(features), stage.scores(features))
    assert back.top_k(features, 2) == stage.top_k(features, 2)


def test_the_default_tries_the_ranker_beside_the_vote_while_its_fits_are_cheap(toy_data, monkeypatch):
    assert prediction.StageSettings().lexical_scorer == "auto" == Labelcon().config.lexical_scorer
    model = Labelcon(**{**FAST, "epochs": 1, "head": "knn"}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    tried = {name.split(": ")[0]: v for name, v in model.stage_.selection.items() if name.startswith("lexical weight")}
    expected = {f"lexical weight {w:g}" for w in text_scorers.LEXICAL_WEIGHTS}
    expected |= {
        f"lexical weight {w:g}, dense+sparse(C={c:g})"
        for w in text_scorers.DENSE_SPARSE_WEIGHTS
        for c in text_scorers.DENSE_SPARSE_C
    }
    assert {name for name in tried if " + " not in name} == expected  # stacked chains besides
    assert model.stage_.lexical_candidate == max(tried, key=tried.get)

    def tried_alone(**caps: int) -> set[str]:
        for cap, value in caps.items():
            monkeypatch.setattr(text_scorers, cap, value)
        model = Labelcon(**{**FAST, "epochs": 1, "head": "knn"}).fit(
            toy_data["train"], toy_data["dev"], show_progress=False
        )
        return {name.split(": ")[0] for name in model.stage_.selection if name.startswith("lexical weight")}

    votes = {f"lexical weight {w:g}" for w in text_scorers.LEXICAL_WEIGHTS}
    one_c = {f"lexical weight {w:g}, dense+sparse(C=1)" for w in text_scorers.DENSE_SPARSE_WEIGHTS}
    sparse = {f"lexical weight {w:g}, sparse(C=1)" for w in text_scorers.DENSE_SPARSE_WEIGHTS}
    # the ranker's rows above the first cap: the ranker at C = 1 alone; above the second: the vote alone,
    # or beside it, with more labels than a shortlist, the ranker of the TF-IDF half up to the third cap
    assert {name for name in tried_alone(DENSE_SPARSE_AUTO_MAX=100) if " + " not in name} == votes | one_c
    assert tried_alone(DENSE_SPARSE_ONE_C_MAX=100) == votes
    assert {name for name in tried_alone(SHORTLIST=2) if " + " not in name} == votes | sparse
    assert tried_alone(SPARSE_MAX=100) == votes


def test_estimator_with_dense_sparse_predicts_the_same_after_load(toy_data, tmp_path):
    model = Labelcon(**{**FAST, "epochs": 1, "head": "knn", "lexical": 0.5, "lexical_scorer": "dense_sparse"}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    texts = [item["text"] for item in make_items(20, 14)]
    assert [type(p.scorer) for p in model.stage_.text_scorers] == [DenseSparseLinear]
    assert model.stage_.lexical_weight == 0.5
    loaded = Labelcon.load(model.save(tmp_path / "m"))
    assert (tmp_path / "m" / "model.1" / "lexical" / "dense_sparse.npz").is_file()
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    assert loaded.top_k(texts, 3) == model.top_k(texts, 3) and loaded.predict(texts) == model.predict(texts)
