"""Wall and CPU time of a call, for the ``bench_*.py`` scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, float, Any]:
    """Median (wall, CPU) seconds of ``fn()`` over ``repeats`` calls, and its last result.

    >>> wall, cpu, result = timed(lambda: 42)
    >>> result, wall >= 0, cpu >= 0
    (42, True, True)
    """
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result
