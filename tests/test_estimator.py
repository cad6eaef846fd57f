"""The estimator: fit, predict, evaluate, save/load round trips, resume after interruption."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from labelcon import Labelcon, metrics, prediction
from labelcon.data import DataError, as_dataset, train_dev_split
from labelcon.estimator import NotFittedError
from labelcon.heads import decisions, text_scorers
from labelcon.heads.decisions import GLOBAL_FALLBACK, PER_LABEL
from labelcon.training import Trainer
from tests.helpers import FAST, interrupted_at, make_items, write_jsonl


@pytest.fixture(scope="module")
def fitted(toy_data, tmp_path_factory) -> tuple[Labelcon, object]:
    out = tmp_path_factory.mktemp("run")
    model = Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], out_dir=out, show_progress=False)
    return model, out


def test_fit_learns_the_toy_labels(fitted, toy_data) -> None:
    model, _ = fitted
    metrics = model.evaluate(toy_data["test"])
    assert model.classes_ == ["food", "music", "sports", "travel"]
    assert metrics["macro_ap"] > 0.8
    assert metrics["micro_f1"] > 0.7
    assert "sports" in model.predict(["goal coach league match"])[0]


def test_predict_proba_shape_and_range(fitted) -> None:
    model, _ = fitted
    scores = model.predict_proba(["song album", "hotel beach flight"])
    assert scores.shape == (2, 4)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[0, model.classes_.index("music")] > scores[0, model.classes_.index("travel")]


def test_at_least_one_label(fitted) -> None:
    model, _ = fitted
    assert all(len(labels) >= 1 for labels in model.predict(["zzz qqq", "the and with"], at_least_one=True))


def test_predict_top_k_and_evaluate_match_the_dense_scores(fitted, toy_data, monkeypatch) -> None:
    model, _ = fitted
    texts = [item["text"] for item in make_items(40, 11)]
    scores = model.predict_proba(texts)
    names = model.classes_
    label_sets = [[names[c] for c in np.flatnonzero(row)] for row in model.stage_.decide(scores)]
    assert model.predict(texts) == label_sets
    top = model.top_k(texts, 3)
    for row, ranked in zip(scores, top, strict=True):
        assert [v for _, v in ranked] == np.sort(row)[::-1][:3].tolist()
        assert [v for _, v in ranked] == [row[names.index(name)] for name, _ in ranked]
    assert model.predict_with_top_k(texts, 3) == (label_sets, top)
    dense = model.evaluate(toy_data["test"])

    monkeypatch.setattr(prediction, "BLOCK_ELEMENTS", 7 * len(names))  # blocks of 7 items
    monkeypatch.setattr(prediction, "DENSE_EVALUATION", 0)  # blockwise evaluation
    assert model.predict(texts) == label_sets
    blocked = model.evaluate(toy_data["test"])
    assert blocked.pop("skipped") == ["macro_ap"]
    assert blocked == pytest.approx({key: value for key, value in dense.items() if key != "macro_ap"}, rel=1e-12)


def test_save_load_round_trip_gives_same_predictions(fitted, tmp_path) -> None:
    model, _ = fitted
    texts = [item["text"] for item in make_items(20, 9)]
    model.save(tmp_path / "m")
    loaded = Labelcon.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), rtol=1e-6, atol=1e-7)
    assert loaded.predict(texts) == model.predict(texts)
    assert loaded.config == model.config


def test_run_directory_contents(fitted) -> None:
    _, out = fitted
    for name in ("config.yaml", "labelcon.json", "metrics.json", "history.json"):
        assert (out / name).exists(), name
    for name in ("config.yaml", "labels.json", "thresholds.json", "prediction.json", "encoder", "head"):
        assert (out / "model.1" / name).exists(), name


def test_unfitted_model_says_so() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        Labelcon().predict(["x"])


def test_load_rejects_a_directory_that_is_no_model(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a labelcon model directory"):
        Labelcon.load(tmp_path)


def test_unknown_labels_error_or_counted(fitted, tmp_path) -> None:
    model, _ = fitted
    data = (["song album band", "goal team"], [["music", "opera"], ["sports"]])
    with pytest.raises(DataError, match="opera"):
        model.evaluate(data)
    metrics = model.evaluate(data, ignore_unknown_labels=True)
    assert metrics["unknown_labels"] == 1


def test_fit_without_dev_uses_a_seeded_carve_out(toy_data) -> None:
    a = Labelcon(**{**FAST, "epochs": 1}).fit(toy_data["train"], show_progress=False)
    b = Labelcon(**{**FAST, "epochs": 1}).fit(toy_data["train"], show_progress=False)
    assert a.metrics_["dev"]["n_items"] == b.metrics_["dev"]["n_items"] == 16
    np.testing.assert_allclose(a.predict_proba(["song"]), b.predict_proba(["song"]), rtol=1e-5, atol=1e-6)


def test_a_label_whose_only_item_the_carve_out_moves_to_dev_stays_a_label() -> None:
    items = [*make_items(60, 5), {"text": "a lone opera aria", "labels": ["opera"]}]
    data = ([item["text"] for item in items], [item["labels"] for item in items])
    seed = next(s for s in range(100) if ("opera",) in train_dev_split(as_dataset(data), 0.1, s)[1].labels)
    model = Labelcon(**{**FAST, "epochs": 1, "seed": seed}).fit(data, show_progress=False)
    assert "opera" in model.classes_  # not "unknown label 'opera'" for an item of the training data
    assert model.predict_proba(["opera aria"]).shape == (1, 5)


def test_interrupted_run_resumes_to_the_same_weights(toy_data, tmp_path, monkeypatch) -> None:
    settings = {**FAST, "epochs": 3, "checkpoint_minutes": 0}
    straight = Labelcon(**settings).fit(toy_data["train"], toy_data["dev"], out_dir=tmp_path / "a", show_progress=False)

    with interrupted_at(monkeypatch, 7):
        Labelcon(**settings).fit(toy_data["train"], toy_data["dev"], out_dir=tmp_path / "b", show_progress=False)
    resumed = Labelcon(**settings).fit(
        toy_data["train"], toy_data["dev"], out_dir=tmp_path / "b", resume=True, show_progress=False
    )
    for (name, a), (_, b) in zip(straight.encoder_.state_dict().items(), resumed.encoder_.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert len(resumed.history_) == len(straight.history_)
    for got, want in zip(resumed.history_, straight.history_):
        assert got["dev"] == pytest.approx(want["dev"])
    assert [h["loss"] for h in resumed.history_] == pytest.approx([h["loss"] for h in straight.history_], rel=1e-5)


def test_label_text_head_predicts_labels_added_after_training(toy_data, tmp_path) -> None:
    descriptions = tmp_path / "d.tsv"
    descriptions.write_text(
        "label\tdescription\nsports\tmatch goal team coach league score\nmusic\tsong album band concert guitar lyrics\n"
    )
    model = Labelcon(**{**FAST, "head": "label_text", "label_descriptions": str(descriptions)})
    model.fit(toy_data["train"], toy_data["dev"], show_progress=False)
    assert model.stage_.label_texts[model.classes_.index("sports")].startswith("match goal")
    assert model.evaluate(toy_data["test"])["macro_ap"] > 0.6
    model.add_labels(["cooking"], ["recipe dinner spicy bake flavour kitchen"])
    assert model.classes_[-1] == "cooking"
    scores = model.predict_proba(["recipe bake kitchen flavour", "guitar album song"])
    assert scores.shape == (2, 5)
    assert scores[0, -1] > scores[1, -1]
    model.save(tmp_path / "m")
    loaded = Labelcon.load(tmp_path / "m")
    assert loaded.classes_ == model.classes_
    np.testing.assert_allclose(loaded.predict_proba(["recipe bake"]), model.predict_proba(["recipe bake"]), atol=1e-6)
    with pytest.raises(ValueError, match="already known"):
        model.add_labels(["music"])


def test_add_labels_needs_the_label_text_head(fitted) -> None:
    model, _ = fitted
    with pytest.raises(ValueError, match="cannot add labels after training; the 'label_text' head can"):
        model.add_labels(["new"])


def test_at_least_one_defaults_to_whether_training_items_all_have_labels(fitted) -> None:
    model, _ = fitted
    assert model.stage_.at_least_one is True
    empty = (["song album", "goal team", "the and with", "hotel beach"], [["music"], ["sports"], [], ["travel"]])
    few = Labelcon(**{**FAST, "epochs": 1, "head": "prototype"}).fit(empty, empty, show_progress=False)
    assert few.stage_.at_least_one is False


def test_auto_head_gives_labels_rare_in_dev_the_fallback_threshold(toy_data, tmp_path) -> None:
    dev = [item for item in make_items(60, 1) if "travel" not in item["labels"]]
    dev += [{"text": "flight hotel trip the", "labels": ["travel"]}]  # one dev positive: below min_positives
    model = Labelcon(**{**FAST, "epochs": 1}).fit(
        toy_data["train"], write_jsonl(tmp_path / "dev.jsonl", dev), show_progress=False
    )
    travel = model.classes_.index("travel")
    own = model.stage_.head.fallback_threshold
    assert model.stage_.head.name == "fallback" and own.columns == [travel]
    rule, selection = model.stage_.thresholds, model.stage_.selection
    both = {PER_LABEL, GLOBAL_FALLBACK}  # rare labels under the head's threshold, or under the global one
    assert {f"{name}: dev cross-fitted macro-F1" for name in both} <= set(selection)
    assert not rule.per_label[travel]
    global_threshold = rule.global_threshold
    expected = {PER_LABEL: own.threshold, GLOBAL_FALLBACK: global_threshold, "one global threshold": global_threshold}
    assert rule.thresholds[travel] == pytest.approx(expected[rule.name])
    loaded = Labelcon.load(model.save(tmp_path / "m"))
    texts = [item["text"] for item in make_items(10, 5)]
    assert loaded.predict(texts) == model.predict(texts)


def test_many_labels_calibrate_and_check_dev_without_dense_dev_scores(toy_data, monkeypatch) -> None:
    monkeypatch.setattr(decisions, "CROSS_FIT_MAX", 0)  # both fits choose in-sample: the same rule, dense or blocked
    dense = Labelcon(**{**FAST, "epochs": 2, "head": "knn"}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    for module in (prediction, metrics):  # 10 dev items per check x 4 labels; blocks above
        monkeypatch.setattr(module, "DENSE_EVALUATION", 40)
    blocks = []
    original = prediction.PredictionStage._blocks
    monkeypatch.setattr(
        prediction.PredictionStage, "_blocks", lambda self, prepared: blocks.append(1) or original(self, prepared)
    )
    blocked = Labelcon(**{**FAST, "epochs": 2, "head": "knn"}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    assert len(blocks) >= 3  # per-label thresholds, the global rule, the rules' evaluation: each a pass of blocks
    np.testing.assert_array_equal(blocked.stage_.thresholds.thresholds, dense.stage_.thresholds.thresholds)
    assert blocked.stage_.thresholds.rank_cap == dense.stage_.thresholds.rank_cap
    assert blocked.history_[0]["dev"]["n_items"] == 10 and dense.history_[0]["dev"]["n_items"] == 60


def test_auto_objective_contrasts_with_label_texts_on_few_shot_data(toy_data, tmp_path) -> None:
    few = Labelcon(**{**FAST, "epochs": 1, "shots": 5}).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    assert few.objective_ == "label_contrast"
    assert Labelcon.load(few.save(tmp_path / "m")).objective_ == "label_contrast"
    many = Labelcon(**{**FAST, "epochs": 1}).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    assert many.objective_ == "supcon-jaccard"  # ~55 items per label
    chosen = Labelcon(**{**FAST, "epochs": 1, "shots": 5, "objective": "mulsupcon"})
    assert chosen.fit(toy_data["train"], toy_data["dev"], show_progress=False).objective_ == "mulsupcon"


def test_encode_max_length_applies_after_training_and_is_saved(toy_data, tmp_path, monkeypatch) -> None:
    trained_at = []
    original = Trainer.fit
    monkeypatch.setattr(
        Trainer, "fit", lambda self, *a, **k: trained_at.append(self.encoder.max_length) or original(self, *a, **k)
    )
    model = Labelcon(**{**FAST, "epochs": 1, "max_length": 4, "encode_max_length": 12})
    model.fit(toy_data["train"], toy_data["dev"], show_progress=False)
    assert trained_at == [4] and model.encoder_.max_length == 12
    assert Labelcon.load(model.save(tmp_path / "m")).encoder_.max_length == 12


def test_keep_base_interpolates_the_trained_encoder_toward_its_start(toy_data) -> None:
    def weights(**params) -> torch.Tensor:
        model = Labelcon(**{**FAST, "epochs": 1, **params}).fit(toy_data["train"], toy_data["dev"], show_progress=False)
        return model.encoder_.state_dict()["embedding.weight"]

    start, trained, kept = weights(epochs=0), weights(), weights(keep_base=0.25)
    assert not torch.allclose(start, trained)
    torch.testing.assert_close(kept, 0.25 * start + 0.75 * trained)
    with pytest.raises(ValueError, match="keep_base"):
        Labelcon(keep_base=1.0)


def test_lexical_vote_mixes_into_every_score_path_and_is_saved(toy_data, tmp_path) -> None:
    model = Labelcon(**{**FAST, "epochs": 1, "head": "linear", "lexical": 0.5}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    texts = [item["text"] for item in make_items(30, 12)]
    head = model.stage_.head.predict_scores(model.encode(texts))
    (vote,) = model.stage_.text_scorers  # a configured weight: one scorer, nothing stacked
    votes = vote.scores(texts, model.encode(texts)).toarray()
    scores = model.predict_proba(texts)
    np.testing.assert_allclose(scores, 0.5 * head + 0.5 * votes, atol=1e-6)
    assert model.predict(texts) == [[model.classes_[c] for c in np.flatnonzero(r)] for r in model.stage_.decide(scores)]
    assert [[v for _, v in r] for r in model.top_k(texts, 2)] == np.sort(scores, axis=1)[:, ::-1][:, :2].tolist()
    loaded = Labelcon.load(model.save(tmp_path / "m"))
    assert loaded.stage_.lexical_weight == 0.5 and (tmp_path / "m" / "model.1" / "lexical").is_dir()
    np.testing.assert_array_equal(loaded.predict_proba(texts), scores)


def test_lexical_vote_with_a_knn_head_ranks_through_sparse_scores(toy_data) -> None:
    model = Labelcon(**{**FAST, "epochs": 1, "head": "knn", "lexical": 0.25}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    texts = [item["text"] for item in make_items(30, 13)]
    scores = model.predict_proba(texts)
    for row, ranked in zip(scores, model.top_k(texts, 3), strict=True):
        assert [v for _, v in ranked] == pytest.approx(np.sort(row)[::-1][:3].tolist(), abs=1e-6)
        assert [v for _, v in ranked] == pytest.approx([row[model.classes_.index(n)] for n, _ in ranked], abs=1e-6)


def test_lexical_auto_picks_the_weight_with_the_best_dev_macro_ap(toy_data) -> None:
    model = Labelcon(**{**FAST, "epochs": 1, "head": "linear"}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    stage = model.stage_
    figures = {name.split(": ")[0]: v for name, v in stage.selection.items() if name.startswith("lexical weight")}
    alone = {name: v for name, v in figures.items() if " + " not in name}
    assert {f"lexical weight {w:g}" for w in text_scorers.LEXICAL_WEIGHTS} <= set(alone)
    assert stage.lexical_candidate.split(" + ")[0] == max(alone, key=alone.get)  # the best scorer alone first
    assert stage.lexical_candidate == max(figures, key=figures.get)  # and a scorer on top only where dev ranks better
    assert (not stage.text_scorers) == (stage.lexical_weight == 0)
    off = Labelcon(**{**FAST, "epochs": 1, "head": "linear", "lexical": 0}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    assert not off.stage_.text_scorers and not any(key.startswith("lexical") for key in off.stage_.selection)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"head": "svm"}, "unknown head 'svm'"),
        ({"head": "linear", "head_params": {"k": 3}}, "head 'linear' got unknown parameters ['k']"),
        ({"head": "auto", "head_params": {"C": 1}}, "head 'auto' picks its own parameters"),
    ],
)
def test_head_settings_that_would_fail_after_training_fail_at_construction(settings, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Labelcon(**settings)
    model = Labelcon(head="knn")
    with pytest.raises(ValueError, match="unknown head 'svm'"):
        model.config.head = "svm"  # assignment is validated too


def test_sklearn_clone_keeps_the_parameters_and_set_params_changes_them() -> None:
    from sklearn.base import clone

    model = Labelcon(encoder="static", epochs=2, head="knn", head_params={"k": 5})
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params() and copy.config == model.config
    assert copy.get_params()["head_params"] == {"k": 5} and copy.get_params()["epochs"] == 2
    assert set(copy.get_params()) == set(type(model.config).model_fields)
    copy.set_params(epochs=5, head_params={"k": 9})
    assert copy.config.epochs == 5 and copy.get_params()["head_params"] == {"k": 9} and model.config.epochs == 2
    with pytest.raises(ValueError, match="field 'epochs'"):
        copy.set_params(epochs=-1)
    assert copy.config.epochs == 5


def test_unlabelled_texts_train_an_encoder_with_simcse(tmp_path) -> None:
    texts = [item["text"] for item in make_items(80, 3)]
    model = Labelcon(**{**FAST, "objective": "simcse", "epochs": 1})
    model.fit((texts, [[] for _ in texts]), out_dir=tmp_path / "m", show_progress=False)
    vectors = model.encode(texts[:3])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(NotFittedError, match="trained without labels"):
        model.predict(texts[:1])
    np.testing.assert_allclose(Labelcon.load(tmp_path / "m").encode(texts[:3]), vectors, atol=1e-6)


def test_labels_unseen_in_training_count_as_misses_and_are_named(fitted) -> None:
    model, _ = fitted
    texts = ["song album band", "goal team coach", "hotel beach flight"]
    truth = [["music", "opera"], ["sports"], ["travel", "opera", "ski"]]
    metrics = model.evaluate((texts, truth), ignore_unknown_labels=True)
    assert metrics["unknown_labels"] == 3 and metrics["unknown_label_names"] == ["opera", "ski"]
    assert metrics["n_labels"] == len(model.classes_) + 2
    predicted = model.predict(texts)
    hits = sum(len(set(p) & set(t)) for p, t in zip(predicted, truth, strict=True))
    expected = (
        2 * hits / (sum(map(len, predicted)) + sum(map(len, truth)))
    )  # the unseen labels are true, never predicted
    assert metrics["micro_f1"] == pytest.approx(expected)
