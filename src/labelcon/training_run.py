"""A training run owns its directory (:func:`training_run`): labelcon writes only into a new
or empty directory or one of its own runs; a lock file keeps a second writer out;
``run.json`` says whether the run is ``running`` (interrupted, if no process holds the
lock), ``finished``, or ``failed`` (it raised an error before it saved anything to resume
from, as for an encoder that does not load), with the settings, a fingerprint of the data
it started with and the machine it ran on.
A finished run is not trained again without ``overwrite``, which first removes every
output of the earlier run; an interrupted one resumes only with the same data and settings;
a failed one holds nothing to keep, so the next run into the directory starts afresh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from labelcon.io import atomic_open, read_json, write_json
from labelcon.machine import describe as describe_machine
from labelcon.modeldir import LOCK_FILE, MODEL_FILE, RunDirectoryError, locked, remove_entries, version_numbers
from labelcon.training.checkpoint import CHECKPOINT_FILE

RUN_FILE = "run.json"
#: What a training run writes into its directory: what ``overwrite`` removes.
RUN_OUTPUTS = (
    MODEL_FILE,
    RUN_FILE,
    "config.yaml",
    CHECKPOINT_FILE,
    "metrics.json",
    "history.json",
    "predictions_test.jsonl",
    "report.html",
    "report.md",
    "README.md",
    "index",
)
#: Settings an interrupted run may resume with changed (a checkpoint resumes on any device).
RESUMABLE_CHANGES = frozenset({"max_time_minutes", "device"})


@contextmanager
def training_run(
    directory: str | os.PathLike, *, config: dict[str, Any], data: dict[str, Any], resume: bool, overwrite: bool
) -> Iterator[bool]:
    """Own ``directory`` for one training run (see the module docstring) and yield whether
    it resumes an interrupted run; ``run.json`` says ``finished`` once the body returns.
    ``config``: the run's settings; ``data``: fingerprints of what it trains on."""
    directory = Path(directory)
    _check_owned(directory)
    with locked(directory):
        state = _run_state(directory)
        status = None if state is None else state.get("status")
        how = "pass --overwrite (Python: overwrite=True) to train it again from the start, or choose another --out"
        if status == "finished" and (resume or not overwrite):
            raise RunDirectoryError(
                f"{directory}: holds a finished run; {'nothing to resume; ' if resume else ''}{how}"
            )
        if status == "running" and not (resume or overwrite):
            raise RunDirectoryError(
                f"{directory}: holds an interrupted run; pass --resume (Python: resume=True) to "
                f"continue it, or --overwrite to start again"
            )
        resuming = status == "running" and resume
        if resuming:
            _check_same(directory, state, config, data)
        else:
            remove_entries(directory, [*RUN_OUTPUTS, *(f"model.{v}" for v in version_numbers(directory))])
        remove_entries(
            directory, [p.name for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
        )
        settings = json.loads(json.dumps(config))
        record = {"config": settings, "data": data, "machine": describe_machine()}
        write_json(directory / RUN_FILE, {"status": "running", **record})
        with atomic_open(directory / "config.yaml") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        try:
            yield resuming
        except Exception as error:
            if not (directory / CHECKPOINT_FILE).is_file():
                write_json(
                    directory / RUN_FILE, {"status": "failed", "error": f"{type(error).__name__}: {error}", **record}
                )
            raise
        write_json(directory / RUN_FILE, {"status": "finished", **record})


def _check_owned(directory: Path) -> None:
    if not directory.exists():
        above = next(parent for parent in directory.parents if parent.exists())
        if not above.is_dir():
            raise RunDirectoryError(
                f"{directory}: cannot be made: {above} is a file, not a directory; choose another --out"
            )
        return
    if not directory.is_dir():
        raise RunDirectoryError(f"{directory}: exists and is not a directory; choose another --out")
    entries = sorted(p.name for p in directory.iterdir() if p.name != LOCK_FILE)
    if entries and not ((directory / RUN_FILE).is_file() or (directory / MODEL_FILE).is_file()):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirectoryError(
            f"{directory}: is not empty ({shown}) and holds no labelcon run; labelcon writes only "
            "into a new or empty directory or one of its own runs: choose another --out"
        )


def _run_state(directory: Path) -> dict[str, Any] | None:
    """``run.json``; a model directory without one (saved by ``save`` or an older labelcon) counts as finished."""
    path = directory / RUN_FILE
    if path.is_file():
        try:
            state = read_json(path)
        except (OSError, ValueError) as error:
            raise RunDirectoryError(
                f"{path}: not readable ({error}); pass --overwrite to start the run again"
            ) from None
        if isinstance(state, dict) and state.get("status") == "failed":
            return None
        if isinstance(state, dict) and state.get("status") in ("running", "finished"):
            return state
        raise RunDirectoryError(
            f"{path}: expected a run state with status 'running', 'finished' or 'failed'; "
            "pass --overwrite to start the run again"
        )
    return {"status": "finished"} if (directory / MODEL_FILE).is_file() else None


def _check_same(directory: Path, state: dict[str, Any], config: dict[str, Any], data: dict[str, Any]) -> None:
    """An interrupted run resumes with the data and settings it started with."""
    before, now = state.get("config", {}), json.loads(json.dumps(config))
    changed = [
        f"{key}: {before.get(key)!r} in the run, {now[key]!r} now"
        for key in now
        if key not in RESUMABLE_CHANGES and before.get(key) != now[key]
    ]
    for name, print_now in data.items():
        then = state.get("data", {}).get(name)
        if then is None or then.get("sha256") != print_now.get("sha256"):
            changed.append(f"{name} data: {_describe(then)} in the run, {_describe(print_now)} now")
    if changed:
        raise RunDirectoryError(
            f"{directory}: --resume continues a run with the data and settings it started with; "
            f"these differ: {'; '.join(changed)}"
        )


def _describe(fingerprint: dict[str, Any] | None) -> str:
    if not fingerprint:
        return "none"
    source = f" from {fingerprint['source']}" if fingerprint.get("source") else ""
    return f"{fingerprint['items']} items{source} (sha256 {fingerprint['sha256'][:12]})"
