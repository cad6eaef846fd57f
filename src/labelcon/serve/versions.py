"""Which model version ``labelcon serve`` answers with, and the watch that switches to newer ones.

A run directory publishes each new model version whole (:func:`labelcon.modeldir.publish`:
a retrain, a resumed run, ``labelcon train --overwrite``, ``Labelcon.save``), switching the
pointer file ``labelcon.json`` with one rename. :class:`Versions` checks that file every
``interval`` seconds (its inode, size and time, then the version it names). A new version
is loaded in a thread beside the one being served, made ready (its search index checked
against the new encoder and rebuilt when stale, one text embedded), and only then becomes
the version that new requests take. A request holds the version it started with to its
end, so requests in flight finish on the old one, which is freed once the last of them
is answered. A version that does not load is refused with a log line, and the old one
keeps serving; it is tried again only once the pointer changes again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelcon.modeldir import MODEL_FILE, resolve, version_name

log = logging.getLogger("labelcon.serve")


@dataclass(frozen=True)
class Served:
    """One loaded model version: ``version`` is :func:`labelcon.modeldir.version_name`."""

    version: str
    model: Any


def published_version(run_dir: Path) -> str:
    """The version the pointer file of ``run_dir`` names now."""
    return version_name(*resolve(run_dir))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:  # between the removal and the new pointer of an --overwrite run
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class Versions:
    """The served version of ``run_dir``, loaded by ``load(run_dir) -> Served``; with
    ``interval`` > 0, :meth:`watch` switches to each newly published version."""

    def __init__(self, run_dir: str | os.PathLike, load: Callable[[Path], Served], interval: float) -> None:
        self.run_dir, self.load, self.interval = Path(run_dir), load, interval
        self._stamp = _stamp(self.run_dir / MODEL_FILE)
        self.current = load(self.run_dir)
        self.refused: str | None = None  # the last version that failed to load
        self.switched_at: float | None = None  # time.time() of the last switch

    def check(self) -> bool:
        """Load and switch to a newly published version, if there is one; whether it switched.
        Blocking: the watch runs it in a thread."""
        stamp = _stamp(self.run_dir / MODEL_FILE)
        if stamp is None or stamp == self._stamp:
            return False
        try:
            version = published_version(self.run_dir)
        except (OSError, ValueError) as error:
            log.warning(
                "%s: cannot read the model pointer (%s); still serving %s", self.run_dir, error, self.current.version
            )
            self._stamp = stamp
            return False
        self._stamp = stamp
        if version in (self.current.version, self.refused):
            return False
        log.info("model version %s published in %s: loading it beside %s", version, self.run_dir, self.current.version)
        started = time.perf_counter()
        try:
            served = self.load(self.run_dir)
        except Exception as error:  # a damaged version: the old one keeps serving
            self.refused = version
            log.error(
                "refused model version %s of %s: %s: %s; still serving %s",
                version,
                self.run_dir,
                type(error).__name__,
                error,
                self.current.version,
            )
            return False
        old, self.current, self.switched_at = self.current.version, served, time.time()
        gc.collect()  # the old version goes once the requests holding it are answered
        log.info(
            "now serving model version %s (was %s; loaded in %.1f s)",
            served.version,
            old,
            time.perf_counter() - started,
        )
        return True

    async def watch(self) -> None:
        """Check for a new version every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # the watch never dies of one bad check
                log.exception("checking %s for a new model version failed", self.run_dir)
