"""Run directories: owned, locked, published whole, resumed only with the same data and settings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from labelcon import Labelcon
from labelcon.cli import main
from labelcon.modeldir import RunDirectoryError, load_current, publish, resolve
from tests.helpers import FAST, fast_flags, make_items, write_jsonl


def _train(toy_data, out, *extra: str):
    flags = [*fast_flags(epochs=1), "--eval-max-train", "100"]
    return CliRunner().invoke(
        main,
        ["train", "--train", str(toy_data["train"]), "--dev", str(toy_data["dev"]), "--out", str(out), *flags, *extra],
    )


@pytest.fixture(scope="module")
def finished(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    result = _train(toy_data, out, "--test", str(toy_data["test"]))
    assert result.exit_code == 0, result.output
    return out


def test_out_refuses_a_directory_that_is_not_a_labelcon_run(toy_data, tmp_path) -> None:
    mine = tmp_path / "thesis"
    (mine / "encoder").mkdir(parents=True)
    (mine / "encoder" / "chapter1.tex").write_text("my words")
    result = _train(toy_data, mine)
    assert result.exit_code == 2 and "is not empty (encoder) and holds no labelcon run" in result.output
    assert "Traceback" not in result.output
    assert (mine / "encoder" / "chapter1.tex").read_text() == "my words"
    assert sorted(p.name for p in mine.iterdir()) == ["encoder"]  # not even config.yaml was written


def test_a_finished_run_is_not_trained_again_or_resumed_without_overwrite(finished, toy_data) -> None:
    state = json.loads((finished / "run.json").read_text())
    assert state["status"] == "finished" and state["data"]["train"]["items"] == 160
    again = _train(toy_data, finished)
    assert again.exit_code == 2 and "holds a finished run; pass --overwrite" in again.output
    resumed = _train(toy_data, finished, "--resume")
    assert resumed.exit_code == 2 and "holds a finished run; nothing to resume" in resumed.output
    assert (finished / "predictions_test.jsonl").exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing_to_resume(toy_data, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "typo"
    failed = CliRunner().invoke(
        main, ["train", "--train", str(toy_data["train"]), "--encoder", "no-such-encoder", "--out", str(out), "-q"]
    )
    assert failed.exit_code != 0 and "no-such-encoder" in failed.output
    state = json.loads((out / "run.json").read_text())
    assert state["status"] == "failed" and "no-such-encoder" in state["error"]
    again = _train(toy_data, out)  # the corrected command, with neither --resume nor --overwrite
    assert again.exit_code == 0, again.output
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_overwrite_removes_the_earlier_runs_outputs(finished, toy_data, tmp_path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    (out / ".checkpoint.pt.x1.tmp").write_bytes(b"left by a kill")
    result = _train(toy_data, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "predictions_test.jsonl").exists()  # the earlier run's, not this one's
    assert "test" not in json.loads((out / "metrics.json").read_text())
    assert not list(out.glob(".*.tmp"))
    assert resolve(out)[0].name == "model.1" and len(list(out.glob("model.*"))) == 1


def test_resume_checks_the_data_and_settings_of_the_interrupted_run(finished, toy_data, tmp_path) -> None:
    out = tmp_path / "interrupted"
    shutil.copytree(finished, out)
    state = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**state, "status": "running"}))
    other = write_jsonl(tmp_path / "other.jsonl", make_items(50, 5))
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--train",
            str(other),
            "--dev",
            str(toy_data["dev"]),
            "--out",
            str(out),
            "--resume",
            "--epochs",
            "3",
            "-q",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "these differ" in result.output and "epochs: 1 in the run, 3 now" in result.output
    assert "train data: 160 items" in result.output and "50 items from" in result.output
    plain = _train(toy_data, out)
    assert plain.exit_code == 2 and "holds an interrupted run; pass --resume" in plain.output


def test_a_second_writer_is_kept_out_while_the_first_holds_the_lock(toy_data, tmp_path) -> None:
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from labelcon.modeldir import locked\n"
                f"with locked({str(out)!r}):\n    print('held', flush=True); time.sleep(30)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = _train(toy_data, out)
        assert result.exit_code == 2 and "another labelcon process is writing this run directory" in result.output
    finally:
        holder.kill()
        holder.wait()


def test_publish_switches_whole_versions_and_readers_follow_a_newer_one(tmp_path) -> None:
    first = publish(tmp_path, lambda d: (d / "w.txt").write_text("1"), {})
    assert resolve(tmp_path)[0] == first
    calls = []

    def load(folder, meta):
        calls.append(folder.name)
        if len(calls) == 1:  # a new version is published while this reader reads the old one
            publish(tmp_path, lambda d: (d / "w.txt").write_text("2"), {})
        return (folder / "w.txt").read_text()

    assert load_current(tmp_path, load) == "2" and calls == ["model.1", "model.2"]
    assert not first.exists() and not list(tmp_path.glob(".*.tmp"))

    def broken(directory):
        (directory / "w.txt").write_text("3")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish(tmp_path, broken, {})
    assert resolve(tmp_path)[0].name == "model.2" and not list(tmp_path.glob(".*.tmp"))


def test_python_fit_owns_its_out_dir_too(toy_data, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(RunDirectoryError, match="holds no labelcon run"):
        Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], out_dir=tmp_path, show_progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep"
