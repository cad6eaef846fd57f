"""The settings the training loop reads: a frozen subset of :class:`labelcon.config.Config`
(``Config.training()`` builds it; the fields mean what the Config fields of the same names say)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation, budget, checkpoints, the device, the momentum queue and the process count of one run.

    ``device``: a name for :func:`labelcon.device.resolve_device`, or a ``torch.device``."""

    epochs: int | str
    batch_size: int
    mini_batch_size: int | None
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    max_time_minutes: float | None
    min_steps: int
    patience: int
    seed: int
    checkpoint_minutes: float
    device: str | torch.device
    queue_size: int | None
    momentum: float
    nproc: int
