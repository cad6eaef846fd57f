"""Model directories published whole: a reader sees the old model or the new one, never a mix.

A saved model is a directory ``D`` holding ``labelcon.json``, a pointer to the current
version, and that version's folder ``model.N/`` (the encoder, the prediction stage's files,
``config.yaml``, ``model.json``). :func:`publish` writes version N+1 aside, renames it into
place, switches the pointer with one atomic rename, and then removes older versions; run
outputs (``metrics.json``, ``history.json``, predictions, checkpoints) sit beside them in
``D``. Directories of the first format held one model's files directly in ``D``, with
``labelcon.json`` describing it: :func:`resolve` still finds them.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> _ = publish(root, lambda tmp: (tmp / "weights.txt").write_text("1"), {"objective": "simcse"})
>>> folder, meta = resolve(root)
>>> folder.name, meta["format"], (folder / "weights.txt").read_text()
('model.1', 2, '1')

A training run owns its directory (:func:`training_run`): labelcon writes only into a new
or empty directory or one of its own runs; a lock file keeps a second writer out;
``run.json`` says whether the run is ``running`` (interrupted, if no process holds the
lock) or ``finished``, with the settings and a fingerprint of the data it started with.
A finished run is not trained again without ``overwrite``, which first removes every
output of the earlier run; an interrupted one resumes only with the same data and settings.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from labelcon.io import atomic_open, read_json, write_json

#: The file that marks a directory as a saved labelcon model.
MODEL_FILE = "labelcon.json"
FORMAT = 2
#: What a first-format model kept directly in its directory.
FIRST_FORMAT_ENTRIES = ("encoder", "head", "lexical", "labels.json", "label_texts.json", "thresholds.json")
_VERSION = re.compile(r"model\.(\d+)")
RUN_FILE = "run.json"
LOCK_FILE = ".labelcon.lock"
#: What a training run writes into its directory: what ``overwrite`` removes.
RUN_OUTPUTS = (MODEL_FILE, RUN_FILE, "config.yaml", "checkpoint.pt", "metrics.json", "history.json",
               "predictions_test.jsonl", "report.html", "report.md", *FIRST_FORMAT_ENTRIES)  # fmt: skip
#: Settings an interrupted run may resume with changed (a checkpoint resumes on any device).
RESUMABLE_CHANGES = frozenset({"max_time_minutes", "device"})
#: Directories this process holds the lock of, with how deeply (the lock is re-entrant).
_HELD: dict[Path, int] = {}


class NotAModelError(FileNotFoundError):
    """A directory that holds no saved labelcon model."""


class RunDirectoryError(ValueError):
    """A run directory that a training run may not write into as asked."""


def _versions(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.fullmatch(p.name)) and p.is_dir())


def publish(directory: str | os.PathLike, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    """Write a new model version with ``write(folder)``, make it current, and return its folder.

    ``meta`` joins the pointer file (``format`` and ``model`` are set here). Older versions
    are removed after the switch; a reader still loading one retries (see :func:`load_current`).
    """
    directory = Path(directory)
    with locked(directory):
        return _publish(directory, write, meta)


def _publish(directory: Path, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    versions = _versions(directory)
    first_format = (directory / MODEL_FILE).is_file() and read_json(directory / MODEL_FILE).get("format") == 1
    name = f"model.{(versions[-1] if versions else 0) + 1}"
    staging = directory / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        os.rename(staging, directory / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_json(directory / MODEL_FILE, {**meta, "format": FORMAT, "model": name})
    _remove(directory, [f"model.{v}" for v in versions] + (list(FIRST_FORMAT_ENTRIES) if first_format else []))
    return directory / name


def resolve(directory: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The folder of the current model in ``directory`` and the pointer file's contents."""
    directory = Path(directory)
    pointer = directory / MODEL_FILE
    if not pointer.is_file():
        raise NotAModelError(
            f"{directory}: not a labelcon model directory (no {MODEL_FILE}); "
            "expected the --out directory of `labelcon train` or a path given to Labelcon.save()"
        )
    meta = read_json(pointer)
    if not isinstance(meta, dict) or meta.get("format") not in (1, FORMAT):
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{pointer}: expected a model pointer of format 1 or {FORMAT}, got format {found!r}")
    if meta["format"] == 1:
        return directory, meta
    name = meta.get("model")
    if not isinstance(name, str) or not _VERSION.fullmatch(name):
        raise ValueError(f"{pointer}: field 'model' must name a model.N folder, got {name!r}")
    return directory / name, meta


def load_current(directory: str | os.PathLike, load: Callable[[Path, dict[str, Any]], Any], attempts: int = 3) -> Any:
    """``load(folder, meta)`` on the current model; when a new version is published while
    it reads (its folder removed under it), it reads the newer one instead."""
    folder, meta = resolve(directory)
    for _ in range(attempts - 1):
        try:
            return load(folder, meta)
        except OSError:
            newer = resolve(directory)
            if newer[0] == folder:
                raise
            folder, meta = newer
    return load(folder, meta)


@contextmanager
def locked(directory: str | os.PathLike) -> Iterator[None]:
    """Hold ``directory``'s lock file (creating the directory) or fail at once when another
    process holds it; re-entrant within this process."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    with open(directory / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(f"{directory}: another labelcon process is writing this run directory; "
                                    "wait for it to end or choose another --out") from None  # fmt: skip
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def training_run(directory: str | os.PathLike, *, config: dict[str, Any], data: dict[str, Any], resume: bool,
                 overwrite: bool) -> Iterator[bool]:  # fmt: skip
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
            raise RunDirectoryError(f"{directory}: holds a finished run; {'nothing to resume; ' if resume else ''}{how}")
        if status == "running" and not (resume or overwrite):
            raise RunDirectoryError(f"{directory}: holds an interrupted run; pass --resume (Python: resume=True) to "
                                    f"continue it, or --overwrite to start again")  # fmt: skip
        resuming = status == "running" and resume
        if resuming:
            _check_same(directory, state, config, data)
        else:
            _remove(directory, [*RUN_OUTPUTS, *(f"model.{v}" for v in _versions(directory))])
        _remove(directory, [p.name for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")])
        settings = json.loads(json.dumps(config))
        write_json(directory / RUN_FILE, {"status": "running", "config": settings, "data": data})
        with atomic_open(directory / "config.yaml") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        yield resuming
        write_json(directory / RUN_FILE, {"status": "finished", "config": settings, "data": data})


def _check_owned(directory: Path) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise RunDirectoryError(f"{directory}: exists and is not a directory; choose another --out")
    entries = sorted(p.name for p in directory.iterdir() if p.name != LOCK_FILE)
    if entries and not ((directory / RUN_FILE).is_file() or (directory / MODEL_FILE).is_file()):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirectoryError(f"{directory}: is not empty ({shown}) and holds no labelcon run; labelcon writes only "
                                "into a new or empty directory or one of its own runs: choose another --out")  # fmt: skip


def _run_state(directory: Path) -> dict[str, Any] | None:
    """``run.json``; a model directory without one (saved by ``save`` or an older labelcon) counts as finished."""
    path = directory / RUN_FILE
    if path.is_file():
        try:
            state = read_json(path)
        except (OSError, ValueError) as error:
            raise RunDirectoryError(f"{path}: not readable ({error}); pass --overwrite to start the run again") from None
        if isinstance(state, dict) and state.get("status") in ("running", "finished"):
            return state
        raise RunDirectoryError(f"{path}: expected a run state with status 'running' or 'finished'; "
                                "pass --overwrite to start the run again")  # fmt: skip
    return {"status": "finished"} if (directory / MODEL_FILE).is_file() else None


def _check_same(directory: Path, state: dict[str, Any], config: dict[str, Any], data: dict[str, Any]) -> None:
    """An interrupted run resumes with the data and settings it started with."""
    before, now = state.get("config", {}), json.loads(json.dumps(config))
    changed = [f"{key}: {before.get(key)!r} in the run, {now[key]!r} now" for key in now
               if key not in RESUMABLE_CHANGES and before.get(key) != now[key]]  # fmt: skip
    for name, print_now in data.items():
        then = state.get("data", {}).get(name)
        if then is None or then.get("sha256") != print_now.get("sha256"):
            changed.append(f"{name} data: {_describe(then)} in the run, {_describe(print_now)} now")
    if changed:
        raise RunDirectoryError(f"{directory}: --resume continues a run with the data and settings it started with; "
                                f"these differ: {'; '.join(changed)}")  # fmt: skip


def _describe(fingerprint: dict[str, Any] | None) -> str:
    if not fingerprint:
        return "none"
    source = f" from {fingerprint['source']}" if fingerprint.get("source") else ""
    return f"{fingerprint['items']} items{source} (sha256 {fingerprint['sha256'][:12]})"


def _remove(directory: Path, names: Sequence[str]) -> None:
    for name in names:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
