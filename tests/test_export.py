"""Exports to sentence-transformers and ONNX: same embeddings and label decisions, loading, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import BertConfig, BertModel, BertTokenizerFast

from labelcon import Labelcon
from labelcon.cli import main
from labelcon.encoders import MLPEncoder, OnnxEncoder, StaticEncoder, TransformerEncoder
from labelcon.export import ExportError, export
from labelcon.io import read_json, write_json
from labelcon.modeldir import MODEL_FILE
from tests.helpers import FAST, FILLER, TOPICS, make_items

SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer
pytest.importorskip("onnxruntime")

TEXTS = [item["text"] for item in make_items(40, 21)] + ["zzz qqq", " ".join(["goal"] * 60)]


@pytest.fixture(scope="module")
def static_run(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "run"
    Labelcon(**{**FAST, "projection_dim": 8}).fit(toy_data["train"], toy_data["dev"], out_dir=out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def bert_run(toy_data, tmp_path_factory):
    """A run of a tiny BERT (vocabulary: the toy words) computing in float32."""
    root = tmp_path_factory.mktemp("bert")
    folder = root / "tiny-bert"
    folder.mkdir()
    words = sorted({w for topic in TOPICS.values() for w in topic} | set(FILLER))
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    out = root / "run"
    Labelcon(
        encoder=str(folder),
        epochs=1,
        batch_size=32,
        max_length=16,
        min_steps=0,
        eval_max_train=100,
        precision="float32",
        projection_dim=8,
    ).fit(toy_data["train"], toy_data["dev"], out_dir=out, show_progress=False)
    return out


@pytest.mark.parametrize("run_name", ["static_run", "bert_run"])
def test_sentence_transformers_export_embeds_as_labelcon(run_name, request, tmp_path) -> None:
    run = request.getfixturevalue(run_name)
    out = tmp_path / "st"
    result = CliRunner().invoke(main, ["export", str(run), "--format", "sentence-transformers", "--out", str(out)])
    assert result.exit_code == 0, result.output
    original = Labelcon.load(run)
    st = SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), original.encode(TEXTS), atol=1e-4)
    exported = Labelcon.load(out)
    assert isinstance(exported.encoder_, StaticEncoder if run_name == "static_run" else TransformerEncoder)
    assert exported.predict(TEXTS) == original.predict(TEXTS)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: labelcon\n") and "- sentence-transformers" in card
    assert "SentenceTransformer(" in card
    pointer = read_json(out / MODEL_FILE)
    assert pointer["encoder"]["format"] == "sentence-transformers" and pointer["exported_from"]["model"] == "model.1"


@pytest.mark.parametrize("run_name", ["static_run", "bert_run"])
def test_onnx_export_predicts_through_onnx_runtime(run_name, request, tmp_path) -> None:
    run = request.getfixturevalue(run_name)
    out = export(run, tmp_path / "onnx", "onnx")
    original, exported = Labelcon.load(run), Labelcon.load(out)
    assert isinstance(exported.encoder_, OnnxEncoder)
    np.testing.assert_allclose(exported.encode(TEXTS), original.encode(TEXTS), atol=1e-5)
    assert exported.predict(TEXTS) == original.predict(TEXTS)
    ranked_now, ranked_then = exported.top_k(TEXTS, 2), original.top_k(TEXTS, 2)
    assert [[name for name, _ in row] for row in ranked_now] == [[name for name, _ in row] for row in ranked_then]
    card = (out / "README.md").read_text()
    assert "- onnx" in card and "ort.InferenceSession" in card
    assert exported.metrics_ == original.metrics_


def test_onnx_cli_predict_and_int8(static_run, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "int8"
    result = runner.invoke(
        main, ["export", str(static_run), "--format", "onnx", "--quantize", "int8", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and "(int8)" in result.output
    assert read_json(out / "onnx" / "encoder.json")["config"]["quantization"] == "int8"
    original = Labelcon.load(static_run)
    exported = Labelcon.load(out)
    agree = np.mean([a == b for a, b in zip(exported.predict(TEXTS), original.predict(TEXTS), strict=True)])
    assert agree >= 0.9
    texts = ["song album band", "goal team coach"]
    lines = runner.invoke(main, ["predict", str(out), *texts]).output.splitlines()
    assert [json.loads(line)["text"] for line in lines] == texts
    assert "music" in json.loads(lines[0])["labels"]


def test_a_loaded_export_saves_as_a_model_directory(static_run, tmp_path) -> None:
    exported = Labelcon.load(export(static_run, tmp_path / "onnx", "onnx"))
    exported.save(tmp_path / "copy")
    again = Labelcon.load(tmp_path / "copy")
    assert isinstance(again.encoder_, OnnxEncoder)
    assert again.predict(TEXTS) == exported.predict(TEXTS)


def test_export_errors(static_run, tmp_path) -> None:
    runner = CliRunner()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    result = runner.invoke(main, ["export", str(static_run), "--format", "onnx", "--out", str(taken)])
    assert result.exit_code == 2 and "taken: exists and is not an empty folder" in result.output
    out = tmp_path / "st"
    assert (
        runner.invoke(
            main, ["export", str(static_run), "--format", "sentence-transformers", "--out", str(out), "-q"]
        ).exit_code
        == 0
    )
    result = runner.invoke(main, ["export", str(static_run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = runner.invoke(
        main, ["export", str(static_run), "--format", "onnx", "--out", str(out), "--overwrite", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert read_json(out / MODEL_FILE)["encoder"]["path"] == "onnx" and not (out / "modules.json").exists()
    result = runner.invoke(
        main,
        [
            "export",
            str(static_run),
            "--format",
            "sentence-transformers",
            "--quantize",
            "int8",
            "--out",
            str(tmp_path / "q"),
        ],
    )
    assert result.exit_code == 2 and "--quantize int8 applies to --format onnx" in result.output
    assert not (tmp_path / "q").exists()
    features = Labelcon()
    features.encoder_ = MLPEncoder(input_dim=4, hidden_dim=8, output_dim=3)
    with pytest.raises(ExportError, match="text encoders"):
        export(features, tmp_path / "mlp", "onnx")


def test_a_pointer_may_not_lead_out_of_the_directory(static_run, tmp_path) -> None:
    out = export(static_run, tmp_path / "onnx", "onnx")
    pointer = read_json(out / MODEL_FILE)
    write_json(out / MODEL_FILE, {**pointer, "encoder": {"path": "../elsewhere", "format": "labelcon"}})
    with pytest.raises(ValueError, match="inside the model directory"):
        Labelcon.load(out)
