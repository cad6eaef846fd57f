"""The command line end to end on small data: train, evaluate, predict, embed, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from labelcon.cli import main
from tests.helpers import fast_flags, train_args, write_jsonl

METRICS = {
    "macro_f1",
    "micro_f1",
    "samples_f1",
    "macro_ap",
    "precision_at_1",
    "precision_at_3",
    "precision_at_5",
    "lrap",
    "hamming_loss",
}


@pytest.fixture(scope="module")
def run_dir(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(
        main,
        train_args(
            toy_data,
            out,
            *fast_flags(),
        ),
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_metrics_and_predictions(run_dir) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"dev", "test"}
    assert METRICS <= set(metrics["test"]) and METRICS <= set(metrics["dev"])
    lines = (run_dir / "predictions_test.jsonl").read_text().splitlines()
    assert len(lines) == 60
    first = json.loads(lines[0])
    assert {"text", "labels", "predicted", "scores"} <= set(first)


def test_evaluate_json(run_dir, toy_data) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(run_dir), "--data", str(toy_data["test"]), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert metrics["macro_f1"] == pytest.approx(saved["macro_f1"])


def test_predict_into_a_pipe_its_reader_closes_stops_without_a_message(run_dir, tmp_path) -> None:
    texts = tmp_path / "many.txt"
    texts.write_text("great pasta with friends and a long evening by the lake\n" * 3000)  # 3000 lines: > a pipe's 64 KB
    process = subprocess.Popen(
        [sys.executable, "-m", "labelcon", "predict", str(run_dir), "--input", str(texts)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert json.loads(process.stdout.readline())["labels"]  # `| head -1`
    process.stdout.close()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and stderr.decode() == ""


def test_predict_texts_and_file(run_dir, tmp_path) -> None:
    result = CliRunner().invoke(main, ["predict", str(run_dir), "song album band", "goal team coach", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text"] for r in records] == ["song album band", "goal team coach"]
    assert all(len(r["scores"]) == 2 and r["labels"] for r in records)
    assert "music" in records[0]["labels"]
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "hotel flight"}, {"text": "bake dinner"}])
    result = CliRunner().invoke(main, ["predict", str(run_dir), "--input", str(path)])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2


def test_embed_writes_normalised_matrix(run_dir, toy_data, tmp_path) -> None:
    out = tmp_path / "e.npy"
    result = CliRunner().invoke(
        main, ["embed", str(run_dir), "--input", str(toy_data["test"]), "--output", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    vectors = np.load(out)
    assert vectors.shape[0] == 60 and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_malformed_file_names_file_and_line(tmp_path, toy_data) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "labels": ["a"]}\n{"text": "broken", "labels": [\n')
    result = CliRunner().invoke(main, ["train", "--train", str(bad), "--out", str(tmp_path / "o"), *fast_flags()])
    assert result.exit_code == 2
    assert "bad.jsonl" in result.output and "line 2" in result.output


def test_unknown_label_at_evaluation(run_dir, tmp_path) -> None:
    data = write_jsonl(tmp_path / "u.jsonl", [{"text": "song", "labels": ["music", "opera"]}])
    result = CliRunner().invoke(main, ["evaluate", str(run_dir), "--data", str(data)])
    assert result.exit_code == 2 and "opera" in result.output
    result = CliRunner().invoke(
        main, ["evaluate", str(run_dir), "--data", str(data), "--json", "--ignore-unknown-labels"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["unknown_labels"] == 1


def test_bad_config_file_is_named(tmp_path, toy_data) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 2\nlearning_rate: 0.1\n")
    result = CliRunner().invoke(
        main, ["train", "--train", str(toy_data["train"]), "--out", str(tmp_path / "o"), "--config", str(config)]
    )
    assert result.exit_code == 2
    assert "c.yaml" in result.output and "learning_rate" in result.output


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "embed", "report", "demo"])
def test_help_has_examples(command) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "labelcon" in result.output


def test_demo_runs_end_to_end_with_the_static_encoder(tmp_path) -> None:
    result = CliRunner().invoke(main, ["demo", "--encoder", "static", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["test"]["macro_ap"] > 0.3
    assert "predictions" in result.output and _squeezed(f"run directory {tmp_path / 'demo'}") in _squeezed(
        result.output
    )
    report = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")  # on the test split
    assert "Worst labels" in report and "test F1" in report and "://" not in report


def _squeezed(text: str) -> str:
    """``text`` without whitespace: what survives the console's line wrapping."""
    return "".join(text.split())


def test_demo_without_out_names_no_directory_it_removes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile reads TMPDIR anew
    result = CliRunner().invoke(main, ["demo", "--encoder", "static"])
    assert result.exit_code == 0, result.output
    printed = _squeezed(result.output)
    assert _squeezed("a temporary run directory (keep it with --out DIR)") in printed
    assert str(tmp_path) not in printed and "labelcon-demo-" not in printed
    assert not list(tmp_path.iterdir())


def test_the_help_and_the_readme_give_the_demo_one_duration() -> None:
    """The figure measured on 2 CPU cores (see the README's set-up)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    texts = [CliRunner().invoke(main, ["--help"]).output, CliRunner().invoke(main, ["demo", "--help"]).output, readme]
    assert all(re.search(r"\b(about )?1[- ]minute ", " ".join(text.split())) for text in texts)
    assert not any(re.search(r"\b(2-minute|3[- ]minutes?|a few minutes|under 1 min)", text) for text in texts)


def test_max_length_flag_takes_auto_or_a_number_and_rejects_the_rest(toy_data, tmp_path) -> None:
    result = CliRunner().invoke(
        main, ["train", "--train", str(toy_data["train"]), "--out", str(tmp_path / "r"), "--max-length", "long"]
    )
    assert result.exit_code == 2 and "expected 'auto' or a whole number, got 'long'" in result.output


def test_lexical_flag_takes_auto_or_a_weight_and_rejects_the_rest(toy_data, tmp_path) -> None:
    base = ["train", "--train", str(toy_data["train"]), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(main, [*base, "--lexical", "words"])
    assert result.exit_code == 2 and "expected 'auto' or a number, got 'words'" in result.output
    result = CliRunner().invoke(main, [*base, "--lexical", "1.5"])
    assert result.exit_code == 2 and "--lexical: must be 'auto' or a weight in [0, 1), got 1.5" in result.output
    assert not (tmp_path / "r").exists()


def test_an_unknown_head_stops_before_training(toy_data, tmp_path) -> None:
    """The head is built only after training; its name is checked before any of it starts."""
    result = CliRunner().invoke(
        main, ["train", "--train", str(toy_data["train"]), "--out", str(tmp_path / "r"), "--head", "svm"]
    )
    assert result.exit_code == 2 and "unknown head 'svm'; expected one of" in result.output
    assert not (tmp_path / "r").exists()


def test_every_config_field_is_a_train_flag() -> None:
    from labelcon.config import Config

    flags = {opt for param in main.commands["train"].params for opt in param.opts}
    missing = [name for name in Config.model_fields if "--" + name.replace("_", "-") not in flags]
    assert not missing


def test_generated_flags_parse_into_the_config(toy_data, tmp_path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--train",
            str(toy_data["train"]),
            "--out",
            str(out),
            *fast_flags(),
            "--head",
            "knn",
            "--head-params",
            '{"k": 7}',
            "--no-at-least-one",
            "--view",
            "word_deletion",
            "--view-params",
            '{"p": 0.2}',
            "--lexical",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["head_params"] == {"k": 7} and saved["at_least_one"] is False and saved["lexical"] == 0
    assert saved["view"] == "word_deletion" and saved["view_params"] == {"p": 0.2}
    bad = CliRunner().invoke(
        main, ["train", "--train", str(toy_data["train"]), "--out", str(tmp_path / "b"), "--head-params", "k=7"]
    )
    assert bad.exit_code == 2 and "expected a JSON object" in bad.output
