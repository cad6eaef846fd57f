"""Every error of the command line is one line, ``error: ...``, exit code 2, no traceback,
naming the file (or flag, or argument) at fault: a catalogue of damaged run directories
and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import labelcon
from labelcon.cli import main
from labelcon.filecheck import ModelLoadError
from labelcon.heads import build_head
from tests.helpers import fast_flags, train_args, write_jsonl


@pytest.fixture(scope="module")
def pristine(toy_data, tmp_path_factory) -> Path:
    """A small finished run with every part a model can have (the lexical vote included)."""
    out = tmp_path_factory.mktemp("errors") / "run"
    result = CliRunner().invoke(
        main,
        train_args(
            toy_data,
            out,
            *fast_flags(),
            "--lexical",
            "0.5",
            test=False,
        ),
    )
    assert result.exit_code == 0, result.output
    assert (out / "model.1" / "lexical" / "knn.npz").is_file()
    return out


def _fails_in_one_line(args: list[str], names: str) -> str:
    """Run the command line; it must exit with 2 and one ``error:`` line naming ``names``."""
    result = CliRunner().invoke(main, args, env={"LABELCON_DEBUG": None})
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and "Aborted" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert names in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- damage to a run directory
def _cut(name: str, keep: float = 0.5) -> Callable[[Path], None]:
    """Cut the model file ``name`` to a share ``keep`` of its bytes (0: empty)."""

    def damage(model: Path) -> None:
        data = (model / name).read_bytes()
        (model / name).write_bytes(data[: int(len(data) * keep)])

    return damage


def _edit(name: str, change: Callable[[object], object]) -> Callable[[Path], None]:
    """Replace the JSON value of the model file ``name`` by ``change(value)``."""

    def damage(model: Path) -> None:
        path = model / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return damage


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda model: (model / name).write_text(text)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda model: shutil.rmtree(model / name) if (model / name).is_dir() else (model / name).unlink()


def _foreign_head(n_labels: int, dim: int) -> Callable[[Path], None]:
    """Put the head of another model (``n_labels`` labels, embeddings of ``dim``) in place of this one's."""

    def damage(model: Path) -> None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(3 * n_labels, dim)).astype(np.float32)
        head = build_head("prototype").fit(x, np.tile(np.eye(n_labels), (3, 1)))
        shutil.rmtree(model / "head")
        head.save(model / "head")

    return damage


def _pointer(change: Callable[[dict], object]) -> Callable[[Path], None]:
    return lambda model: _edit("labelcon.json", change)(model.parent)


def _with(value: dict, **fields: object) -> dict:
    return {**value, **fields}


def _without(value: dict, key: str) -> dict:
    return {k: v for k, v in value.items() if k != key}


#: (case, damage done to the model folder model.1, the file the message must name).
DAMAGE = [
    ("weights truncated", _cut("encoder/model.safetensors"), "encoder/model.safetensors"),
    ("weights empty", _cut("encoder/model.safetensors", 0), "encoder/model.safetensors"),
    ("tokenizer truncated", _cut("encoder/tokenizer.json"), "encoder/tokenizer.json"),
    ("tokenizer empty", _cut("encoder/tokenizer.json", 0), "encoder/tokenizer.json"),
    (
        "encoder.json without config",
        _edit("encoder/encoder.json", lambda v: _without(v, "config")),
        "encoder/encoder.json",
    ),
    (
        "encoder.json config not an object",
        _edit("encoder/encoder.json", lambda v: _with(v, config="big")),
        "encoder/encoder.json",
    ),
    (
        "encoder.json dim of the wrong type",
        _edit("encoder/encoder.json", lambda v: _with(v, dim="256")),
        "encoder/encoder.json",
    ),
    (
        "encoder.json setting of the wrong type",  # which file is wrong is not known: the folder and its settings
        _edit("encoder/encoder.json", lambda v: _with(v, config={**v["config"], "dim": "big"})),
        "encoder",
    ),
    ("weights missing", _remove("encoder/model.safetensors"), "encoder"),
    ("tokenizer missing", _remove("encoder/tokenizer.json"), "encoder"),
    ("encoder.json missing", _remove("encoder/encoder.json"), "encoder/encoder.json"),
    (
        "encoder.json unknown type",
        _edit("encoder/encoder.json", lambda v: _with(v, type="lstm")),
        "encoder/encoder.json",
    ),
    ("head arrays truncated", _cut("head/arrays.npz"), "head/arrays.npz"),
    ("head arrays empty", _cut("head/arrays.npz", 0), "head/arrays.npz"),
    ("head.json unknown type", _edit("head/head.json", lambda v: _with(v, type="svm")), "head/head.json"),
    ("head.json wrong n_labels", _edit("head/head.json", lambda v: _with(v, n_labels=12)), "head/head.json"),
    ("head.json wrong dim", _edit("head/head.json", lambda v: _with(v, dim=64)), "head/head.json"),
    ("head.json params not an object", _edit("head/head.json", lambda v: _with(v, params=[1])), "head/head.json"),
    ("head folder missing", _remove("head"), "head/head.json"),
    ("head of another model: 12 labels", _foreign_head(12, 256), "head/head.json"),
    ("head of another model: dim 8", _foreign_head(4, 8), "head/head.json"),
    ("lexical knn truncated", _cut("lexical/knn.npz"), "lexical/knn.npz"),
    ("lexical knn empty", _cut("lexical/knn.npz", 0), "lexical/knn.npz"),
    ("lexical idf truncated", _cut("lexical/idf.npy"), "lexical/idf.npy"),
    ("lexical vocabulary not JSON", _cut("lexical/vocabulary.json"), "lexical/vocabulary.json"),
    ("labels.json a list", _edit("labels.json", lambda v: v["names"]), "labels.json"),
    ("labels.json names not a list", _edit("labels.json", lambda v: {"names": "music"}), "labels.json"),
    ("labels.json one label short", _edit("labels.json", lambda v: {"names": v["names"][:-1]}), "labels.json"),
    ("label_texts.json one text short", _edit("label_texts.json", lambda v: v[:-1]), "label_texts.json"),
    (
        "thresholds.json NaN",
        _write(
            "thresholds.json",
            '{"thresholds": [NaN, 0.5, 0.5, 0.5], "per_label": [true, true, true, true], "global_threshold": 0.5}',
        ),
        "thresholds.json",
    ),
    (
        "thresholds.json one short",
        _edit("thresholds.json", lambda v: _with(v, thresholds=v["thresholds"][:-1], per_label=v["per_label"][:-1])),
        "thresholds.json",
    ),
    ("thresholds.json not JSON", _write("thresholds.json", '{"thresholds": [0.5,'), "thresholds.json"),
    ("prediction.json missing", _remove("prediction.json"), "prediction.json"),
    (
        "prediction.json bad weight",
        _edit("prediction.json", lambda v: _with(v, lexical_weight="half")),
        "prediction.json",
    ),
    ("config.yaml not YAML", _write("config.yaml", "epochs: [1, 2\nseed: {"), "config.yaml"),
    ("config.yaml a list", _write("config.yaml", "- 1\n- 2\n"), "config.yaml"),
    ("config.yaml unknown field", _write("config.yaml", "learning_rate: 0.1\n"), "config.yaml"),
    ("config.yaml missing", _remove("config.yaml"), "config.yaml"),
    ("pointer of format 7", _pointer(lambda v: _with(v, format=7)), "labelcon.json"),
    ("pointer to a missing folder", _pointer(lambda v: _with(v, model="model.9")), "labelcon.json"),
    ("pointer without a format", _pointer(lambda v: _without(v, "format")), "labelcon.json"),
    ("pointer not JSON", lambda model: _cut("labelcon.json")(model.parent), "labelcon.json"),
]


@pytest.mark.parametrize(("damage", "named"), [pytest.param(damage, named, id=case) for case, damage, named in DAMAGE])
def test_a_damaged_run_directory_fails_in_one_line_naming_the_file(pristine, toy_data, tmp_path, damage, named) -> None:
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    damage(run / "model.1")
    path = run / "labelcon.json" if named == "labelcon.json" else run / "model.1" / named
    for args in (["predict", str(run), "song album band"], ["evaluate", str(run), "--data", str(toy_data["test"])]):
        line = _fails_in_one_line(args, f"error: {path}: ")
        assert line.startswith(f"error: {path}: ")
        assert "train again or restore it from a copy" in line or "newer labelcon" in line
        if named == "encoder":
            assert "encoder.json" in line


def test_a_missing_run_directory_or_a_file_is_named(tmp_path, toy_data) -> None:
    missing = tmp_path / "nothing"
    _fails_in_one_line(["predict", str(missing), "song"], f"{missing}: does not exist")
    _fails_in_one_line(["evaluate", str(missing), "--data", str(toy_data["test"])], f"{missing}: does not exist")
    _fails_in_one_line(["predict", str(toy_data["test"]), "song"], f"{toy_data['test']}: is not a directory")
    _fails_in_one_line(["predict", str(tmp_path), "song"], f"{tmp_path}: not a labelcon model directory")


def test_debug_mode_raises_with_the_traceback(pristine, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    _cut("head/arrays.npz", 0)(run / "model.1")
    result = CliRunner().invoke(main, ["predict", str(run), "song"], env={"LABELCON_DEBUG": "1"})
    assert isinstance(result.exception, ModelLoadError) and "arrays.npz" in str(result.exception)
    assert isinstance(result.exception.__cause__, EOFError)


def test_the_damaged_file_is_named_from_python_too(pristine, tmp_path) -> None:
    from labelcon.estimator import Labelcon

    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    _edit("thresholds.json", lambda v: _with(v, thresholds=v["thresholds"][:-1], per_label=v["per_label"][:-1]))(
        run / "model.1"
    )
    others = r"labels\.json, head/head\.json, label_texts\.json, lexical/knn\.npz"
    with pytest.raises(ModelLoadError, match=rf"thresholds\.json: covers 3 labels, but {others} cover 4"):
        Labelcon.load(run)


# ---------------------------------------------------------------- bad inputs
def test_a_flag_out_of_range_is_named_as_the_flag(toy_data, tmp_path) -> None:
    args = ["train", "--train", str(toy_data["train"]), "--out", str(tmp_path / "r")]
    line = _fails_in_one_line([*args, "--seed", "-1"], "--seed: must be >= 0, got -1")
    assert "field" not in line
    _fails_in_one_line(
        [*args, "--dev-fraction", "1.5", "--batch-size", "1"],
        "--batch-size: must be >= 2, got 1; --dev-fraction: must be < 1, got 1.5",
    )
    assert not (tmp_path / "r").exists()


def test_an_output_under_a_regular_file_is_named(pristine, toy_data, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails_in_one_line(
        ["train", "--train", str(toy_data["train"]), "--out", str(blocker / "run"), *fast_flags()],
        f"--out {blocker / 'run'}: cannot be made: {blocker} is a file, not a directory",
    )
    _fails_in_one_line(
        ["embed", str(pristine), "--input", str(toy_data["test"]), "--output", str(blocker / "e.npy")],
        f"--output {blocker / 'e.npy'}: cannot be made: {blocker} is a file",
    )
    _fails_in_one_line(["demo", "--out", str(blocker / "demo")], f"--out {blocker / 'demo'}: cannot be made")


def test_an_empty_text_argument_is_rejected_like_an_empty_text_in_a_file(pristine, tmp_path) -> None:
    _fails_in_one_line(["predict", str(pristine), ""], "text argument 1: expected a non-empty text, got ''")
    _fails_in_one_line(["predict", str(pristine), "song", "  "], "text argument 2: expected a non-empty text, got '  '")
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "song"}, {"text": ""}])
    _fails_in_one_line(["predict", str(pristine), "--input", str(path)], "line 2: expected a non-empty text")


def test_evaluate_json_writes_an_undefined_metric_as_null(pristine, tmp_path) -> None:
    data = write_jsonl(
        tmp_path / "unlabelled.jsonl", [{"text": "song album", "labels": []}, {"text": "goal team", "labels": []}]
    )
    result = CliRunner().invoke(main, ["evaluate", str(pristine), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    metrics = json.loads(result.stdout, parse_constant=refuse)
    assert metrics["macro_ap"] is None and metrics["n_items"] == 2


def test_an_unknown_encoder_offline_fails_in_one_line(toy_data, tmp_path) -> None:
    """A real process: the Hugging Face libraries read HF_HUB_OFFLINE when first imported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(labelcon.__file__).parents[1])}
    env.pop("LABELCON_DEBUG", None)
    command = [
        sys.executable,
        "-m",
        "labelcon",
        "train",
        "--train",
        str(toy_data["train"]),
        "--out",
        str(tmp_path / "r"),
        "--encoder",
        "no-such-org/no-such-encoder",
        "--epochs",
        "1",
        "--quiet",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-org/no-such-encoder" in lines[0], done.stderr
