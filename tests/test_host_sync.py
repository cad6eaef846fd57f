"""A training step reads nothing back from its device between logging intervals.

On a GPU, ``Tensor.item()``, ``bool(tensor)``, ``float(tensor)``, ``int(tensor)`` and
``tensor.tolist()`` make the host wait for every kernel queued before them, and a
collective makes every process wait for the slowest. Here, on the CPU, those methods and
the collectives are wrapped to count their calls while the trainer runs its steps; the
calls made on the logging interval, at a checkpoint or at an epoch's end are not
counted. The optimizer's step counters are host tensors in torch's non-fused AdamW (the
one used off CUDA; on CUDA the fused AdamW keeps them on the device), so reads of them
from ``torch.optim`` are not device reads and are not counted either.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist

import labelcon.training.trainer as trainer_module
from labelcon.training import distributed
from labelcon.training.trainer import Trainer
from tests.test_training import _label_text_trainer, _queue_trainer, _static_trainer, _toy, _wide_toy

READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist")
COLLECTIVES = (
    "broadcast",
    "broadcast_object_list",
    "all_reduce",
    "all_gather",
    "all_gather_object",
    "all_gather_into_tensor",
    "reduce",
    "gather",
    "gather_object",
    "scatter",
    "barrier",
)
LABELCON_COLLECTIVES = ("broadcast_object", "gather_objects", "mean_over_processes", "barrier")
#: Where reading values back belongs: the logging interval, checkpoints, the epoch's end.
INTERVAL_METHODS = ("_close_loss_window", "_check_weights", "_save_checkpoint", "_end_epoch")


class SyncCounter:
    """Counts host reads and collectives made while steps run, apart from the interval methods."""

    def __init__(self) -> None:
        self.in_steps = False
        self.trainer: Trainer | None = None
        self.interval_depth = 0
        self.between: Counter[str] = Counter()
        self.on_interval: Counter[str] = Counter()
        self.steps = 0

    def record(self, name: str) -> None:
        if not self.in_steps or self.trainer.state.finished:  # before the first step, after the run
            return
        caller = sys._getframe(2).f_code.co_filename
        if "torch/optim" in caller.replace("\\", "/"):
            return
        (self.on_interval if self.interval_depth else self.between)[name] += 1


@contextlib.contextmanager
def counting(monkeypatch) -> Iterator[SyncCounter]:
    counter = SyncCounter()

    def counted(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            counter.record(label)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in READS:
        counted(torch.Tensor, name, f"Tensor.{name}")
    for name in COLLECTIVES:
        if hasattr(dist, name):
            counted(dist, name, f"torch.distributed.{name}")
    for name in LABELCON_COLLECTIVES:
        counted(distributed, name, f"labelcon distributed.{name}")

    def interval(name: str) -> None:
        original = getattr(Trainer, name)

        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            counter.interval_depth += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                counter.interval_depth -= 1

        monkeypatch.setattr(Trainer, name, wrapper)

    for name in INTERVAL_METHODS:
        interval(name)
    step_loss = Trainer._step_loss

    def first_step_on(self, *args):
        counter.in_steps, counter.trainer = True, self
        counter.steps += 1
        return step_loss(self, *args)

    monkeypatch.setattr(Trainer, "_step_loss", first_step_on)
    try:
        yield counter
    finally:
        counter.in_steps = False


def _label_text_run():
    texts, y, label_texts = _wide_toy(40)
    return _label_text_trainer(texts, label_texts, negatives=8), texts, y


CASES = {
    "supcon-jaccard, budget, checkpoints": lambda tmp: (
        _static_trainer(_toy()[0], tmp, max_time_minutes=60, checkpoint_minutes=0.01),
        *_toy(),
    ),
    "mulsupcon, GradCache, queue": lambda tmp: (_queue_trainer(_toy()[0], "mulsupcon", mini_batch_size=8), *_toy()),
    "simcse, queue": lambda tmp: (_queue_trainer(_toy()[0], "simcse"), *_toy()),
    "label_contrast, sampled labels": lambda tmp: _label_text_run(),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_host_read_or_collective_between_logging_intervals(monkeypatch, tmp_path, case: str) -> None:
    monkeypatch.setattr(trainer_module, "LOSS_POINTS", 3)  # a logging interval every third of the run
    trainer, texts, y = CASES[case](tmp_path)
    with counting(monkeypatch) as counter:
        state = trainer.fit(texts, y)
    points = [point for record in state.history for point in record["losses"]]
    assert counter.steps == state.global_step > len(points) > 1  # some steps' losses were read later
    assert counter.on_interval["Tensor.tolist"] >= len(points)  # the reads are seen where they belong
    assert not counter.between, f"host reads or collectives between logging intervals: {dict(counter.between)}"
