"""The settings the training loop reads: a frozen subset of :class:`labelcon.config.Config`
(:meth:`TrainingSettings.from_config` builds it; the fields mean what the Config fields of
the same names say)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from labelcon.config import Config

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

    @classmethod
    def from_config(cls, config: Config) -> TrainingSettings:
        """The settings of ``config``; ``nproc`` ``auto`` counts the processes torchrun
        started on this machine (``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
        names = [f.name for f in fields(cls) if f.name not in ("lr", "nproc")]
        nproc = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if config.nproc == "auto" else config.nproc
        return cls(lr=config.resolved_lr(), nproc=nproc, **{name: getattr(config, name) for name in names})
