"""Where labelcon computes, and in what precision.

``--device`` (``Config.device``, ``Labelcon(device=...)``) names the device:
``auto`` (a CUDA GPU when torch sees one, else Apple's MPS, else the CPU), ``cpu``,
``cuda`` (the GPU of this process: ``cuda:LOCAL_RANK`` under torchrun, else ``cuda:0``),
``cuda:N`` or ``mps``. :func:`resolve_device` turns the name into a ``torch.device``
and says what is wrong when the machine has no such device.

``--precision`` keeps its meaning on every device (``float32``: float32 throughout;
``bfloat16``: bfloat16 autocast; ``auto``: training in the fastest precision the hardware
computes well, embedding in float32), and :func:`choose_precision` says what it means on
a given one (the autocast column is training's):

======  ==================  =========  ==============  ===========  ==============
device  capability          precision  autocast        grad scaler  TF32
======  ==================  =========  ==============  ===========  ==============
cpu     AVX512-BF16 or AMX  auto       bfloat16        no           no
cpu     neither             auto       none (float32)  no           no
cuda    >= 8.0 (Ampere+)    auto       bfloat16        no           yes
cuda    < 8.0               auto       float16         yes          no
mps     any                 auto       none (float32)  no           no
any     any                 bfloat16   bfloat16        no           on cuda >= 8.0
any     any                 float32    none (float32)  no           no
======  ==================  =========  ==============  ===========  ==============

float16 has a narrow exponent range, so small gradients underflow unless the loss is
scaled up before backward (``torch.amp.GradScaler``); bfloat16 has float32's range and
needs no scaler. TF32 (float32 matrix products on tensor cores, 10-bit mantissa) is on
for the float32 parts of a mixed-precision training step, and only there: the trainer
enters :func:`tf32_matmuls` around each step's forward and backward, which restores the
process's own settings after it. labelcon never turns TF32 on for the whole process, so
embeddings in float32 (``encode`` under ``auto`` or ``float32``) are float32 products on
a GPU as on the CPU and in the ONNX export; ``float32`` training keeps exact float32.

Under ``auto`` a model embeds (``encode``, and so its predictions, search index and
exports) in float32 on every device: mixed precision speeds up the passes that train,
while the embeddings a model hands out are the same wherever it runs, equal to those of
its sentence-transformers and ONNX exports. What only fitting reads is embedded as
training computes (``encode(..., as_trained=True)``): the head's training set, the
largest set a run embeds, and dev (the per-epoch checks, the head's choice and the
decision rule). On this project's AMX CPU that embeds 2.4-2.9x faster than float32, and
thresholds calibrated on such a dev decide float32 test embeddings as those calibrated on
float32 dev do (Reuters-21578, two encoders: 5 and 10 of 271,710 test decisions differ,
test F1 within 0.0007; BENCHMARKS.md). ``bfloat16`` embeds in bfloat16 too.

>>> choose_precision("auto", "cuda", capability=(7, 5))
Precision(autocast=torch.float16, grad_scaler=True, tf32=False, embed_autocast=None)
>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import torch

from labelcon.config import DeviceError, check_device_name

#: The first CUDA compute capability with bfloat16 and TF32 tensor cores (Ampere).
AMPERE = (8, 0)


def mps_available() -> bool:
    """Whether torch can compute on Apple's MPS here."""
    return torch.backends.mps.is_available()


def local_rank() -> int:
    """This process's index on its machine under torchrun (``LOCAL_RANK``), else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` that ``name`` means on this machine (a ``torch.device`` is
    taken as it is). ``auto`` and ``cuda`` take this process's GPU, ``cuda:LOCAL_RANK``,
    so one process per GPU under torchrun needs no flag of its own.

    >>> resolve_device("auto").type in ("cuda", "mps", "cpu")
    True
    """
    if isinstance(name, torch.device):
        return name
    name = check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        else:
            return torch.device("mps" if mps_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r}: torch sees no CUDA GPU on this machine (torch.cuda.is_available() "
                "is False); use --device cpu, or auto to take a GPU only when there is one"
            )
        index = int(name.split(":")[1]) if ":" in name else local_rank()
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(
                f"device {name!r} means cuda:{index}, but this machine has {count} CUDA GPU(s) "
                f"(cuda:0 to cuda:{count - 1}); start at most {count} processes on it"
            )
        return torch.device("cuda", index)
    if name == "mps" and not mps_available():
        raise DeviceError("device 'mps': torch cannot use Apple's MPS here; use --device cpu or auto")
    return torch.device(name)


def training_processes(nproc: int | str, device: str) -> int:
    """The processes ``labelcon train`` starts on this machine: ``nproc``, or for ``auto``
    one per CUDA GPU when ``device`` (``auto`` or ``cuda``) lets each process take its own,
    else 1 (a CPU, MPS, or one named GPU ``cuda:N``)."""
    if nproc != "auto":
        return nproc
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def distributed_backend(device: torch.device) -> str:
    """The collective backend for processes training on ``device``: nccl for CUDA
    tensors, gloo for CPU tensors (and everything else)."""
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class Precision:
    """How a transformer encoder computes: training under ``autocast`` (None: plain
    float32), through a gradient scaler or not, with TF32 matrix products or not; and
    embedding (in inference mode) under ``embed_autocast``."""

    autocast: torch.dtype | None
    grad_scaler: bool
    tf32: bool
    embed_autocast: torch.dtype | None = None


def choose_precision(
    setting: str, device_type: str, capability: tuple[int, int] | None = None, cpu_bfloat16: bool = False
) -> Precision:
    """The table of the module docstring: ``setting`` (``--precision``) on a device of
    ``device_type``, whose CUDA ``capability`` (major, minor) or native CPU bfloat16
    (``cpu_bfloat16``) is given."""
    if setting not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {setting!r}")
    ampere = device_type == "cuda" and capability is not None and capability >= AMPERE
    if setting == "float32":
        return Precision(None, False, False)
    if setting == "bfloat16":
        return Precision(torch.bfloat16, False, ampere, torch.bfloat16)
    if device_type == "cuda":
        return Precision(torch.bfloat16, False, True) if ampere else Precision(torch.float16, True, False)
    if device_type == "cpu" and cpu_bfloat16:
        return Precision(torch.bfloat16, False, False)
    return Precision(None, False, False)


@cache
def precision_for(setting: str, device: torch.device) -> Precision:
    """:func:`choose_precision` for ``device``, asking the hardware what it computes."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return choose_precision(setting, device.type, capability, device.type == "cpu" and _cpu_bfloat16())


def _cpu_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); False on torch
    releases that cannot tell (before 2.4 torch has no such query)."""
    queries = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(query() for query in queries if query is not None)


@contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """Inside the block CUDA float32 matrix products and convolutions run as TF32 when
    ``enabled``, and in full float32 when not; after it torch's process-wide settings
    (``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``) are
    as they were before it, even when the block raises."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def pinned(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``batch``'s host tensors in page-locked memory when it is bound for a CUDA device
    (so the copy can run while the GPU computes); as it is otherwise, and tensors already
    on the device (cached frozen-layer outputs) stay where they are."""
    if device.type != "cuda":
        return batch
    return {key: value.pin_memory() if value.device.type == "cpu" else value for key, value in batch.items()}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``batch``'s tensors on ``device``; copies from pinned memory do not wait for the GPU."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def rng_state(device: torch.device) -> list[torch.Tensor]:
    """The random generators a forward pass on ``device`` draws from: the CPU's, and the
    accelerator's own (CUDA, MPS), where dropout draws its masks."""
    states = [torch.get_rng_state()]
    if device.type in ("cuda", "mps"):
        states.append(torch.get_device_module(device.type).get_rng_state(device))
    return states


def set_rng_state(states: list[torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` gave (the accelerator's part only on that kind of device)."""
    torch.set_rng_state(states[0])
    if device.type in ("cuda", "mps") and len(states) > 1:
        torch.get_device_module(device.type).set_rng_state(states[1], device)


@contextmanager
def replayed_rng(states: list[torch.Tensor], device: torch.device) -> Iterator[None]:
    """Inside the block the generators stand at ``states`` (:func:`rng_state`); outside it
    they are as they were before it."""
    accelerator = device.type in ("cuda", "mps")
    with torch.random.fork_rng(
        devices=[device] if accelerator else [], device_type=device.type if accelerator else "cuda"
    ):
        set_rng_state(states, device)
        yield
