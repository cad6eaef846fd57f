"""Model cards: front matter the Hub reads, labels with training frequencies, metrics, training facts."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from labelcon import Config, Labelcon
from labelcon.card import LISTED_LABELS, card_text, write_card
from labelcon.cli import main
from labelcon.data import LabelSpace
from labelcon.io import read_json, write_json
from tests.helpers import FAST, fast_flags, train_args, write_jsonl


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def run(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("card") / "run"
    flags = fast_flags(epochs=1)
    result = CliRunner().invoke(
        main,
        train_args(
            toy_data,
            out,
            *flags,
        ),
    )
    assert result.exit_code == 0, result.output
    return out


def test_a_training_run_has_a_card(run, toy_data) -> None:
    card = (run / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "labelcon" and "multi-label-classification" in meta["tags"]
    test = read_json(run / "metrics.json")["test"]
    results = meta["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in results["metrics"]}["macro_f1"] == round(test["macro_f1"], 4)
    assert meta["metrics"][0] == "macro_f1" and "datasets" not in meta  # the toy files are no registered data set
    counts = Counter(
        label for line in toy_data["train"].read_text().splitlines() for label in json.loads(line)["labels"]
    )
    for label, count in counts.items():
        assert f"| {label} | {count} |" in card
    assert "| metric | dev | test |" in card
    machine = read_json(run / "run.json")["machine"]
    assert f"- machine: {machine}" in card and "- train: 160 items" in card and "training time (encoder)" in card
    assert "```yaml\nencoder: static\n" in card
    assert "labelcon export" in card and "Labelcon.load(" in card


def test_counts_need_the_data_the_run_trained_on(run, toy_data, tmp_path) -> None:
    copy = shutil.copytree(run, tmp_path / "run")
    model = Labelcon.load(copy)
    changed = write_jsonl(tmp_path / "train.jsonl", [{"text": "goal team", "labels": ["sports"]}])
    state = read_json(copy / "run.json")
    state["data"]["train"]["source"] = str(changed)
    write_json(copy / "run.json", state)
    card = card_text(model, name="run", run_dir=copy)
    assert "4 labels: `food`, `music`, `sports`, `travel`." in card and "training items |" not in card


def test_registered_data_set_is_named(run, toy_data, tmp_path) -> None:
    copy = shutil.copytree(run, tmp_path / "run")
    folder = tmp_path / "goemotions"
    folder.mkdir()
    train = shutil.copy(toy_data["train"], folder / "train.jsonl")
    state = read_json(copy / "run.json")
    state["data"]["train"]["source"] = str(train)
    write_json(copy / "run.json", state)
    card = card_text(Labelcon.load(copy), name="go", run_dir=copy)
    meta = _front_matter(card)
    assert meta["datasets"] == ["goemotions"]
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "goemotions"
    assert "| sports |" in card


def test_a_saved_model_has_a_card_without_run_facts(toy_data, tmp_path) -> None:
    model = Labelcon(**{**FAST, "epochs": 1}).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    model.save(tmp_path / "saved")
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "- training time (encoder): " in card and "- machine:" not in card and "- train:" not in card
    assert "| metric | dev |" in card and "model-index" not in card and "4 labels: " in card


def test_many_labels_are_listed_up_to_a_limit(tmp_path) -> None:
    names = [f"label{i:03d}" for i in range(LISTED_LABELS + 20)]
    stage = SimpleNamespace(
        labels=LabelSpace(names),
        head=SimpleNamespace(name="knn"),
        text_scorers=[],
        at_least_one=False,
        score_pooling="embedding",
    )
    model = SimpleNamespace(
        config=Config(encoder="static"),
        stage_=stage,
        metrics_={},
        objective_="label_contrast",
        encoder_=SimpleNamespace(encoder_type="static", dim=64),
    )
    path = write_card(tmp_path, model, name="xmc")
    card = path.read_text()
    assert "and 20 more" in card and "`label099`" in card and "`label100`" not in card
    assert "# xmc" in card and "`knn` head scores the 120 labels" in card and "at least one" not in card
