"""One line naming the machine labelcon runs on, for run records and model cards."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    """CPU model, logical CPUs and, when CUDA is in use, the GPUs.

    >>> "logical CPUs" in describe()
    True
    """
    cpu = cpu_model() or platform.processor() or platform.machine() or "unknown CPU"
    text = f"{cpu}, {os.cpu_count()} logical CPUs"
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        text += ", " + ", ".join(f"{names.count(name)} x {name}" for name in dict.fromkeys(names))
    return text


def cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
