"""Training on pairs: alone, beside labelled items (every k-th step adds the loss of its
pair batch), and from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from labelcon import Labelcon
from labelcon.cli import main
from labelcon.config import Config
from labelcon.data import LabelSpace
from labelcon.data.pairs import PairRecords
from labelcon.encoders import build_encoder
from labelcon.objectives import PairLoss, build_objective
from labelcon.training.settings import TrainingSettings
from labelcon.training.trainer import Trainer
from tests.helpers import FAST, make_items, write_jsonl


def _pairs(n: int = 96, seed: int = 0) -> tuple[list[dict], PairRecords]:
    """Items of the toy topics, and scored pairs of them: 4 when two items share all
    labels, 2 when some, 0 when none."""
    items = make_items(n, seed)
    rng = np.random.default_rng(seed)
    first, second, scores = [], [], []
    for i, j in rng.integers(n, size=(n, 2)):
        a, b = set(items[i]["labels"]), set(items[j]["labels"])
        first.append(items[i]["text"]), second.append(items[j]["text"])
        scores.append(4.0 if a == b else 2.0 if a & b else 0.0)
    return items, PairRecords([first, second], scores, ("text1", "text2"))


def _trainer(texts: list[str], pair_every: int = 1, pair_objective: PairLoss | None = None, **settings) -> Trainer:
    config = Config(**{**FAST, **settings})
    encoder = build_encoder("static", train_texts=texts, max_length=FAST["max_length"], seed=config.seed)
    return Trainer(
        encoder,
        build_objective("supcon-jaccard", temperature=0.1),
        TrainingSettings.from_config(config),
        show_progress=False,
        pair_objective=pair_objective or PairLoss("scored"),
        pair_weight=0.5,
        pair_batch_size=16,
        pair_every=pair_every,
    )


def _cosent_of_all(encoder, pairs: PairRecords) -> float:
    first, second = (torch.from_numpy(encoder.encode(column)) for column in pairs.columns)
    return PairLoss("scored")([first, second], torch.tensor(pairs.scores)).item()


def test_pairs_alone_train_the_encoder() -> None:
    _, pairs = _pairs()
    trainer = _trainer(pairs.texts, epochs=3)
    before = _cosent_of_all(trainer.encoder, pairs)
    state = trainer.fit([], LabelSpace([]).encode([]), pairs=pairs)
    assert state.global_step == 3 * (96 // 16)
    after = _cosent_of_all(trainer.encoder, pairs)
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("every", [1, 3])
def test_every_kth_labelled_step_adds_its_pair_batch(monkeypatch, every: int) -> None:
    items, pairs = _pairs()
    texts = [item["text"] for item in items]
    y = LabelSpace.from_label_sets([item["labels"] for item in items]).encode([item["labels"] for item in items])
    trainer = _trainer(texts + pairs.texts, pair_every=every, epochs=2)
    calls: list[tuple[int, list[int], float]] = []
    pair_loss = Trainer._pair_loss

    def recording(self, batch, weight):
        value = pair_loss(self, batch, weight)
        calls.append((self.state.global_step, list(batch.items), value.item()))
        return value

    label_losses: list[float] = []
    objective_forward = trainer.objective.forward
    monkeypatch.setattr(trainer.objective, "forward", lambda *a, **k: _kept(objective_forward(*a, **k), label_losses))
    monkeypatch.setattr(Trainer, "_pair_loss", recording)
    state = trainer.fit(texts, y, pairs=pairs)
    steps = list(range(0, state.global_step, every))
    assert len(steps) > 1 and [step for step, _, _ in calls] == steps
    # consecutive pair batches, whatever the gap between the steps that take them
    assert [rows for _, rows, _ in calls] == [trainer.pair_sampler.batch_at(k) for k in range(len(steps))]
    last_has_pairs = (state.global_step - 1) % every == 0
    assert state.history[-1]["loss"] == pytest.approx(
        label_losses[-1] + (calls[-1][2] if last_has_pairs else 0.0), rel=1e-6
    )


class _Scaled(PairLoss):
    """CoSENT times ``factor``: the same ranking, a gradient ``factor`` times as large."""

    def __init__(self, factor: float) -> None:
        super().__init__("scored")
        self.factor = factor

    def forward(self, columns, scores):
        return self.factor * super().forward(columns, scores)


def test_pair_gradient_counts_at_its_clipped_size_beside_the_labels() -> None:
    """On a pair step each part's gradient is clipped to max_grad_norm on its own (the
    pairs' then weighted): a pair loss with a gradient 100 times as large trains to the
    same weights, where one joint clip would let it crowd out the labels' gradient."""
    items, pairs = _pairs()
    texts = [item["text"] for item in items]
    y = LabelSpace.from_label_sets([item["labels"] for item in items]).encode([item["labels"] for item in items])
    weights = []
    for factor in (1.0, 100.0):
        trainer = _trainer(texts + pairs.texts, pair_objective=_Scaled(factor), max_grad_norm=1e-4, epochs=1)
        trainer.fit(texts, y, pairs=pairs)
        weights.append(torch.cat([param.detach().flatten() for param in trainer.encoder.parameters()]))
    assert torch.allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6), (weights[0] - weights[1]).abs().max()


def _kept(loss: torch.Tensor, into: list[float]) -> torch.Tensor:
    into.append(loss.item())
    return loss


def test_command_line_trains_on_pairs_alone_and_beside_labels(tmp_path) -> None:
    items, pairs = _pairs(64)
    write_jsonl(tmp_path / "train.jsonl", items)
    write_jsonl(tmp_path / "sts.jsonl", [{"a": x, "b": z, "gold": s} for x, z, s in zip(*pairs.columns, pairs.scores)])
    fast = [
        "--encoder",
        "static",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-length",
        "16",
        "--min-steps",
        "0",
        "--pair-fields",
        "a,b",
        "--pair-score-field",
        "gold",
        "-q",
    ]
    alone = CliRunner().invoke(
        main,
        [
            "train",
            "--pairs",
            str(tmp_path / "sts.jsonl"),
            "--dev-pairs",
            str(tmp_path / "sts.jsonl"),
            "--out",
            str(tmp_path / "alone"),
            *fast[:3],
            "2",
            *fast[4:],
        ],
    )
    assert alone.exit_code == 0, alone.output
    assert Labelcon.load(tmp_path / "alone").encode(["a text"]).shape[0] == 1
    history = json.loads((tmp_path / "alone" / "history.json").read_text())
    assert [set(epoch["dev"]) for epoch in history] == [{"pairs_pearson", "pairs_spearman"}] * 2  # the dev check
    dev = json.loads((tmp_path / "alone" / "metrics.json").read_text())["dev"]
    assert dev["pairs_spearman"] == max(epoch["dev"]["pairs_spearman"] for epoch in history)  # the best epoch kept
    assert "pairs Spearman (cosine)" in (tmp_path / "alone" / "README.md").read_text()
    both = CliRunner().invoke(
        main,
        [
            "train",
            "--train",
            str(tmp_path / "train.jsonl"),
            "--pairs",
            str(tmp_path / "sts.jsonl"),
            "--out",
            str(tmp_path / "both"),
            "--head",
            "knn",
            "--lexical",
            "0",
            "--pair-every",
            "2",
            *fast,
        ],
    )
    assert both.exit_code == 0, both.output
    assert Labelcon.load(tmp_path / "both").config.pair_every == 2
    assert "macro_f1" in json.loads((tmp_path / "both" / "metrics.json").read_text())["dev"]
    refused = CliRunner().invoke(
        main,
        ["train", "--pairs", str(tmp_path / "sts.jsonl"), "--out", str(tmp_path / "c"), "-q", "--encoder", "static"],
    )
    assert refused.exit_code == 2 and "sts.jsonl, line 1: expected a text column 'anchor'" in refused.output
