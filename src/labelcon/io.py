"""Atomic file output: every file labelcon writes appears whole or not at all.

A writer goes to a temporary file in the target's directory, flushes and fsyncs it, then
``os.replace`` moves it over the target, so an interrupted run never leaves a half file.
Temporary files and directories are created like ``open()`` and ``mkdir`` create them,
so their modes follow the umask (0644 and 0755 under umask 022).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_json(d / "m.json", {"a": 1})
>>> read_json(d / "m.json")
{'a': 1}
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: How JSON value types are named in messages (``true`` is no number, though Python's bool is an int).
JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    dict: "an object",
    list: "a list",
}


def json_type_name(kind: type) -> str:
    """The name of a JSON value type in messages: ``a string``, ``an object``, ..."""
    return JSON_TYPE_NAMES.get(kind, kind.__name__)


def json_kind(value: Any) -> str:
    """The JSON kind of a parsed value, for messages.

    >>> json_kind(3), json_kind(None), json_kind(True)
    ('a whole number', 'null', 'true or false')
    """
    return json_type_name(type(value))


def temporary_sibling(path: Path) -> Path:
    """A hidden name next to ``path``, random enough to be unused, for a temporary file or
    directory that is created exclusively (``open(..., "x")``, ``mkdir``)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing (``mode`` "w" or "wb"); move it into
    place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    binary = "b" in mode
    try:
        with open(tmp, mode.replace("w", "x"), encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``; a file that is not JSON (or not UTF-8) raises a
    ``ValueError`` naming the file and where in it the problem is."""
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: not valid JSON ({error.msg.removesuffix(' at')} at line {error.lineno}, column {error.colno})"
            ) from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not valid JSON (byte {error.start} is not UTF-8: {error.reason})") from None


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file, so a checkpoint is never half written; a
    Ctrl-C during the write takes effect once the file is in place (:func:`interrupts_held`)."""
    import torch

    with interrupts_held(), atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT (Ctrl-C) until the body ends, then hand it to the handler that was in place
    (Python's own raises ``KeyboardInterrupt``). ``torch.save`` writes through C++ calling back into Python's file
    object: an interrupt landing in a write surfaces as a ``RuntimeError`` of torch's zip
    writer ("unexpected pos"), which reads like a crash where the user only pressed Ctrl-C.
    Outside the main thread, or where SIGINT is ignored, nothing changes."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        None,
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if not callable(previous):  # SIG_DFL: the interrupt ends the run
            raise KeyboardInterrupt
        previous(signal.SIGINT, None)  # Python's own handler raises KeyboardInterrupt


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temporary sibling directory, then swap it in for ``path``.

    Readers see the old directory or the new one, never a mix: the new one is complete
    before it is renamed into place, and the old one is removed only afterwards.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def cache_dir() -> Path:
    """The labelcon cache root: ``$LABELCON_CACHE``, else ``$XDG_CACHE_HOME/labelcon``, else
    ``~/.cache/labelcon`` (unpacked models under ``models/``, fetched data sets under ``datasets/``)."""
    if os.environ.get("LABELCON_CACHE"):
        return Path(os.environ["LABELCON_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "labelcon"
