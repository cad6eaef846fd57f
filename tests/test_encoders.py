"""StaticEncoder, MLPEncoder, build_encoder and load_encoder without any pretrained model."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
import torch

from labelcon.encoders import Encoder, MLPEncoder, StaticEncoder, build_encoder, load_encoder, offline, train_tokenizer
from labelcon.encoders.static import sif_weights

CORPUS = [
    "The team scored a late goal to win the match",
    "Fans cheered as the striker scored again",
    "She baked bread and a spicy curry for dinner",
    "This recipe needs garlic, onions and fresh basil",
    "The band played their new album at the concert",
    "He plays guitar and writes song lyrics",
] * 5


@pytest.fixture(scope="module")
def static() -> StaticEncoder:
    return StaticEncoder.from_texts(CORPUS, vocab_size=300, dim=32, max_length=16, projection_dim=8, seed=1)


def test_tokenizer_is_trained_on_the_texts_and_normalises():
    tokenizer = train_tokenizer(CORPUS, vocab_size=300)
    vocab = tokenizer.get_vocab()
    assert {"▁guitar", "▁curry", "▁striker"} <= set(vocab)
    assert tokenizer.id_to_token(0) == "[PAD]" and tokenizer.id_to_token(1) == "[UNK]"
    assert tokenizer.encode("GUITAR Curry").ids == tokenizer.encode("guitar curry").ids
    assert train_tokenizer(CORPUS, vocab_size=300).get_vocab() == vocab  # deterministic
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([])


def test_static_tokenize_pads_with_zero_and_truncates(static):
    batch = static.tokenize(["guitar", "word " * 100, ""])
    ids = batch["input_ids"]
    assert ids.dtype == torch.long and ids.shape == (3, 16)
    assert (ids[0, 1:] == 0).all() and (ids[1] != 0).all()
    unknown = static.tokenizer.token_to_id("[UNK]")
    assert ids[2, 0] == unknown and (ids[2, 1:] == 0).all()  # a text without tokens is the unknown token
    assert static.tokenize(["", " "])["input_ids"].tolist() == [[unknown], [unknown]]
    with pytest.raises(TypeError, match="item 1 is int"):
        static.tokenize(["fine", 3])


def test_static_mean_excludes_padding(static):
    static.eval()
    one = static({"input_ids": torch.tensor([[5, 7]])})
    padded = static({"input_ids": torch.tensor([[5, 7, 0, 0, 0]])})
    torch.testing.assert_close(one, padded)
    z = static.encode(["", "guitar song"])
    assert np.isfinite(z).all() and static.dim == 8 and z.shape == (2, 8)


def test_static_texts_without_known_tokens_embed_with_unit_norm():
    encoder = StaticEncoder.from_texts(CORPUS, vocab_size=300, dim=16)  # no projection (its bias is never zero)
    z = encoder.encode(["", "zzqx unknownword", "   ", "日本語", "guitar"])
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(z[0], z[2])  # both are the unknown token alone


def test_static_encoder_needs_an_unknown_token():
    from tokenizers import Tokenizer, models

    with pytest.raises(ValueError, match=r"no '\[UNK\]' token"):
        StaticEncoder(Tokenizer(models.WordLevel({"[PAD]": 0, "a": 1})))


def test_static_gradients_flow_and_padding_row_stays_zero(static):
    static.train()
    static.zero_grad()
    static(static.tokenize(["the band played guitar", "spicy curry"])).pow(2).sum().backward()
    grad = static.embedding.weight.grad
    assert grad[0].abs().sum() == 0 and grad.abs().sum() > 0
    assert static.projection.weight.grad.abs().sum() > 0
    assert static.embedding.weight[0].abs().sum() == 0
    static.zero_grad(set_to_none=True)


def test_seed_controls_initialisation():
    a = StaticEncoder.from_texts(CORPUS, vocab_size=300, dim=16, seed=0)
    b = StaticEncoder.from_texts(CORPUS, vocab_size=300, dim=16, seed=0)
    c = StaticEncoder.from_texts(CORPUS, vocab_size=300, dim=16, seed=1)
    assert torch.equal(a.embedding.weight, b.embedding.weight)
    assert not torch.equal(a.embedding.weight, c.embedding.weight)
    assert a.embedding.weight[1:].std() < 0.05


def test_encode_keeps_order_restores_mode_and_validates(static):
    texts = ["spicy curry", "the band played a new album at the concert tonight", "goal", "bread"]
    static.train()
    together = static.encode(texts, batch_size=3)
    assert static.training
    one_by_one = np.stack([static.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert static.encode([]).shape == (0, 8)
    assert static.encode(texts, normalize=False).dtype == np.float32
    with pytest.raises(TypeError, match="single str"):
        static.encode("one text")
    with pytest.raises(ValueError, match="batch_size"):
        static.encode(texts, batch_size=0)


def test_encode_shows_progress(static, capsys):
    static.encode(CORPUS, batch_size=8, show_progress=True)
    assert "encode" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make, items",
    [
        (lambda: StaticEncoder.from_texts(CORPUS, vocab_size=300, dim=16, projection_dim=4), CORPUS[:6]),
        (lambda: StaticEncoder.from_texts(CORPUS, vocab_size=300, dim=16), CORPUS[:6]),
        (lambda: MLPEncoder(input_dim=5, hidden_dim=7, output_dim=3, seed=2), np.arange(30.0).reshape(6, 5)),
    ],
)
def test_save_load_round_trip(tmp_path, make, items):
    encoder = make()
    with torch.no_grad():  # move away from the initialisation so loading must restore trained weights
        for parameter in encoder.parameters():
            parameter.add_(0.01)
    before = encoder.encode(items)
    encoder.save(tmp_path / "enc")
    encoder.save(tmp_path / "enc")  # saving over an existing save is fine
    loaded = load_encoder(tmp_path / "enc")
    assert type(loaded) is type(encoder) and not loaded.training
    np.testing.assert_array_equal(loaded.encode(items), before)
    meta = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert meta["type"] == encoder.encoder_type and meta["dim"] == encoder.dim
    assert not [p.name for p in (tmp_path / "enc").iterdir() if p.name.startswith(".")]


def test_load_encoder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not hold a saved labelcon encoder"):
        load_encoder(tmp_path)
    (tmp_path / "encoder.json").write_text('{"type": "nope", "config": {}}')
    with pytest.raises(ValueError, match="unknown encoder type 'nope'"):
        load_encoder(tmp_path)


def test_sif_weights_favour_rare_tokens():
    tokenizer = train_tokenizer(CORPUS, vocab_size=300)
    weights = sif_weights(tokenizer, CORPUS)
    vocab = tokenizer.get_vocab()
    assert weights[vocab["▁the"]] < weights[vocab["▁guitar"]] <= 1.0


def test_mlp_tokenize_validates_and_dropout_makes_views():
    encoder = MLPEncoder(input_dim=4, hidden_dim=16, output_dim=6, dropout=0.5)
    batch = encoder.tokenize([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert batch["features"].dtype == torch.float32 and batch["features"].shape == (2, 4)
    assert not torch.equal(encoder(batch), encoder(batch))  # train mode: dropout differs
    encoder.eval()
    assert torch.equal(encoder(batch), encoder(batch))
    with pytest.raises(ValueError, match=r"shape \[batch, 4\], got shape \[2, 3\]"):
        encoder.tokenize([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="numeric feature rows"):
        encoder.encode(["a text"])
    with pytest.raises(ValueError, match="dropout"):
        MLPEncoder(input_dim=4, dropout=1.0)


def test_build_encoder_specs_and_errors():
    static = build_encoder("static", train_texts=CORPUS, max_length=8, projection_dim=4, vocab_size=300, dim=16)
    assert isinstance(static, StaticEncoder) and static.dim == 4 and static.max_length == 8
    features = np.random.default_rng(0).normal(size=(10, 12))
    mlp = build_encoder("mlp", train_texts=features, projection_dim=5)
    assert isinstance(mlp, MLPEncoder) and mlp.input_dim == 12 and mlp.dim == 5
    assert isinstance(mlp, Encoder) and build_encoder("mlp", input_dim=3).dim == 256
    with pytest.raises(ValueError, match="train_texts"):
        build_encoder("static")
    with pytest.raises(ValueError, match="input_dim"):
        build_encoder("mlp")
    with pytest.raises(ValueError, match="conflicting"):
        build_encoder("mlp", input_dim=3, output_dim=7, projection_dim=5)
    with pytest.raises(ValueError, match="non-empty str"):
        build_encoder("  ")
    with pytest.raises(TypeError):
        build_encoder("static", train_texts=CORPUS, no_such_option=1)


def test_auto_max_length_follows_the_texts_lengths() -> None:
    from labelcon.encoders import resolve_max_length

    assert resolve_max_length(48, ["anything"]) == 48
    assert resolve_max_length("auto", ["a short text"] * 50) == 64
    assert resolve_max_length("auto", [" ".join(["word"] * 70)] * 50) == 128  # 93 tokens
    assert resolve_max_length("auto", [" ".join(["word"] * 1000)] * 50) == 128  # CPU cost: see the docstring
    assert resolve_max_length("auto", np.zeros((5, 3), dtype=np.float32)) == 64  # feature rows
    mixed = ["short"] * 85 + [" ".join(["word"] * 150)] * 15  # the 90th percentile is long
    assert resolve_max_length("auto", mixed) == 128


def test_auto_encode_length_reads_long_texts_further_than_training() -> None:
    from labelcon.encoders import resolve_encode_length

    long_texts = [" ".join(["word"] * 150)] * 50  # 197 tokens
    assert resolve_encode_length("auto", long_texts, 128) == 256
    assert resolve_encode_length("auto", long_texts, 512) == 512  # never below the training length
    assert resolve_encode_length("auto", ["a short text"] * 50, 64) == 64
    assert resolve_encode_length(96, long_texts, 128) == 96
    assert resolve_encode_length("auto", np.zeros((5, 3), dtype=np.float32), 64) is None  # feature rows


def test_static_encoder_truncates_to_a_max_length_changed_after_construction(static) -> None:
    text = " ".join(CORPUS[:6])
    first = static.tokenize([text])["input_ids"]
    assert first.shape[1] == 16
    static.max_length = 4
    try:
        assert static.tokenize([text])["input_ids"].tolist() == first[:, :4].tolist()
    finally:
        static.max_length = 16


@pytest.mark.parametrize("umask, file_mode", [(0o022, 0o644), (0o027, 0o640)])
def test_saved_files_follow_the_umask(static, tmp_path, umask, file_mode):
    import os

    previous = os.umask(umask)
    try:
        static.save(tmp_path / "enc")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "enc").iterdir()}
    assert modes == {"model.safetensors": file_mode, "tokenizer.json": file_mode, "encoder.json": file_mode}


def test_offline_model_cache_follows_the_umask(tmp_path, monkeypatch):
    import os
    import zipfile

    from labelcon.encoders import offline

    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", "{}")
    monkeypatch.setattr(offline, "part_files", lambda name: [archive])
    monkeypatch.setenv("LABELCON_CACHE", str(tmp_path / "cache"))
    previous = os.umask(0o022)
    try:
        folder = offline.shipped_path("minilm")
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder / "config.json").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in folder.parent.iterdir()) == [offline.SHIPPED["minilm"].folder]


# ------------------------------------------------------------------ Hugging Face model folders
def _tiny_bert_folder(path, **config_extra):
    """A tiny BERT model folder (config, weights, tokenizer), written without any download."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "sat"]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=8,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    BertModel(config).save_pretrained(path)
    BertTokenizer(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    if config_extra:
        saved = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**saved, **config_extra}))
    return path


def test_model_folder_with_custom_code_is_refused_unless_allowed(tmp_path):
    from labelcon.encoders.transformer import RemoteCodeError

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "labelcon-test-custom",
                "auto_map": {"AutoConfig": "custom_model.CustomConfig", "AutoModel": "custom_model.CustomModel"},
            }
        )
    )
    for make in (lambda: build_encoder(str(folder)), lambda: build_encoder(str(folder), trust_remote_code=False)):
        with pytest.raises(RemoteCodeError) as caught:
            make()
        message = str(caught.value)
        assert "\n" not in message and repr(str(folder)) in message
        assert 'encoder_params={"trust_remote_code": True}' in message
    bert = _tiny_bert_folder(tmp_path / "bert", auto_map={"AutoModel": "custom_model.CustomModel"})
    with pytest.raises(RemoteCodeError):
        build_encoder(str(bert))


def test_every_from_pretrained_is_told_not_to_run_remote_code(tmp_path, monkeypatch):
    import transformers

    import labelcon.encoders.transformer as module

    folder = _tiny_bert_folder(tmp_path / "bert")
    seen = []
    for auto in ("AutoConfig", "AutoTokenizer", "AutoModel"):
        original = getattr(transformers, auto).from_pretrained

        def spy(*args, _auto=auto, _original=original, **kwargs):
            seen.append((_auto, kwargs.get("trust_remote_code")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(getattr(module, auto), "from_pretrained", spy)
    encoder = build_encoder(str(folder), max_length=8)
    assert {auto for auto, _ in seen} == {"AutoConfig", "AutoTokenizer", "AutoModel"}
    assert all(trust is False for _, trust in seen)  # never None, which would make transformers ask
    assert encoder.config()["trust_remote_code"] is False


def test_transformer_load_and_save_print_no_progress_bars(tmp_path, capfd):
    from transformers.utils import logging as transformers_logging

    folder = _tiny_bert_folder(tmp_path / "bert")
    settings = transformers_logging.is_progress_bar_enabled(), transformers_logging.get_verbosity()
    capfd.readouterr()
    encoder = build_encoder(str(folder), max_length=8)
    encoder.save(tmp_path / "saved")
    loaded = load_encoder(tmp_path / "saved")
    out, err = capfd.readouterr()
    assert "Loading weights" not in err + out and "Writing model shards" not in err + out
    np.testing.assert_array_equal(loaded.encode(["a cat sat"]), encoder.encode(["a cat sat"]))
    assert (transformers_logging.is_progress_bar_enabled(), transformers_logging.get_verbosity()) == settings


def test_unknown_name_fails_at_once_when_the_hub_cannot_be_reached(monkeypatch):
    import time

    import huggingface_hub.constants

    import labelcon.encoders.transformer as module

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(module.HfApi, "model_info", unreachable)
    started = time.monotonic()
    with pytest.raises(module.EncoderNotFoundError) as caught:
        build_encoder("no-such-org/no-such-model-xyz")
    assert time.monotonic() - started < 10  # no retries
    message = str(caught.value)
    assert "\n" not in message and "'no-such-org/no-such-model-xyz'" in message
    assert "neither a local model folder nor in the Hugging Face cache" in message and "cannot be reached" in message


def test_a_hub_name_is_loaded_from_the_hub_when_it_answers(monkeypatch):
    import huggingface_hub.constants

    import labelcon.encoders.transformer as module

    asked = []

    def config_from_the_hub(source, **kwargs):
        asked.append((source, kwargs["local_files_only"]))
        raise OSError("stop here: no download in tests")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(module.HfApi, "model_info", lambda *args, **kwargs: object())
    monkeypatch.setattr(module.PretrainedConfig, "get_config_dict", config_from_the_hub)
    with pytest.raises(OSError) as caught:
        build_encoder("some-org/some-model")
    assert asked == [("some-org/some-model", False)]
    assert not isinstance(caught.value, module.EncoderNotFoundError)


def test_unknown_name_with_hf_hub_offline_is_one_line_from_the_cli(toy_data, tmp_path):
    import os
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "labelcon",
        "train",
        "--train",
        str(toy_data["train"]),
        "--out",
        str(tmp_path / "run"),
        "--encoder",
        "no-such-org/no-such-model-xyz",
        "--quiet",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: encoder 'no-such-org/no-such-model-xyz'")
    assert (
        "neither a local model folder nor in the Hugging Face cache" in done.stderr and "HF_HUB_OFFLINE" in done.stderr
    )


def _split_archive(tmp_path, files: dict[str, str], pieces: int) -> list:
    """A zip of ``files`` under one top-level folder, cut into ``pieces`` files."""
    import zipfile

    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"model-folder/{name}", text)
    data = whole.read_bytes()
    cut = [len(data) * i // pieces for i in range(pieces + 1)]
    parts = []
    for i in range(pieces):
        part = tmp_path / f"whole.zip.00{i + 1}"
        part.write_bytes(data[cut[i] : cut[i + 1]])
        parts.append(part)
    return parts, data


def test_a_split_shipped_model_is_joined_checked_and_extracted_once(tmp_path, monkeypatch):
    import dataclasses
    import hashlib

    parts, data = _split_archive(tmp_path, {"config.json": "{}", "vocab.txt": "a\nb\n"}, 3)
    model = dataclasses.replace(offline.SHIPPED["mpnet"], size=len(data), sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(offline.SHIPPED, "mpnet", model)
    monkeypatch.setattr(offline, "part_files", lambda name: parts)
    monkeypatch.setenv("LABELCON_CACHE", str(tmp_path / "cache"))
    folder = offline.shipped_path("mpnet")
    assert folder == tmp_path / "cache" / "models" / model.folder
    assert (folder / "vocab.txt").read_text() == "a\nb\n" and (
        folder / "config.json"
    ).is_file()  # the top folder unwrapped
    assert sorted(p.name for p in folder.parent.iterdir()) == [model.folder]  # no joined zip or staging left
    parts[0].write_bytes(b"changed")  # extracted already: the pieces are not read again
    assert offline.shipped_path("mpnet") == folder


def test_a_shipped_model_with_a_bad_or_missing_piece_says_which(tmp_path, monkeypatch):
    import dataclasses

    parts, data = _split_archive(tmp_path, {"config.json": "{}"}, 2)
    monkeypatch.setitem(offline.SHIPPED, "mpnet", dataclasses.replace(offline.SHIPPED["mpnet"], size=len(data) + 1))
    monkeypatch.setattr(offline, "part_files", lambda name: parts)
    monkeypatch.setenv("LABELCON_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        offline.ShippedModelError, match=r"join into \d+ bytes .* reinstall them: pip install 'labelcon\[mpnet\]'"
    ):
        offline.shipped_path("mpnet")
    assert not (tmp_path / "cache" / "models" / "all-mpnet-base-v2").exists()
    monkeypatch.undo()
    missing = offline.ShippedModel(
        "x", (("labelcon-no-such-package", "x.zip"),), "pip install labelcon-no-such-package"
    )
    monkeypatch.setitem(offline.SHIPPED, "nothing", missing)
    with pytest.raises(offline.ShippedModelError, match="needs the package labelcon-no-such-package .* not installed"):
        offline.part_files("nothing")


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not all(_installed(d) for d, _ in offline.SHIPPED["mpnet"].parts), reason="labelcon[mpnet] is not installed"
)
def test_mpnet_loads_from_its_packages_and_embeds(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELCON_CACHE", str(tmp_path / "cache"))
    encoder = build_encoder("mpnet", max_length=32)
    vectors = encoder.encode(["a multi-label text", "another one"])
    assert vectors.shape == (2, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)


def test_embedding_batches_follow_the_device() -> None:
    from labelcon.encoders.base import encode_batch_size

    assert encode_batch_size(torch.device("cpu")) == 128
    assert encode_batch_size(torch.device("mps")) == 256


def test_rows_held_on_an_accelerator_land_at_their_indices(monkeypatch) -> None:
    from labelcon.encoders import base

    out = np.zeros((6, 2), dtype=np.float32)
    held = base._DeviceRows(out, torch.device("cuda"))  # tensors on the CPU stand in for the device's
    monkeypatch.setattr(base, "HELD_BYTES", 3 * 2 * 4)  # three rows wait, then one copy
    held.add(np.array([4, 0]), torch.tensor([[4.0, 4], [0, 0]]))
    assert not out.any()  # still held
    held.add(np.array([5]), torch.tensor([[5.0, 5]]))
    assert out[[4, 0, 5]].tolist() == [[4, 4], [0, 0], [5, 5]] and not held.rows  # copied once the bytes were reached
    held.add(np.array([1, 3]), torch.tensor([[1.0, 1], [3, 3]]))
    held.flush()
    assert out[:, 0].tolist() == [0, 1, 0, 3, 4, 5]
