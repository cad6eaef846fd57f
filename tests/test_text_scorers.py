"""Chains of text scorers in the prediction stage: the mix, the dev choice, save and load."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from labelcon import Labelcon
from labelcon.config import ServeSettings
from labelcon.data import LabelSpace
from labelcon.export import export
from labelcon.filecheck import ModelLoadError
from labelcon.heads import DenseSparseLinear, LexicalKNN, mix_scores, text_scorers
from labelcon.heads.text_scorers import TextScorer, chain_scores, scorer_kind, weights_to_try
from labelcon.metrics import ranking_quality
from labelcon.prediction import Features, PredictionStage, StageSettings
from tests.helpers import FAST, make_items
from tests.test_heads_dense_sparse import WORDS, toy

LABELS = LabelSpace(WORDS[:5])


def test_chain_scores_equal_mixing_each_scorer_on_top_of_the_last():
    rng = np.random.default_rng(0)
    head = rng.random((6, 4)).astype(np.float32)
    parts = [(sp.random(6, 4, density=0.5, random_state=s, format="csr", dtype=np.float32), w) for s, w in
             ((1, 0.5), (2, 0.25), (3, 0.75))]  # fmt: skip
    expected = head
    for scores, weight in parts:
        expected = (1 - weight) * expected + weight * scores.toarray()
    votes, weight = chain_scores(parts)
    assert weight == pytest.approx(1 - 0.5 * 0.75 * 0.25)
    np.testing.assert_allclose(mix_scores(head, votes, weight), expected, atol=1e-6)
    np.testing.assert_allclose(mix_scores(head, votes, weight, keep=[2])[:, 2], head[:, 2])
    assert chain_scores([]) == (None, 0.0)


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """A kNN-head stage with the vote at 0.5 and the ranker at 0.25 on top, its dev features, and its saved folder."""
    texts, y, z = toy(120, 6)
    texts = np.array(texts)
    train, dev = slice(0, 80), slice(80, 120)
    stage = PredictionStage.fit(
        LABELS,
        Features(z[train], texts[train]),
        y[train],
        Features(z[dev], texts[dev]),
        y[dev],
        StageSettings(head="knn", lexical=0, min_positives=1),
    )
    vote = LexicalKNN().fit(texts[train], y[train])
    ranker = DenseSparseLinear(C=1.0, n_jobs=1).fit(texts[train], y[train], z[train])
    stage.text_scorers = [TextScorer(vote, 0.5), TextScorer(ranker, 0.25)]
    features = Features(z[dev], texts[dev])
    return stage, features, stage.save(tmp_path_factory.mktemp("stage"))


def test_a_stage_mixes_its_chain_in_order_in_every_score_path(chained):
    stage, features, _ = chained
    head = stage.head.predict_scores(features.embeddings)
    votes = stage.text_scorers[0].scorer.sparse_scores(features.texts).toarray()
    ranked = stage.text_scorers[1].scorer.sparse_scores(features.texts, features.embeddings).toarray()
    expected = 0.75 * (0.5 * head + 0.5 * votes) + 0.25 * ranked
    scores = stage.scores(features)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert stage.lexical_weight == pytest.approx(1 - 0.5 * 0.75)
    assert stage.lexical_candidate == "lexical weight 0.5 + dense+sparse(C=1) at 0.25"
    for row, top in zip(scores, stage.top_k(features, 3), strict=True):  # the kNN head's sparse path
        assert [v for _, v in top] == pytest.approx(np.sort(row)[::-1][:3].tolist(), abs=1e-6)


def test_a_chain_round_trips_through_its_folders(chained):
    stage, features, saved = chained
    assert (saved / "lexical" / "knn.npz").is_file() and (saved / "lexical.2" / "dense_sparse.npz").is_file()
    meta = json.loads((saved / "prediction.json").read_text())
    assert meta["text_scorers"] == [{"scorer": "knn", "weight": 0.5}, {"scorer": "dense_sparse", "weight": 0.25}]
    back = PredictionStage.load(saved, dim=8)
    assert [(scorer_kind(p.scorer), p.weight) for p in back.text_scorers] == [("knn", 0.5), ("dense_sparse", 0.25)]
    np.testing.assert_array_equal(back.scores(features), stage.scores(features))
    assert back.label_sets(features) == stage.label_sets(features)


def test_a_ranker_in_the_heads_place_round_trips_and_a_shortlisting_one_is_tried_there(chained, tmp_path):
    stage, features, _ = chained
    ranker, vote = stage.text_scorers[1].scorer, stage.text_scorers[0].scorer
    alone = PredictionStage(
        stage.labels,
        stage.head,
        stage.thresholds,
        stage.label_texts,
        text_scorers=[TextScorer(ranker, 1.0), TextScorer(vote, 0.25)],
    )
    ranked = ranker.sparse_scores(features.texts, features.embeddings).toarray()
    votes = vote.sparse_scores(features.texts).toarray()
    np.testing.assert_allclose(alone.scores(features), 0.75 * ranked + 0.25 * votes, atol=1e-6)  # no head left
    back = PredictionStage.load(alone.save(tmp_path / "alone"), dim=8)
    assert [p.weight for p in back.text_scorers] == [1.0, 0.25]
    np.testing.assert_array_equal(back.scores(features), alone.scores(features))
    assert text_scorers.RANKER_ALONE not in weights_to_try(ranker)  # 5 labels: no shortlist
    texts, y, z = toy(40, 3)
    shortlisting = DenseSparseLinear(shortlist=2).fit(texts, y, z)
    assert weights_to_try(shortlisting) == (0.0, *text_scorers.DENSE_SPARSE_WEIGHTS, text_scorers.RANKER_ALONE)


def test_a_model_saved_before_chains_loads_its_one_scorer(chained, tmp_path):
    stage, features, saved = chained
    one = PredictionStage(
        stage.labels, stage.head, stage.thresholds, stage.label_texts, text_scorers=[stage.text_scorers[0]]
    )
    folder = one.save(tmp_path / "old")
    meta = json.loads((folder / "prediction.json").read_text())
    del meta["text_scorers"]
    (folder / "prediction.json").write_text(json.dumps({**meta, "lexical_weight": 0.5, "lexical_scorer": "knn"}))
    back = PredictionStage.load(folder)
    assert [p.weight for p in back.text_scorers] == [0.5]
    np.testing.assert_array_equal(back.scores(features), one.scores(features))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"scorer": "bm25", "weight": 0.5}, r"entry 0 is 'bm25' at 0.5"),
        ({"scorer": "knn", "weight": 1.5}, r"at a weight in \(0, 1\]; entry 0 is 'knn' at 1.5"),
        ({"scorer": "knn", "weight": 0}, r"entry 0 is 'knn' at 0"),
        ({"scorer": "knn"}, r"expected an object with 'scorer', 'weight'"),
    ],
)
def test_a_bad_chain_entry_names_prediction_json(chained, tmp_path, entry, message):
    _, _, saved = chained
    folder = tmp_path / "bad"
    folder.mkdir()
    for path in saved.rglob("*"):
        target = folder / path.relative_to(saved)
        target.mkdir(exist_ok=True) if path.is_dir() else target.write_bytes(path.read_bytes())
    meta = json.loads((folder / "prediction.json").read_text())
    (folder / "prediction.json").write_text(json.dumps({**meta, "text_scorers": [entry]}))
    with pytest.raises(ModelLoadError, match="prediction.json") as raised:
        PredictionStage.load(folder)
    assert raised.match(message)


def test_auto_stacks_a_scorer_of_the_other_kind_only_where_dev_ranks_better():
    texts, y, z = toy(160, 7)
    texts = np.array(texts)
    train, dev = slice(0, 100), slice(100, 160)
    features = Features(z[dev], texts[dev])
    stage = PredictionStage.fit(
        LABELS, Features(z[train], texts[train]), y[train], features, y[dev], StageSettings(head="knn", min_positives=1)
    )
    figures = {name.split(": ")[0]: v for name, v in stage.selection.items() if name.startswith("lexical weight")}
    alone = {name: v for name, v in figures.items() if " + " not in name}
    first = max(alone, key=alone.get)
    stacked = {name: v for name, v in figures.items() if " + " in name}
    assert stacked and all(name.startswith(first + " + ") for name in stacked)  # on top of the best one alone
    assert stage.lexical_candidate == max(figures, key=figures.get)
    kinds = [scorer_kind(p.scorer) for p in stage.text_scorers]
    assert len(set(kinds)) == len(kinds)  # at most one scorer of each kind
    # the kept chain's dev figure is what the stage's own scores rank dev at
    assert figures[stage.lexical_candidate] == pytest.approx(ranking_quality(y[dev], stage.scores(features), "macro"))


@pytest.mark.parametrize(
    ("ranker_params", "words"),
    [
        ({}, "mixed with a dense+sparse ranker (linear SVMs on TF-IDF features and the embedding, C=1)"),
        (
            {"dense_scale": 0.0, "shortlist": 2},
            "mixed with a sparse ranker (linear SVMs on TF-IDF features, C=1, "
            "each text scored for a shortlist of 2 labels)",
        ),
    ],
)
def test_a_chained_model_predicts_the_same_loaded_exported_to_onnx_and_served(toy_data, tmp_path, ranker_params, words):
    pytest.importorskip("onnxruntime")
    TestClient = pytest.importorskip("fastapi.testclient").TestClient
    from labelcon.serve import create_app

    model = Labelcon(**{**FAST, "epochs": 1, "lexical": 0}).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    train = make_items(160, 0)  # the items of toy_data["train"]
    texts = [item["text"] for item in train]
    y = model.stage_.labels.encode([item["labels"] for item in train])
    vote = LexicalKNN().fit(texts, y)
    ranker = DenseSparseLinear(C=1.0, n_jobs=1, **ranker_params).fit(texts, y, model.encode(texts))
    model.stage_.text_scorers = [TextScorer(ranker, 0.5), TextScorer(vote, 0.25)]
    run = model.save(tmp_path / "run")
    queries = [item["text"] for item in make_items(12, 9)]
    expected = model.predict_proba(queries)
    assert not np.allclose(expected, model.stage_.head.predict_scores(model.encode(queries)))  # the chain counts
    loaded = Labelcon.load(run)
    np.testing.assert_array_equal(loaded.predict_proba(queries), expected)
    card = (run / "README.md").read_text()
    assert f"{words} of weight 0.5" in card and "then with a TF-IDF vote of weight 0.25" in card
    onnx = Labelcon.load(export(run, tmp_path / "onnx", "onnx"))
    np.testing.assert_allclose(onnx.predict_proba(queries), expected, atol=1e-4)
    with TestClient(create_app(run, ServeSettings())) as client:
        body = client.post("/predict", json={"inputs": queries, "raw_scores": True}).json()
    served = [[s["score"] for s in p["scores"]] for p in body["predictions"]]
    np.testing.assert_allclose(served, expected, atol=1e-6)
