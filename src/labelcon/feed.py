"""Feeding the device: the next batch is prepared on a thread while the current one computes.

Tokenising a batch is Python and Rust work on the CPU; done between two GPU steps it
leaves the GPU waiting. :func:`prefetched` runs the preparation (tokenising, pinning
memory) of the next ``depth`` batches on a background thread, in order, so the step
loop only copies a ready batch to the device. The batches are the same as without it:
only where they are made changes. On the CPU, where the model's own work keeps every
core busy, the batches are made when the reader asks for them
(:func:`ahead_for`).

>>> with prefetched(x * x for x in range(4)) as squares:
...     list(squares)
[0, 1, 4, 9]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")
#: Batches prepared ahead for an accelerator.
DEPTH = 2
#: How long the producer waits for room before it looks again whether it should stop.
POLL_SECONDS = 0.1
_DONE = object()


def ahead_for(device: torch.device) -> int:
    """How many batches to prepare ahead for ``device``: none on the CPU, :data:`DEPTH` elsewhere."""
    return 0 if device.type == "cpu" else DEPTH


@contextmanager
def prefetched(items: Iterable[T], depth: int = DEPTH) -> Iterator[Iterator[T]]:
    """``items``, produced on a background thread at most ``depth`` ahead of the reader
    (``depth`` 0: by the reader, as it asks, without a thread).

    An error raised while producing is raised to the reader at that item. Leaving the
    block (also early, or by an error) stops the thread and waits for it.
    """
    if depth == 0:
        yield iter(items)
        return
    buffer: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple[Any, BaseException | None]) -> bool:
        """Put ``entry`` when there is room; False when the reader left first."""
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
        except BaseException as error:  # handed to the reader, which raises it
            offer((_DONE, error))
            return
        offer((_DONE, None))

    def read() -> Iterator[T]:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item

    thread = threading.Thread(target=produce, name="labelcon-prefetch", daemon=True)
    thread.start()
    try:
        yield read()
    finally:
        stop.set()
        thread.join()
