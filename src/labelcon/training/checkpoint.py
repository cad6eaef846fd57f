"""Checkpoints: what a run's checkpoint holds, reading one safely, and the random
generators' state it carries so a resumed run draws what the uninterrupted one would."""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelcon.device import rng_state, set_rng_state

#: The checkpoint's file in a run directory.
CHECKPOINT_FILE = "checkpoint.pt"
#: What every checkpoint holds (``momentum_encoder`` and ``queue`` with a queue, the
#: optimizer and scheduler until the run finishes).
CHECKPOINT_FIELDS = frozenset({"state", "world_size", "encoder", "best", "rng"})


class CheckpointError(ValueError):
    """A checkpoint file that cannot be resumed from: damaged, or not written by labelcon."""


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    elapsed_seconds: float = 0.0
    best_metric: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    finished: bool = False
    #: Texts per second the last dev check embedded (0: none yet), for the run's budget.
    encode_rate: float = 0.0
    #: The final annealing epoch of a run stopped early, once begun: ``[first step, last
    #: step, learning-rate factor at its start, its epoch number]`` (empty: none).
    anneal: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    #: ``[step, seconds, mean loss]`` points of the current epoch (a checkpoint is written
    #: right after a point, so no step's loss is left out of them).
    losses: list[list[float]] = field(default_factory=list)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, read with ``weights_only=True``: only tensors and plain
    values are rebuilt, so nothing stored in the file runs. A file holding anything else,
    or an empty or damaged one, raises :class:`CheckpointError` with a one-line message."""
    restart = "delete it to train from the start"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: not a labelcon checkpoint (it holds objects other than tensors and plain values); "
            f"nothing in it was run; {restart}"
        ) from error
    except Exception as error:  # damaged files fail in torch.load with many types: EOFError, RuntimeError, KeyError...
        raise CheckpointError(
            f"{path}: not a readable checkpoint (empty, truncated or damaged: {type(error).__name__}); {restart}"
        ) from error
    if not isinstance(payload, dict) or not CHECKPOINT_FIELDS <= payload.keys():
        raise CheckpointError(f"{path}: not a labelcon checkpoint (no training state in it); {restart}")
    return payload


def generator_state(views: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """This process's random generators, as tensors and plain values: with ``device``'s
    own generator (CUDA, MPS), which draws the dropout masks there."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    torch_state, *device_state = rng_state(device)
    return {
        "torch": torch_state,
        "numpy": numpy_state,
        "python": random.getstate(),
        "views": views.bit_generator.state,
        "device": {"type": device.type, "state": device_state},
    }


def restore_generator_state(saved: dict[str, Any], views: np.random.Generator, device: torch.device) -> None:
    """Restore what :func:`generator_state` gave; the device generator's state only onto a
    device of the type that wrote it (a run resumed elsewhere draws its own there)."""
    written = saved.get("device", {"type": "cpu", "state": []})
    set_rng_state([saved["torch"], *(written["state"] if written["type"] == device.type else [])], device)
    numpy_state = saved["numpy"]
    np.random.set_state(
        {
            **numpy_state,
            "state": {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)},
        }
    )
    random.setstate(saved["python"])
    views.bit_generator.state = saved["views"]


def check_resumable(payload: dict[str, Any], path: Path, world_size: int, queue_size: int) -> None:
    """Raise ``ValueError`` when the checkpoint ``payload`` (read from ``path``) was written
    by a run of another process count or queue size than this one, naming what to resume with."""
    if payload["world_size"] != world_size:
        n = payload["world_size"]
        raise ValueError(
            f"{path} was written by a run of {n} process(es), this run has {world_size}: "
            f"resume with {n} (`labelcon train --resume --nproc {n}` or torchrun with {n} processes in all)"
        )
    saved_queue = payload.get("queue")
    saved_size = saved_queue["size"] if saved_queue is not None else None
    if saved_size != queue_size:
        raise ValueError(
            f"{path} was written with queue_size={saved_size}, "
            f"this run has queue_size={queue_size}: resume with the interrupted run's settings"
        )
