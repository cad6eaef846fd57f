"""The device: names resolved as on machines with and without GPUs, the precision each
device gets, everything that holds tensors following the device given (checked on
torch's ``meta`` device, which this machine has), checkpoints and saved models moving
between devices, and one process per GPU under torchrun."""

from __future__ import annotations

import dataclasses
import shutil
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from labelcon import Labelcon
from labelcon import device as device_module
from labelcon.cli import main
from labelcon.config import Config, ConfigError, ServeSettings
from labelcon.data import LabelSpace
from labelcon.device import DeviceError, Precision, choose_precision, resolve_device, training_processes
from labelcon.encoders import build_encoder, load_encoder
from labelcon.feed import ahead_for, prefetched
from labelcon.heads import EnsembleHead, build_head
from labelcon.heads.index import NearestNeighbors
from labelcon.objectives import build_objective
from labelcon.training import checkpoint as checkpoint_module
from labelcon.training import distributed
from labelcon.training import trainer as trainer_module
from labelcon.training.labels import batch_labels
from labelcon.training.settings import TrainingSettings
from labelcon.training.trainer import Trainer
from tests.helpers import FAST, TOPICS, interrupted_at, make_items, train_args

META = torch.device("meta")


def _machine(monkeypatch, gpus: int = 0, mps: bool = False, local_rank: int | None = None) -> None:
    """Make torch see ``gpus`` CUDA GPUs (and MPS or not); set torchrun's ``LOCAL_RANK``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(device_module, "mps_available", lambda: mps)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))


# ------------------------------------------------------------------ names, processes, backend
@pytest.mark.parametrize(
    "gpus, mps, local_rank, name, want",
    [
        (0, False, None, "auto", "cpu"),
        (0, True, None, "auto", "mps"),
        (2, True, None, "auto", "cuda:0"),
        (4, False, 3, "auto", "cuda:3"),
        (4, False, 1, "cuda", "cuda:1"),
        (4, False, 1, "cuda:2", "cuda:2"),
        (4, False, None, "cpu", "cpu"),
        (0, True, None, "mps", "mps"),
    ],
)
def test_device_names_resolve_on_each_kind_of_machine(monkeypatch, gpus, mps, local_rank, name, want) -> None:
    _machine(monkeypatch, gpus, mps, local_rank)
    assert resolve_device(name) == torch.device(want)


@pytest.mark.parametrize(
    "gpus, mps, local_rank, name, message",
    [
        (0, False, None, "cuda", "torch sees no CUDA GPU"),
        (2, False, None, "cuda:2", "this machine has 2 CUDA GPU"),
        (2, False, 3, "auto", "means cuda:3, but this machine has 2"),
        (0, False, None, "mps", "cannot use Apple's MPS"),
        (0, False, None, "gpu", "expected a device name (auto, cpu, cuda, cuda:N or mps)"),
    ],
)
def test_a_device_the_machine_lacks_is_one_clear_error(monkeypatch, gpus, mps, local_rank, name, message) -> None:
    _machine(monkeypatch, gpus, mps, local_rank)
    with pytest.raises(DeviceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_device(name)


def test_the_device_setting_is_checked_when_the_config_is_built() -> None:
    with pytest.raises(ConfigError, match="field 'device': .*expected a device name"):
        Config.build({"device": "gpu"})
    assert Config.build({"device": "cuda:1"}).device == "cuda:1"  # a GPU run's config loads on any machine
    assert Labelcon(device="cpu").get_params()["device"] == "cpu"


@pytest.mark.parametrize(
    "gpus, name, nproc, want",
    [
        (4, "auto", "auto", 4),
        (4, "cuda", "auto", 4),
        (4, "cuda:1", "auto", 1),
        (4, "cpu", "auto", 1),
        (0, "auto", "auto", 1),
        (4, "auto", 2, 2),
        (0, "cpu", 3, 3),
    ],
)
def test_nproc_auto_starts_one_process_per_gpu(monkeypatch, gpus, name, nproc, want) -> None:
    _machine(monkeypatch, gpus)
    assert training_processes(nproc, name) == want


def test_nproc_auto_trains_with_the_processes_torchrun_started(monkeypatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert TrainingSettings.from_config(Config()).nproc == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert TrainingSettings.from_config(Config()).nproc == 4
    assert TrainingSettings.from_config(Config(nproc=2)).nproc == 2


@pytest.mark.parametrize(
    "gpus, local_rank, name, want_device, want_backend",
    [
        (2, 1, "auto", "cuda:1", "nccl"),
        (2, 0, "cuda", "cuda:0", "nccl"),
        (0, 1, "auto", "cpu", "gloo"),
        (2, 1, "cpu", "cpu", "gloo"),
    ],
)
def test_under_torchrun_local_rank_picks_the_gpu_and_the_backend_follows(
    monkeypatch, gpus, local_rank, name, want_device, want_backend
) -> None:
    _machine(monkeypatch, gpus, local_rank=local_rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    joined, current = [], []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: joined.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    device = resolve_device(name)
    assert device == torch.device(want_device)
    assert distributed.init_from_env(device) is True
    assert joined == [want_backend]
    assert current == ([device] if want_backend == "nccl" else [])


# ------------------------------------------------------------------ precision
@pytest.mark.parametrize(
    "device_type, capability, cpu_bf16, setting, want",
    [
        ("cpu", None, True, "auto", (torch.bfloat16, False, False)),
        ("cpu", None, False, "auto", (None, False, False)),
        ("cpu", None, False, "bfloat16", (torch.bfloat16, False, False, torch.bfloat16)),
        ("cpu", None, True, "float32", (None, False, False)),
        ("cuda", (9, 0), False, "auto", (torch.bfloat16, False, True)),
        ("cuda", (8, 0), False, "auto", (torch.bfloat16, False, True)),
        ("cuda", (7, 5), False, "auto", (torch.float16, True, False)),
        ("cuda", (7, 0), False, "bfloat16", (torch.bfloat16, False, False, torch.bfloat16)),
        ("cuda", (8, 6), False, "bfloat16", (torch.bfloat16, False, True, torch.bfloat16)),
        ("cuda", (9, 0), False, "float32", (None, False, False)),
        ("mps", None, False, "auto", (None, False, False)),
        ("mps", None, False, "bfloat16", (torch.bfloat16, False, False, torch.bfloat16)),
    ],
)
def test_precision_per_device_capability_and_setting(device_type, capability, cpu_bf16, setting, want) -> None:
    assert choose_precision(setting, device_type, capability, cpu_bf16) == Precision(*want)


def test_the_gradient_scaler_leaves_the_update_unchanged(monkeypatch) -> None:
    """The float16 path's scaler multiplies the loss by 2^16 and divides the gradients by
    it before clipping: in float32 the run takes the same steps as without it."""
    texts, y = _toy()

    def run(scaled: bool) -> Trainer:
        monkeypatch.setattr(trainer_module, "precision_for", lambda setting, device: Precision(None, scaled, False))
        trainer = _trainer(texts, "supcon-jaccard", "cpu", epochs=1, mini_batch_size=8, max_grad_norm=0.5)
        assert trainer.scaler.is_enabled() is scaled
        trainer.fit(texts, y)
        return trainer

    plain, scaled = run(False), run(True)
    assert scaled.scaler.get_scale() >= 2.0**16
    for (name, a), (_, b) in zip(plain.encoder.state_dict().items(), scaled.encoder.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


# ------------------------------------------------------------------ every tensor follows the device
def _toy() -> tuple[list[str], object]:
    items = make_items(96, 0)
    space = LabelSpace.from_label_sets([item["labels"] for item in items])
    return [item["text"] for item in items], space.encode([item["labels"] for item in items])


def _trainer(texts, objective, device, run_dir=None, **settings) -> Trainer:
    config = Config(**{**FAST, "objective": objective, **settings})
    encoder = build_encoder("static", train_texts=texts, max_length=FAST["max_length"], seed=config.seed)
    return Trainer(
        encoder,
        build_objective(objective, temperature=0.1),
        dataclasses.replace(TrainingSettings.from_config(config), device=device),
        run_dir=run_dir,
        label_texts=sorted(TOPICS),
        show_progress=False,
    )


def _devices(module: torch.nn.Module) -> set[torch.device]:
    return {t.device for t in [*module.parameters(), *module.buffers()]}


def test_the_trainer_puts_encoder_momentum_encoder_and_queue_on_its_device() -> None:
    texts, y = _toy()
    trainer = _trainer(texts, "supcon-jaccard", META, queue_size=16)
    trainer._start(texts)
    assert trainer.device == META
    assert _devices(trainer.encoder) == _devices(trainer.momentum_encoder) == {META}
    assert trainer.queue.keys.device == META


def test_batches_are_prepared_on_the_cpu_and_moved_to_the_device() -> None:
    texts, y = _toy()
    rows = list(range(20))
    on_cpu, _ = _trainer(texts, "supcon-jaccard", "cpu", mini_batch_size=8)._prepare(texts, y, rows)
    assert on_cpu.items == texts[:20]  # the CPU keeps the sampler's order: its results stay as they were
    trainer = _trainer(texts, "supcon-jaccard", META, mini_batch_size=8)
    batch, labels = trainer._prepare(texts, y, rows)
    assert [len(chunk["input_ids"]) for chunk in batch.anchors] == [8, 8, 4]
    assert {t.device.type for chunk in batch.anchors for t in chunk.values()} == {"cpu"}
    assert not any(t.is_pinned() for chunk in batch.anchors for t in chunk.values())  # pinned only for CUDA
    order = sorted(rows, key=lambda row: len(texts[row]))  # elsewhere GradCache chunks hold texts of like length
    assert batch.items == [texts[row] for row in order]
    assert torch.equal(labels, batch_labels(y, order))


class DeviceSpy(torch.nn.Module):
    """An objective that records the device of every tensor it is given; its loss sums the
    embeddings (shapes only, so it runs on the meta device too)."""

    def __init__(self, needs_positives: bool, needs_label_embeddings: bool) -> None:
        super().__init__()
        self.needs_positives, self.needs_label_embeddings = needs_positives, needs_label_embeddings
        self.seen: dict[str, torch.device] = {}

    def sample_labels(self, labels, rng):
        return None, labels

    def forward(self, embeddings, labels=None, *, positives=None, label_embeddings=None, keys=None, key_labels=None):
        given = {"anchors": embeddings, "labels": labels, "positives": positives, "label embeddings": label_embeddings}
        self.seen.update({name: t.device for name, t in given.items() if t is not None})
        return sum(t.sum() for t in (embeddings, positives, label_embeddings) if t is not None)


@pytest.mark.parametrize("mini_batch_size", [None, 8])
@pytest.mark.parametrize("positives, label_embeddings", [(False, False), (True, False), (False, True)])
def test_a_step_computes_on_the_device_given(positives, label_embeddings, mini_batch_size) -> None:
    texts, y = _toy()
    spy = DeviceSpy(positives, label_embeddings)
    encoder = build_encoder("static", train_texts=texts, max_length=16, seed=0)
    config = Config(**{**FAST, "mini_batch_size": mini_batch_size})
    trainer = Trainer(
        encoder,
        spy,
        dataclasses.replace(TrainingSettings.from_config(config), device=META),
        label_texts=sorted(TOPICS),
        show_progress=False,
    )
    batch, labels = trainer._prepare(texts, y, list(range(16)))
    loss = trainer._loss(batch, labels)
    want = (
        {"anchors", "labels"}
        | ({"positives"} if positives else set())
        | ({"label embeddings"} if label_embeddings else set())
    )
    assert spy.seen == {name: META for name in want}
    assert loss.device == META
    assert {p.grad.device for p in encoder.parameters() if p.grad is not None} == {META}


def _interrupted_run(texts, y, run_dir, monkeypatch) -> None:
    """A CPU run with a queue, checkpointing every step, stopped in its third step."""
    with interrupted_at(monkeypatch, 3):
        _trainer(texts, "supcon-jaccard", "cpu", run_dir, queue_size=16, checkpoint_minutes=0).fit(texts, y)


@pytest.mark.filterwarnings("ignore:for .* copying from a non-meta parameter")  # meta holds no values
def test_a_checkpoint_resumes_on_another_device(tmp_path, monkeypatch) -> None:
    texts, y = _toy()
    _interrupted_run(texts, y, tmp_path, monkeypatch)
    trainer = _trainer(texts, "supcon-jaccard", META, tmp_path, queue_size=16, checkpoint_minutes=0)
    trainer._start(texts)
    optimizer = torch.optim.AdamW(trainer_module._param_groups(trainer.encoder, 0.01))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer._load_checkpoint(optimizer, scheduler)
    assert trainer.state.global_step == 2
    assert _devices(trainer.encoder) == _devices(trainer.momentum_encoder) == {META}
    assert trainer.queue.keys.device == trainer.queue.labels.device == META and len(trainer.queue) == 16
    moments = [value for state in optimizer.state.values() for value in state.values() if value.dim() > 0]
    assert moments and {value.device for value in moments} == {META}


def test_a_gpu_generator_state_in_a_checkpoint_is_left_out_on_the_cpu() -> None:
    views = np.random.default_rng(0)
    torch.manual_seed(123)
    saved = checkpoint_module.generator_state(views, torch.device("cpu"))
    want = torch.rand(3)
    saved["device"] = {"type": "cuda", "state": [torch.zeros(16, dtype=torch.uint8)]}  # as a GPU run writes it
    checkpoint_module.restore_generator_state(saved, views, torch.device("cpu"))
    assert torch.equal(torch.rand(3), want)


def test_encoders_are_built_and_loaded_on_the_device_given(tmp_path) -> None:
    texts, _ = _toy()
    assert _devices(build_encoder("static", train_texts=texts, max_length=16, device=META)) == {META}
    build_encoder("static", train_texts=texts, max_length=16, device="cpu").save(tmp_path / "encoder")
    assert _devices(load_encoder(tmp_path / "encoder")) == {torch.device("cpu")}  # the CPU unless told
    assert _devices(load_encoder(tmp_path / "encoder", device=META)) == {META}


def test_a_model_trained_on_one_device_loads_on_another(toy_data, tmp_path) -> None:
    model = Labelcon(**{**FAST, "device": "cpu"}).fit(
        toy_data["train"], toy_data["dev"], out_dir=tmp_path / "run", show_progress=False
    )
    texts = [item["text"] for item in make_items(12, 5)]
    loaded = Labelcon.load(tmp_path / "run", device="cpu")
    assert loaded.encoder_.device.type == "cpu" and loaded.config == model.config
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), rtol=1e-6, atol=1e-7)
    assert _devices(load_encoder(tmp_path / "run" / "model.1" / "encoder", device=META)) == {META}


def test_train_takes_the_device_flag(toy_data, tmp_path) -> None:
    assert "--device" in CliRunner().invoke(main, ["train", "--help"]).output
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        train_args(
            toy_data,
            out,
            "--encoder",
            "static",
            "--epochs",
            "1",
            "--max-length",
            "16",
            "--device",
            "cpu",
            "--quiet",
            test=False,
        ),
    )
    assert result.exit_code == 0, result.output
    assert "device: cpu" in (out / "config.yaml").read_text()


@pytest.fixture(scope="module")
def cpu_run(toy_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("device") / "run"
    Labelcon(**{**FAST, "device": "cpu"}).fit(toy_data["train"], toy_data["dev"], out_dir=run, show_progress=False)
    return run


def _record_load_devices(monkeypatch) -> list[str]:
    """The ``device`` of every ``Labelcon.load`` from now on, in order; the loads still happen."""
    asked: list[str] = []
    load = Labelcon.load.__func__
    monkeypatch.setattr(
        Labelcon, "load", classmethod(lambda cls, d, device="auto": asked.append(device) or load(cls, d, device))
    )
    return asked


@pytest.mark.parametrize(
    "command, args",
    [
        ("predict", ["some text"]),
        ("embed", ["--input", "TEST", "--output", "OUT"]),
        ("evaluate", ["--data", "TEST"]),
        ("index", ["--corpus", "TEST"]),
        ("search", ["some text"]),
    ],
)
def test_commands_that_load_a_model_take_the_device_flag(
    cpu_run, toy_data, tmp_path, monkeypatch, command, args
) -> None:
    run = tmp_path / "run"
    shutil.copytree(cpu_run, run)  # index writes into the run
    if command == "search":
        assert CliRunner().invoke(main, ["index", str(run), "--corpus", str(toy_data["train"]), "-q"]).exit_code == 0
    args = [str(toy_data["test"]) if a == "TEST" else str(tmp_path / "e.npy") if a == "OUT" else a for a in args]
    asked = _record_load_devices(monkeypatch)
    result = CliRunner().invoke(main, [command, str(run), *args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert asked == ["cpu"]
    result = CliRunner().invoke(main, [command, str(run), *args])
    assert result.exit_code == 0, result.output
    assert asked[-1] == "auto"  # a GPU when there is one, as training does
    result = CliRunner().invoke(main, [command, str(run), *args, "--device", "tpu"])
    assert result.exit_code == 2 and "--device" in result.output and "expected a device name" in result.output


def test_serve_loads_the_model_on_its_device_setting(cpu_run, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from labelcon.serve import create_app

    run = cpu_run
    assert ServeSettings().device == "auto" and "--device" in CliRunner().invoke(main, ["serve", "--help"]).output
    with pytest.raises(ValueError, match="expected a device name"):
        ServeSettings(device="tpu")
    asked = _record_load_devices(monkeypatch)
    with TestClient(create_app(run, ServeSettings(device="cpu"))) as client:
        assert client.post("/predict", json={"inputs": ["song album"]}).status_code == 200
    assert asked == ["cpu"]


# ------------------------------------------------------------------ the kNN search on the device
def test_the_torch_search_finds_the_numpy_neighbours() -> None:
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)
    plain = NearestNeighbors(x, block_elements=4000)  # chunks of 100 items: the running top k is merged
    on_torch = NearestNeighbors(x, block_elements=4000).to(torch.device("cpu"))
    for queries, exclude_self in [(q, False), (x, True)]:
        want, got = (
            plain.search(queries, 7, exclude_self=exclude_self),
            on_torch.search(queries, 7, exclude_self=exclude_self),
        )
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_the_knn_head_searches_on_the_device_and_keeps_numpy_on_the_cpu() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 8)).astype(np.float32), (rng.random((50, 3)) < 0.4).astype(np.float32)
    knn = build_head("knn", k=5).fit(x, y)
    assert knn.to(torch.device("cpu")).index_._items is None  # numpy, as before
    both = EnsembleHead.of([build_head("linear").fit(x, y), knn]).to(META)
    assert both.heads_[1].index_._items.device == META
    assert build_head("knn", k=5).to(META).fit(x, y).index_._items.device == META


# ------------------------------------------------------------------ the prefetch thread
def test_prefetched_items_come_in_order_and_errors_at_their_place() -> None:
    def items():
        yield from range(5)
        raise RuntimeError("tokenizer failed")

    seen = []
    with pytest.raises(RuntimeError, match="tokenizer failed"), prefetched(items()) as ready:
        seen.extend(ready)
    assert seen == [0, 1, 2, 3, 4]


def test_batches_are_made_ahead_for_accelerators_only() -> None:
    assert ahead_for(torch.device("cpu")) == 0 and ahead_for(torch.device("cuda", 0)) == ahead_for(META) > 0
    with prefetched(iter(range(3)), depth=0) as ready:
        assert list(ready) == [0, 1, 2]


def test_leaving_early_stops_the_prefetch_thread() -> None:
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i

    with prefetched(items(), depth=2) as ready:
        assert next(ready) == 0
    assert not any(t.name == "labelcon-prefetch" for t in threading.enumerate())
    assert len(made) <= 4  # at most depth ahead of the reader, and one in hand


def test_tf32_matmuls_is_scoped_and_restores_the_process_settings() -> None:
    from labelcon.device import tf32_matmuls

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for enabled in (True, False):
        with pytest.raises(RuntimeError), tf32_matmuls(enabled):
            assert torch.backends.cuda.matmul.allow_tf32 is enabled and torch.backends.cudnn.allow_tf32 is enabled
            raise RuntimeError("the block fails")
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize("tf32", [True, False])
def test_training_turns_tf32_on_only_inside_its_steps(monkeypatch, tf32: bool) -> None:
    """TF32 as the precision says inside each step's forward and backward; the process's
    settings (which float32 embedding runs under) untouched before, between and after."""
    items = make_items(48, 0)
    texts = [item["text"] for item in items]
    y = LabelSpace.from_label_sets([item["labels"] for item in items]).encode([item["labels"] for item in items])
    monkeypatch.setattr(trainer_module, "precision_for", lambda setting, device: Precision(None, False, tf32))
    process = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    seen: list[tuple[bool, bool]] = []
    original = Trainer._loss

    def loss(self, *batch):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return original(self, *batch)

    monkeypatch.setattr(Trainer, "_loss", loss)
    trainer = _trainer(texts, "supcon-jaccard", "cpu", epochs=1)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == process
    trainer.fit(texts, y)
    assert seen and set(seen) == {(tf32, tf32)}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == process
