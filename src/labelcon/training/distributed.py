"""Many processes (``torchrun``): joining the process group and the few collectives the
trainer needs besides DDP's gradient all-reduce.

``torchrun`` (``torch.distributed.run``) starts one process per worker and describes the
job in environment variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_from_env` joins
that job; every helper below is the single-process no-op (or identity) otherwise, so the
trainer runs the same code with one process or many.

Rank 0 is the main process: it evaluates on dev, writes checkpoints and the run
directory; the others wait for its decisions (:func:`broadcast_object`).
"""

from __future__ import annotations

import inspect
import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from labelcon.device import distributed_backend
from labelcon.objectives.distributed import active

#: How long a process waits in a collective before giving up. Rank 0 evaluates on dev and
#: writes checkpoints while the others wait for its early-stopping decision, which can
#: take far longer than torch's default of 30 minutes on a CPU.
WAIT_TIMEOUT = timedelta(hours=2)


def init_from_env(device: torch.device) -> bool:
    """Join the process group described by ``torchrun``'s environment when it holds more
    than one process (``WORLD_SIZE > 1``) and none is joined yet, over the backend for
    ``device`` (:func:`labelcon.device.distributed_backend`: ``gloo`` for CPU training,
    ``nccl`` for CUDA, where this process's GPU becomes its current one, as nccl's
    collectives need). Returns whether more than one process trains."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group(distributed_backend(device), timeout=WAIT_TIMEOUT)
    return True


def constant_buffers_option() -> dict[str, bool]:
    """The keyword that tells ``DistributedDataParallel`` not to re-send the module's
    buffers before every forward (they are constants here): ``forward_sync_buffers`` in
    the torch releases that have it (2.13 on), ``broadcast_buffers`` before them, where
    ``forward_sync_buffers`` raises ``TypeError``."""
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers" if "forward_sync_buffers" in parameters else "broadcast_buffers": False}


def world_size() -> int:
    """Number of processes training together (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank: from the process group, else from ``torchrun``'s ``RANK``
    variable (a process about to join), else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, the process that evaluates and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here."""
    if active():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (picklable objects)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` in rank order, on every process (picklable objects)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all processes (the global loss for logging)."""
    if not active():
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()
