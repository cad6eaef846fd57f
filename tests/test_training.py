"""The training loop: GradCache equals the full-batch gradient; a momentum queue of labelled keys
learns, keeps each key with its labels and resumes exactly."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from transformers import BertConfig, BertModel

from labelcon.config import Config
from labelcon.data import LabelSpace
from labelcon.encoders import build_encoder
from labelcon.objectives import build_objective, label_contrast
from labelcon.objectives.label_contrast import sample_label_columns
from labelcon.sampling import LabelAwareBatchSampler
from labelcon.training.gradcache import cached_backward
from labelcon.training.labels import batch_labels
from labelcon.training.schedule import linear_warmup_decay
from labelcon.training.settings import TrainingSettings
from labelcon.training.trainer import Trainer
from labelcon.views import make_view
from tests.helpers import FAST, FILLER, TOPICS, interrupted_at, make_items

LABELS = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]] * 3, dtype=torch.float32)


def _tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.2,
        attention_probs_dropout_prob=0.2,
    )
    return BertModel(config)


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (12, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[::3, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _embed(model: BertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def _loss(z: torch.Tensor) -> torch.Tensor:
    return build_objective("supcon-jaccard", temperature=0.1)(z, LABELS)


def _chunks(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    n = batch["input_ids"].shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Equal to 1e-5 relative; entries that vanish mathematically (attention key biases,
    ~1e-12) are judged against the largest gradient of the model."""
    assert got.keys() == want.keys()
    scale = max(g.abs().max().item() for g in want.values())
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-6 * scale), name


@pytest.mark.parametrize("size", [1, 5, 12])
def test_gradcache_equals_full_batch_gradient(size: int) -> None:
    model = _tiny_bert().eval()  # no dropout: the plain full batch is the reference
    batch = _inputs()
    full = _loss(_embed(model, batch))
    full.backward()
    want = _grads(model)
    cached = cached_backward(lambda b: _embed(model, b), [_chunks(batch, size)], _loss)
    assert torch.allclose(cached, full.detach(), rtol=1e-6)
    _assert_close(_grads(model), want)


def test_gradcache_replays_dropout_masks() -> None:
    model = _tiny_bert().train()
    batch = _inputs()
    # reference: the same chunked forward, kept in one graph, so dropout draws the same masks
    torch.manual_seed(7)
    z = torch.cat([_embed(model, chunk) for chunk in _chunks(batch, 4)])
    reference = _loss(z)
    reference.backward()
    want = _grads(model)
    torch.manual_seed(7)
    cached = cached_backward(lambda b: _embed(model, b), [_chunks(batch, 4)], _loss)
    assert torch.allclose(cached, reference.detach(), rtol=1e-6)
    _assert_close(_grads(model), want)


def test_gradcache_with_two_streams() -> None:
    model = _tiny_bert().eval()
    batch = _inputs()
    info_nce = build_objective("simcse", temperature=0.05)
    other = {k: v.flip(1) if k == "input_ids" else v for k, v in batch.items()}
    full = info_nce(_embed(model, batch), positives=_embed(model, other))
    full.backward()
    want = _grads(model)
    loss = lambda a, p: info_nce(a, positives=p)  # noqa: E731
    cached_backward(lambda b: _embed(model, b), [_chunks(batch, 5), _chunks(other, 5)], loss)
    _assert_close(_grads(model), want)


def test_linear_warmup_decay_shape() -> None:
    factor = linear_warmup_decay(100, 0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == 0.0


# ------------------------------------------------------------------ momentum queue
def _toy() -> tuple[list[str], sp.csr_matrix]:
    items = make_items(160, 0)
    space = LabelSpace.from_label_sets([item["labels"] for item in items])
    return [item["text"] for item in items], space.encode([item["labels"] for item in items])


def _queue_trainer(texts: list[str], objective: str, run_dir=None, **settings) -> Trainer:
    config = Config(**{**FAST, "objective": objective, "queue_size": 48, "momentum": 0.9, **settings})
    encoder = build_encoder("static", train_texts=texts, max_length=FAST["max_length"], seed=config.seed)
    view = make_view("word_deletion", p=0.3) if objective == "simcse" else None
    return Trainer(
        encoder,
        build_objective(objective, temperature=0.1),
        TrainingSettings.from_config(config),
        run_dir=run_dir,
        view=view,
        show_progress=False,
    )


def _fit_to_labels(encoder, texts: list[str], y: sp.csr_matrix) -> float:
    """SupCon-Jaccard of all items as one batch (no queue): low when the space follows the labels."""
    z = torch.from_numpy(encoder.encode(texts))
    return build_objective("supcon-jaccard", temperature=0.1)(z, torch.from_numpy(y.toarray()).float()).item()


def _fit_to_views(encoder, texts: list[str]) -> float:
    """InfoNCE of all items against word-deletion views of them: low when views find their text."""
    rng = np.random.default_rng(0)
    views = [make_view("word_deletion", p=0.3)(text, rng) for text in texts]
    anchors, positives = (torch.from_numpy(encoder.encode(t)) for t in (texts, views))
    return build_objective("simcse", temperature=0.1)(anchors, positives=positives).item()


@pytest.mark.parametrize("objective", ["supcon-jaccard", "mulsupcon", "mulsupcon-moco", "simcse"])
def test_training_with_a_momentum_queue_learns(objective: str) -> None:
    texts, y = _toy()
    trainer = _queue_trainer(texts, objective, epochs=3)
    measure = _fit_to_views if objective == "simcse" else lambda enc, t: _fit_to_labels(enc, t, y)
    before = measure(trainer.encoder, texts)
    state = trainer.fit(texts, y)
    assert len(trainer.queue) == 48
    assert state.history[-1]["loss"] < state.history[0]["loss"]
    assert measure(trainer.encoder, texts) < 0.95 * before
    moved = [not torch.equal(a, b) for a, b in zip(trainer.encoder.parameters(), trainer.momentum_encoder.parameters())]
    assert any(moved)  # the key encoder trails the encoder


def test_queue_holds_each_key_with_its_own_labels() -> None:
    texts, y = _toy()
    assert len(set(texts)) == len(texts)
    trainer = _queue_trainer(texts, "supcon-jaccard", epochs=1, momentum=1.0)  # m = 1: keys from the initial encoder
    initial = torch.from_numpy(copy.deepcopy(trainer.encoder).encode(texts, normalize=False))
    trainer.fit(texts, y)
    keys, labels = trainer.queue.keys, trainer.queue.labels
    source = torch.cdist(keys, initial).argmin(dim=1)
    torch.testing.assert_close(keys, initial[source], rtol=1e-5, atol=1e-6)
    assert torch.equal(labels, torch.from_numpy(y[source.numpy()].toarray().astype(bool)))
    sampler = LabelAwareBatchSampler(y, FAST["batch_size"], seed=trainer.config.seed, drop_last=True)
    seen = [row for batch in sampler for row in batch]
    assert sorted(source.tolist()) == sorted(seen[-48:])  # the last 48 items the trainer saw


def _straight_and_resumed(make_trainer, texts, y, tmp_path, monkeypatch) -> tuple[Trainer, Trainer]:
    """Two fitted trainers: one run straight through, one interrupted at its 4th step
    (checkpointing every step) and resumed from the checkpoint."""
    straight = make_trainer(tmp_path / "a")
    straight.fit(texts, y)
    with interrupted_at(monkeypatch, 4):
        make_trainer(tmp_path / "b").fit(texts, y)
    resumed = make_trainer(tmp_path / "b")
    resumed.fit(texts, y, resume=True)
    return straight, resumed


def test_interrupted_run_with_a_queue_resumes_exactly(tmp_path, monkeypatch) -> None:
    texts, y = _toy()
    straight, resumed = _straight_and_resumed(
        lambda run_dir: _queue_trainer(texts, "supcon-jaccard", run_dir, checkpoint_minutes=0),
        texts,
        y,
        tmp_path,
        monkeypatch,
    )

    for a, b in [(straight.encoder, resumed.encoder), (straight.momentum_encoder, resumed.momentum_encoder)]:
        for (name, x), (_, z) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, z), name
    assert torch.equal(straight.queue.keys, resumed.queue.keys)
    assert torch.equal(straight.queue.labels, resumed.queue.labels)
    assert [h["loss"] for h in resumed.state.history] == [h["loss"] for h in straight.state.history]


def test_queue_with_label_texts_objective_is_refused() -> None:
    with pytest.raises(ValueError, match="takes no extra keys"):
        Trainer(
            torch.nn.Linear(2, 2),
            build_objective("label_contrast"),
            TrainingSettings.from_config(Config(queue_size=8)),
            label_texts=["a"],
        )


def test_warmup_decay_follows_the_time_budget_when_it_runs_ahead() -> None:
    used = {"fraction": 0.0}
    factor = linear_warmup_decay(100, 0.1, lambda: used["fraction"])
    assert factor(55) == pytest.approx(0.5)  # steps ahead of time: step-based
    used["fraction"] = 0.9
    assert factor(55) == pytest.approx(10 / 90)  # time ahead of steps: decay by time
    used["fraction"] = 1.5
    assert factor(55) == 0.0


def test_time_budget_stops_training_and_skips_the_pointless_evaluation(toy_data) -> None:
    from labelcon import Labelcon
    from tests.helpers import FAST

    model = Labelcon(**{**FAST, "epochs": 50, "max_time_minutes": 1e-9}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    assert len(model.history_) == 1
    assert model.history_[0]["step"] < 5
    assert "dev" not in model.history_[0]  # one candidate only: nothing to choose between
    assert model.metrics_["dev"]["n_items"] == 60


def test_no_dev_check_when_the_budget_ends_the_run_within_the_next_epoch(toy_data, monkeypatch) -> None:
    import itertools

    import labelcon.training.trainer as trainer_module
    from labelcon import Labelcon
    from tests.helpers import FAST

    plain = Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    assert "dev" in plain.history_[0]  # without a budget, the first epoch is checked
    steps = plain.history_[0]["step"]
    ticks = itertools.count()  # a clock that moves one second per reading: ~4 per step
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: float(next(ticks)))
    budget_seconds = 6 * steps  # about 1.5 epochs at ~4 readings per step
    model = Labelcon(**{**FAST, "epochs": 3, "max_time_minutes": budget_seconds / 60}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    assert [record["epoch"] for record in model.history_] == [1, 2]  # cut inside epoch 2
    assert steps < model.history_[1]["step"] < 2 * steps
    assert not any("dev" in record for record in model.history_)


def test_small_data_repeats_passes_until_min_steps_and_evaluates_once_per_epoch(toy_data) -> None:
    from labelcon import Labelcon
    from tests.helpers import FAST

    plain = Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    steps_per_pass = plain.history_[0]["step"]
    model = Labelcon(**{**FAST, "min_steps": 5 * steps_per_pass}).fit(
        toy_data["train"], toy_data["dev"], show_progress=False
    )
    assert [record["epoch"] for record in model.history_] == [1, 2]  # one dev check per epoch
    first, last = (record["step"] for record in model.history_)  # 3 passes per epoch; a pass's
    assert 2.8 * steps_per_pass <= first <= 3.2 * steps_per_pass  # batch count varies by a step or two
    assert 5.6 * steps_per_pass <= last <= 6.4 * steps_per_pass


@pytest.mark.parametrize(
    "budget_minutes, dev_scores, min_steps, epochs_run",
    [
        (60.0, "rising", 0, 10),  # auto with a budget: on while dev improves, up to MAX_AUTO_EPOCHS
        # ... and when it does not, before half the budget is spent, stopped by twice --patience (2)
        # epochs without progress, after one more epoch whose learning rate decays to 0 (stop_now)
        (60.0, "flat", 0, 6),
        (0.0, "rising", 0, 3),  # auto without a budget: AUTO_EPOCHS
        (60.0, "rising", 40, 3),  # few-shot sized data, repeated in each epoch to reach min_steps: AUTO_EPOCHS
    ],
)
def test_auto_epochs_fill_a_budget_while_dev_improves(budget_minutes, dev_scores, min_steps, epochs_run) -> None:
    from labelcon.training.schedule import MAX_AUTO_EPOCHS, epoch_limit

    texts, y = _toy()
    checks = iter(range(100))
    score = (lambda: next(checks) / 100) if dev_scores == "rising" else (lambda: 0.5)
    config = Config(**{**FAST, "epochs": "auto", "max_time_minutes": budget_minutes, "min_steps": min_steps})
    encoder = build_encoder("static", train_texts=texts, max_length=FAST["max_length"], seed=config.seed)
    trainer = Trainer(
        encoder,
        build_objective("supcon-jaccard", temperature=0.1),
        TrainingSettings.from_config(config),
        evaluate=lambda _: {"macro_ap": score()},
        show_progress=False,
    )
    history = trainer.fit(texts, y).history
    assert len(history) == epochs_run
    assert epoch_limit("auto", budgeted=True) == MAX_AUTO_EPOCHS
    assert all("dev" in record for record in history[:-1])


def test_epochs_is_auto_or_a_count() -> None:
    assert Config().epochs == "auto" and Config(epochs=0).epochs == 0
    with pytest.raises(ValueError, match="'auto' or an int >= 0"):
        Config(epochs=-1)


def test_passes_per_epoch() -> None:
    from labelcon.training.schedule import passes_per_epoch

    assert passes_per_epoch(steps_per_pass=4, epochs=3, min_steps=300) == 25
    assert passes_per_epoch(steps_per_pass=967, epochs=3, min_steps=300) == 1
    assert passes_per_epoch(steps_per_pass=4, epochs=3, min_steps=0) == 1
    assert passes_per_epoch(steps_per_pass=4, epochs=0, min_steps=300) == 1


# ------------------------------------------------------------------ label texts, sampled negatives
def _label_text_trainer(texts, label_texts, run_dir=None, negatives=1024, **settings) -> Trainer:
    config = Config(**{**FAST, "objective": "label_contrast", **settings})
    encoder = build_encoder("static", train_texts=texts, max_length=FAST["max_length"], seed=config.seed)
    objective = build_objective("label_contrast", temperature=0.1, label_negatives=negatives)
    return Trainer(
        encoder,
        objective,
        TrainingSettings.from_config(config),
        run_dir=run_dir,
        label_texts=label_texts,
        show_progress=False,
    )


def _wide_toy(extra: int) -> tuple[list[str], sp.csr_matrix, list[str]]:
    """The toy items with ``extra`` labels nobody holds after their own (C = 4 + extra)."""
    texts, y = _toy()
    label_texts = sorted(TOPICS) + [f"{FILLER[i % len(FILLER)]} {i}" for i in range(extra)]
    return texts, sp.hstack([y, sp.csr_matrix((len(texts), extra))]).tocsr(), label_texts


@pytest.mark.parametrize("mini_batch_size", [None, 8])
@pytest.mark.parametrize("extra", [0, 300])
def test_label_contrast_step_is_the_full_or_sampled_softmax(extra: int, mini_batch_size) -> None:
    """Few labels: every label text is embedded and the step is today's full computation.
    Many: the texts of S and the label columns of S, S drawn from (seed, rank, step)."""
    texts, y, label_texts = _wide_toy(extra)
    trainer = _label_text_trainer(texts, label_texts, negatives=32, mini_batch_size=mini_batch_size)
    encoder = trainer.encoder.eval()  # no dropout: one forward is the reference
    rows = np.arange(32)
    labels = batch_labels(y, rows)
    loss = trainer._loss([texts[i] for i in rows], labels)
    got = _grads(encoder)

    ids = sample_label_columns(labels, 32, np.random.default_rng([trainer.config.seed, 0, 0]))
    assert (ids is None) == (extra == 0)
    ids = torch.arange(y.shape[1]) if ids is None else ids
    z = encoder(encoder.tokenize([texts[i] for i in rows]))
    e = encoder(encoder.tokenize([label_texts[i] for i in ids.tolist()]))
    want_loss = label_contrast(z, e, labels[:, ids], 0.1)
    want_loss.backward()
    torch.testing.assert_close(loss, want_loss.detach())
    _assert_close(got, _grads(encoder))


def test_interrupted_run_with_sampled_label_negatives_resumes_exactly(tmp_path, monkeypatch) -> None:
    texts, y, label_texts = _wide_toy(300)
    straight, resumed = _straight_and_resumed(
        lambda run_dir: _label_text_trainer(texts, label_texts, run_dir, negatives=16, checkpoint_minutes=0),
        texts,
        y,
        tmp_path,
        monkeypatch,
    )
    for (name, x), (_, z) in zip(straight.encoder.state_dict().items(), resumed.encoder.state_dict().items()):
        assert torch.equal(x, z), name
    assert [h["loss"] for h in resumed.state.history] == [h["loss"] for h in straight.state.history]


# ------------------------------------------------------------------ safe checkpoints, divergence
def _static_trainer(texts, run_dir=None, trainer_args=None, **settings) -> Trainer:
    """A static encoder's Trainer under FAST with ``settings``; ``trainer_args``: more Trainer keywords."""
    config = Config(**{**FAST, "objective": "supcon-jaccard", **settings})
    encoder = build_encoder("static", train_texts=texts, max_length=FAST["max_length"], seed=config.seed)
    return Trainer(
        encoder,
        build_objective("supcon-jaccard", temperature=0.1),
        TrainingSettings.from_config(config),
        run_dir=run_dir,
        show_progress=False,
        **(trainer_args or {}),
    )


class _RunsCode:
    """Unpickling this runs a shell command: what a planted checkpoint could do."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os
        import shlex

        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_checkpoints_hold_only_tensors_and_plain_values(tmp_path) -> None:
    texts, y = _toy()
    _queue_trainer(texts, "supcon-jaccard", tmp_path, epochs=1, checkpoint_minutes=0).fit(texts, y)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["finished"] and checkpoint["queue"]["count"] == 48


def test_a_checkpoint_holding_objects_runs_nothing_and_names_the_file(toy_data, tmp_path) -> None:
    from click.testing import CliRunner

    from labelcon.cli import main

    marker = tmp_path / "ran"
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--train",
        str(toy_data["train"]),
        "--out",
        str(run_dir),
        "--encoder",
        "static",
        "--epochs",
        "1",
        "--max-length",
        "16",
        "--min-steps",
        "0",
        "--eval-max-train",
        "100",
        "--quiet",
    ]
    assert CliRunner().invoke(main, args).exit_code == 0
    state = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**state, "status": "running"}))  # as if it had been interrupted
    torch.save({"state": {}, "encoder": _RunsCode(marker)}, run_dir / "checkpoint.pt")  # and its checkpoint replaced
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: {run_dir / 'checkpoint.pt'}: not a labelcon checkpoint (it holds objects other than tensors and "
        "plain values); nothing in it was run; delete it to train from the start"
    )
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a checkpoint"])
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path, damage: str) -> None:
    from labelcon.training.checkpoint import CheckpointError

    texts, y = _toy()
    _static_trainer(texts, tmp_path, epochs=1).fit(texts, y)
    path = tmp_path / "checkpoint.pt"
    whole = path.read_bytes()
    if damage == "not a checkpoint":
        torch.save({"weights": torch.ones(3)}, path)
    else:
        path.write_bytes(b"" if damage == "empty" else whole[: len(whole) // 2])
    with pytest.raises(CheckpointError) as caught:
        _static_trainer(texts, tmp_path, epochs=1).fit(texts, y, resume=True)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a ") and "\n" not in message


@pytest.mark.parametrize("checkpoint_minutes", [0, 60])
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, checkpoint_minutes: float) -> None:
    from labelcon.training.trainer import TrainingDiverged

    texts, y = _toy()
    trainer = _static_trainer(texts, tmp_path, lr=1e30, checkpoint_minutes=checkpoint_minutes)
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit(texts, y)
    message = str(caught.value)
    assert "\n" not in message and "Lower the learning rate (--lr / lr=; this run has lr=1e+30)" in message
    path = tmp_path / "checkpoint.pt"
    if (
        checkpoint_minutes == 0
    ):  # a checkpoint after every step; steps 1 and 2 update the weights to 1e30, then to inf: step 2 is not saved
        assert message.startswith("training diverged at step 2: the loss was ") and "NaN or inf" in message
        assert f"{path} keeps the last checkpoint" in message
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["state"]["global_step"] == 1
        assert all(torch.isfinite(t).all() for t in checkpoint["encoder"].values())
    else:  # the inf weights of step 2 make step 3's loss nan
        assert message.startswith("training diverged at step 3: the loss is nan")
        assert not path.exists()


def test_history_holds_mean_losses_every_few_steps_and_the_time_of_dev_checks(monkeypatch) -> None:
    import labelcon.training.trainer as trainer_module

    texts, y = _toy()
    monkeypatch.setattr(trainer_module, "LOSS_POINTS", 4)
    seen: list[float] = []
    original = Trainer._step_loss

    def step_loss(self, *batch):
        loss = original(self, *batch)
        seen.append(loss.item())
        return loss

    monkeypatch.setattr(Trainer, "_step_loss", step_loss)
    trainer = _static_trainer(texts, trainer_args={"evaluate": lambda _: {"macro_ap": 0.5}})
    history = trainer.fit(texts, y).history
    every = history[-1]["step"] // 4  # a point every `every` steps, and one at each epoch's end
    expected, start = [], 0
    for record in history:
        ends = sorted({*range(start + every, record["step"] + 1, every), record["step"]})
        expected += [(end, float(np.mean(seen[begin:end]))) for begin, end in zip([start, *ends], ends)]
        start = record["step"]
    points = [point for record in history for point in record["losses"]]
    assert [step for step, _, _ in points] == [step for step, _ in expected]
    assert [loss for _, _, loss in points] == pytest.approx([loss for _, loss in expected])
    assert all(a[1] <= b[1] for a, b in zip(points, points[1:]))  # seconds grow with the steps
    assert all(record["dev_seconds"] >= 0 for record in history)


def test_fit_checks_the_labels_and_features_once_with_a_clear_error() -> None:
    texts, y = _toy()
    bad = y.astype(np.float32).tolil()
    bad[3, 0] = 2.0
    with pytest.raises(ValueError, match=r"the label matrix must hold only 0 and 1; got values such as \[2.0\]"):
        _static_trainer(texts).fit(texts, bad.tocsr())
    features = np.random.default_rng(0).normal(size=(len(texts), 6)).astype(np.float32)
    features[[5, 9], 2] = np.nan
    config = Config(**{**FAST, "encoder": "mlp", "objective": "supcon-jaccard"})
    encoder = build_encoder("mlp", train_texts=features, seed=config.seed)
    trainer = Trainer(
        encoder, build_objective("supcon-jaccard"), TrainingSettings.from_config(config), show_progress=False
    )
    with pytest.raises(ValueError, match=r"feature rows must be finite; rows \[5, 9\] hold NaN or inf values"):
        trainer.fit(features, y)


def test_a_run_stopped_early_anneals_over_one_last_epoch() -> None:
    texts, y = _toy()
    trainer = _static_trainer(
        texts, trainer_args={"evaluate": lambda _: {"macro_ap": 0.5}}, epochs="auto", max_time_minutes=60.0
    )
    state = trainer.fit(texts, y)
    first, last, factor, epoch = state.anneal
    steps = [record["step"] for record in state.history]
    assert epoch == len(state.history) == 6 and last == steps[-1] and first == steps[-2]
    assert 0 < factor <= 1
    schedule = linear_warmup_decay(10 * steps[0], trainer.config.warmup_ratio, anneal=lambda: state.anneal)
    assert schedule(first) == pytest.approx(factor) and schedule(last) == 0.0


@pytest.mark.parametrize("after_items, bound", [(0, "whole"), (10**9, "half")])
def test_the_budget_leaves_the_embedding_after_training_its_time(after_items, bound) -> None:
    """Texts to embed after training shorten training, down to half the budget at most."""
    texts, y = _toy()
    budget = 2.4  # seconds
    trainer = _static_trainer(
        texts, trainer_args={"after_items": after_items}, epochs=100000, max_time_minutes=budget / 60
    )
    seconds = trainer.fit(texts, y).elapsed_seconds
    if bound == "whole":
        assert seconds >= budget
    else:
        assert budget / 2 <= seconds < budget


@pytest.mark.parametrize("keep_base", [0.0, 0.3])
def test_the_best_dev_check_embeddings_are_those_the_stage_would_compute(keep_base) -> None:
    from labelcon.data import Dataset
    from labelcon.training.recipe import train_encoder

    items, dev_items = make_items(90, 0), make_items(40, 1)
    train, dev = (Dataset([i["text"] for i in d], [i["labels"] for i in d]) for d in (items, dev_items))
    space = LabelSpace.from_label_sets(train.labels)
    config = Config(**{**FAST, "epochs": 3, "max_time_minutes": 0, "keep_base": keep_base})
    encoder, _, history, embeddings = train_encoder(
        config, train, space.encode(train.labels), dev, space.encode(dev.labels),
        label_texts=list(space.names), max_length=FAST["max_length"],
    )  # fmt: skip
    assert sum("dev" in record for record in history) >= 2
    if keep_base:  # the weights moved after the checks: their embeddings do not serve
        assert embeddings is None
        return
    train_z, dev_z = embeddings
    np.testing.assert_allclose(train_z, encoder.encode(train.texts), atol=1e-6)
    np.testing.assert_allclose(dev_z, encoder.encode(dev.texts), atol=1e-6)
    # at another embedding length than training's, they do not either
    other = train_encoder(
        config, train, space.encode(train.labels), dev, space.encode(dev.labels),
        label_texts=list(space.names), max_length=FAST["max_length"], encode_length=2 * FAST["max_length"],
    )  # fmt: skip
    assert other[3] is None
