"""Gather the jobs of concurrent callers into one call of a batch function.

A :class:`Batcher` owns one asyncio task. Callers ``await submit(job, size)``; the task
takes the first waiting job, then more jobs until their sizes add up to ``max_size`` or
``max_wait`` seconds have passed, and runs ``run(jobs)`` once, in a thread, for all of
them. While that call runs, new jobs queue up and form the next batch, so under load
many small requests cost about what one large one does, and an idle server adds at most
``max_wait`` to a request. One batch runs at a time.

>>> import asyncio
>>> async def main():
...     batcher = Batcher(lambda jobs: [sum(job) for job in jobs], max_size=8, max_wait=0.01)
...     await batcher.start()
...     sums = await asyncio.gather(*(batcher.submit([i, i], size=2) for i in range(3)))
...     await batcher.stop()
...     return sums
>>> asyncio.run(main())
[0, 2, 4]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SHUTTING_DOWN = "the server is shutting down"


@dataclass
class _Waiting:
    job: Any
    size: int
    future: asyncio.Future


class Batcher:
    """Run ``run(jobs) -> results`` (one result per job, in order) on gathered jobs.

    ``max_size`` bounds the total size of a batch (a single job larger than it runs
    alone); ``max_wait`` (seconds) bounds how long the first job of a batch waits for
    others. ``on_batch(n_jobs, size)`` is told of each batch before it runs. A job whose
    caller stopped waiting (cancelled, timed out) before its batch runs is left out.
    """

    def __init__(
        self,
        run: Callable[[list[Any]], Sequence[Any]],
        *,
        max_size: int,
        max_wait: float,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.run, self.max_size, self.max_wait, self.on_batch = run, max_size, max_wait, on_batch
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._task: asyncio.Task | None = None
        self._taken: list[_Waiting] = []  # out of the queue, not answered yet

    async def start(self) -> None:
        """Start the task that forms and runs batches, in the running event loop."""
        self._queue, self._taken = asyncio.Queue(), []
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the task; jobs not answered yet fail with ``RuntimeError``."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        while not self._queue.empty():
            self._taken.append(self._queue.get_nowait())
        _fail(self._taken, RuntimeError(SHUTTING_DOWN))

    async def submit(self, job: Any, size: int) -> Any:
        """Queue ``job`` (of ``size`` items) and wait for its result."""
        if self._task is None:
            raise RuntimeError("the batcher is not running: call start() first")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(job, size, future))
        return await future

    async def _loop(self) -> None:
        while True:
            if not self._taken:
                self._taken.append(await self._queue.get())
            n = await self._gather()
            batch = [waiting for waiting in self._taken[:n] if not waiting.future.done()]
            if batch:
                await self._run(batch)
            del self._taken[:n]  # a job that did not fit stays, and opens the next batch

    async def _gather(self) -> int:
        """Take the jobs that join the first within ``max_wait``; return how many form the batch."""
        loop = asyncio.get_running_loop()
        size, deadline = self._taken[0].size, loop.time() + self.max_wait
        while size < self.max_size:
            try:
                waiting = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    waiting = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            self._taken.append(waiting)
            if size + waiting.size > self.max_size:
                return len(self._taken) - 1
            size += waiting.size
        return len(self._taken)

    async def _run(self, batch: list[_Waiting]) -> None:
        if self.on_batch is not None:
            self.on_batch(len(batch), sum(waiting.size for waiting in batch))
        try:
            results = await asyncio.to_thread(self.run, [waiting.job for waiting in batch])
        except Exception as exc:  # every job of the batch fails with the batch's error
            _fail(batch, exc)
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(result)


def _fail(waiting: list[_Waiting], exc: BaseException) -> None:
    for one in waiting:
        if not one.future.done():
            one.future.set_exception(exc)
