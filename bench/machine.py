"""One line naming the machine a benchmark ran on, for the reports of the ``bench_*.py`` scripts."""

from __future__ import annotations

import platform

from labelcon.machine import describe


def machine() -> str:
    """:func:`labelcon.machine.describe` (CPU model, logical CPUs, GPUs in use) and the Python version."""
    return f"{describe()}, Python {platform.python_version()}"
