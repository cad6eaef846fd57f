"""The losses of a run's steps, kept where the steps run until the logging interval reads them.

Reading a loss value (``loss.item()``) makes the host wait for every kernel queued
before it; on a GPU, whose steps are mostly kernel launches, that idles it each step.
:class:`LossTally` adds each step's loss to a float64 sum on the step's device and notes
the first step whose loss was not finite, also on the device; :meth:`LossTally.read`
brings the sum, that step and the last step's loss to the host in one transfer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from labelcon.training import distributed


class Losses(NamedTuple):
    """What :meth:`LossTally.read` gives: the mean and the last of the losses read, the
    first step whose loss was not finite (0: none) and how many steps there were."""

    mean: float
    last: float
    first_bad: int
    steps: int


class LossTally:
    """The losses since the last read: their sum (float64) and count, the last one, and
    the first step (1-based) whose loss was not finite (0: none), on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.steps = 0
        self._sum = torch.zeros((), dtype=torch.float64, device=device)
        self._last = torch.tensor(math.nan, dtype=torch.float64, device=device)
        self._first_bad = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        """Count the 0-d ``loss`` of ``step``; reads nothing back."""
        loss = loss.detach().to(torch.float64)
        self._sum += loss
        self._last = loss
        newly_bad = (self._first_bad == 0) & ~torch.isfinite(loss)
        self._first_bad = torch.where(newly_bad, torch.full_like(self._first_bad, step), self._first_bad)
        self.steps += 1

    def read(self) -> Losses:
        """The losses since the last read, as host numbers, and a fresh tally. Under
        ``torchrun`` the mean and the last loss are the means over processes (a collective:
        every process reads at the same step); ``first_bad`` is this process's."""
        values = distributed.mean_over_processes(torch.stack([self._sum, self._last]))
        total, last, first_bad = torch.cat([values, self._first_bad.unsqueeze(0)]).tolist()
        losses = Losses(total / self.steps if self.steps else math.nan, last, int(first_bad), self.steps)
        self._sum.zero_()
        self._first_bad.zero_()
        self.steps = 0
        return losses
