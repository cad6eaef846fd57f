"""One run path: ``labelcon train`` and ``Labelcon.fit(out_dir=...)`` leave the same run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from labelcon import Labelcon
from labelcon.cli import main
from labelcon.data.registry import dataset_files
from tests.helpers import FAST, train_args

SETTINGS = {**FAST, "max_time_minutes": 0, "seed": 3}


def _files(run: Path) -> list[str]:
    """The run's files, with the model version folder's name made alike."""
    names = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file() and p.name != ".labelcon.lock"}
    return sorted(name.replace(name.split("/")[0], "model.N") if name.startswith("model.") else name for name in names)


def test_the_cli_and_python_leave_the_same_run(toy_data, tmp_path) -> None:
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in SETTINGS.items()]
    by_cli = tmp_path / "cli"
    result = CliRunner().invoke(
        main,
        train_args(
            toy_data,
            by_cli,
            "--quiet",
            *flags,
        ),
    )
    assert result.exit_code == 0, result.output
    by_python = tmp_path / "python"
    model = Labelcon(**SETTINGS).fit(
        toy_data["train"], toy_data["dev"], test=toy_data["test"], out_dir=by_python, show_progress=False
    )
    assert _files(by_cli) == _files(by_python)
    assert {"report.html", "report.md", "predictions_test.jsonl", "metrics.json", "README.md"} <= set(_files(by_python))
    cli_metrics, python_metrics = (json.loads((run / "metrics.json").read_text()) for run in (by_cli, by_python))
    assert cli_metrics.keys() == python_metrics.keys() == {"dev", "test"}
    for split in ("dev", "test"):
        assert cli_metrics[split] == pytest.approx(python_metrics[split], abs=1e-9)
    assert python_metrics["test"] == pytest.approx(model.metrics_["test"])
    assert (by_cli / "predictions_test.jsonl").read_text() == (by_python / "predictions_test.jsonl").read_text()
    assert "no test predictions" not in (by_python / "report.md").read_text()


def test_test_without_a_run_directory_is_evaluated_into_the_metrics(toy_data) -> None:
    model = Labelcon(**SETTINGS).fit(toy_data["train"], toy_data["dev"], test=toy_data["test"], show_progress=False)
    assert model.metrics_["test"] == pytest.approx(model.evaluate(toy_data["test"]))


def test_a_bad_test_file_fails_before_training(toy_data, tmp_path) -> None:
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"text": "fine", "labels": ["music"]}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="test.jsonl.*line 2"):
        Labelcon(**SETTINGS).fit(toy_data["train"], toy_data["dev"], test=bad, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "labelcon.json").exists()


def test_a_registered_data_set_names_its_files() -> None:
    files = dataset_files("demo")
    assert Path(files["train"]).name == "train.jsonl" and Path(files["test"]).name == "test.jsonl"
    assert files["label_descriptions"] is None or Path(files["label_descriptions"]).is_file()
