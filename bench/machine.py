"""One line naming the machine a benchmark ran on, for the reports of the ``bench_*.py`` scripts."""

from __future__ import annotations

import os
import platform
import subprocess


def machine() -> str:
    """CPU model (from ``lscpu``), logical CPUs and Python version."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"
