"""Model directories published whole: a reader sees the old model or the new one, never a mix.

A saved model is a directory ``D`` holding ``labelcon.json``, a pointer to the current
version, and that version's folder ``model.N/`` (the encoder, the prediction stage's files,
``config.yaml``, ``model.json``); an export keeps its encoder elsewhere in ``D``, in the
folder and format the pointer names (:func:`encoder_location`). :func:`publish` writes
version N+1 aside, renames it into place, switches the pointer with one atomic rename, and
then removes older versions; run outputs (``metrics.json``, ``history.json``, predictions,
checkpoints, the search index, the model card) sit beside them in ``D``.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> _ = publish(root, lambda tmp: (tmp / "weights.txt").write_text("1"), {"objective": "simcse"})
>>> folder, meta = resolve(root)
>>> folder.name, meta["format"], (folder / "weights.txt").read_text()
('model.1', 2, '1')

Loading a model reads each of its files inside :func:`labelcon.filecheck.reading`, so that
whatever goes wrong with one raises a :class:`ModelLoadError` that names that file:

>>> _ = (root / "labelcon.json").write_text('{"format": 2, "model": ')
>>> try:
...     resolve(root)
... except ModelLoadError as error:
...     print(str(error).replace(str(root), "D"))
D/labelcon.json: not valid JSON (Expecting value at line 1, column 24); the model directory is damaged: train again or restore it from a copy
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelcon.config import Config
from labelcon.filecheck import ModelLoadError, damaged, expect_object, reading
from labelcon.io import read_json, write_json

#: The file that marks a directory as a saved labelcon model.
MODEL_FILE = "labelcon.json"
FORMAT = 2
_VERSION = re.compile(r"model\.(\d+)")
LOCK_FILE = ".labelcon.lock"
#: Directories this process holds the lock of, with how deeply (the lock is re-entrant).
_HELD: dict[Path, int] = {}


class NotAModelError(FileNotFoundError):
    """A directory that holds no saved labelcon model."""


class RunDirectoryError(ValueError):
    """A run directory that may not be written into as asked (another process holds it,
    or a training run may not start there)."""


def version_numbers(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.fullmatch(p.name)) and p.is_dir())


def publish(directory: str | os.PathLike, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    """Write a new model version with ``write(folder)``, make it current, and return its folder.

    ``meta`` joins the pointer file (``format``, ``model`` and the version's random ``id``
    are set here). Older versions
    are removed after the switch; a reader still loading one retries (see :func:`load_current`).
    """
    directory = Path(directory)
    with locked(directory):
        return _publish(directory, write, meta)


def _publish(directory: Path, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    versions = version_numbers(directory)
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
    write_json(directory / MODEL_FILE, {**meta, "format": FORMAT, "model": name, "id": uuid.uuid4().hex[:12]})
    remove_entries(directory, [f"model.{v}" for v in versions])
    return directory / name


def resolve(directory: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The folder of the current model in ``directory`` and the pointer file's contents."""
    directory = Path(directory)
    pointer = directory / MODEL_FILE
    expected = "expected the --out directory of `labelcon train` or a path given to Labelcon.save()"
    if not directory.is_dir():
        found = "is not a directory" if directory.exists() else "does not exist"
        raise NotAModelError(f"{directory}: {found}; {expected}")
    if not pointer.is_file():
        raise NotAModelError(f"{directory}: not a labelcon model directory (no {MODEL_FILE}); {expected}")
    with reading(pointer):
        meta = expect_object(read_json(pointer), {"format": int})
        if meta["format"] != FORMAT:
            raise ModelLoadError(
                f"{pointer}: expected a model pointer of format {FORMAT}, got format "
                f"{meta['format']!r}; a newer labelcon may have written it"
            )
        name = meta.get("model")
        if not isinstance(name, str) or not _VERSION.fullmatch(name):
            raise ValueError(f"expected field 'model' to name a model.N folder, got {name!r}")
    return directory / name, meta


def version_name(folder: Path, meta: dict[str, Any]) -> str:
    """The name of the model version in ``folder``: ``model.N-ID``, where ``ID`` is drawn
    at each :func:`publish` (``--overwrite`` starts counting at ``model.1`` again, so the
    folder's name alone does not tell two trainings apart)."""
    return f"{folder.name}-{meta['id']}" if isinstance(meta.get("id"), str) else folder.name


def encoder_location(folder: Path, meta: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Where the encoder of the model version in ``folder`` is and how it is saved: the
    pointer's ``encoder`` entry (``{"path": ..., "format": ...}``, the path relative to the
    model directory: an export keeps its encoder where other tools look for it), else
    ``folder/encoder`` in labelcon's format. A path leading out of the directory is refused."""
    entry = meta.get("encoder")
    if entry is None:
        return folder / "encoder", {"format": "labelcon"}
    directory = folder.parent
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(relative, str) or not (directory / relative).resolve().is_relative_to(directory.resolve()):
        raise ValueError(
            f"{directory / MODEL_FILE}: field 'encoder' must name a folder inside the model directory "
            f'as {{"path": ..., "format": ...}}, got {entry!r}'
        )
    return directory / relative, entry


def load_current(directory: str | os.PathLike, load: Callable[[Path, dict[str, Any]], Any], attempts: int = 3) -> Any:
    """``load(folder, meta)`` on the current model; when a new version is published while
    it reads (its folder removed under it), it reads the newer one instead. A pointer to
    a folder that is not there raises a :class:`ModelLoadError` naming the pointer."""
    folder, meta = resolve(directory)
    for attempt in range(attempts):
        try:
            return load(folder, meta)
        except (OSError, ModelLoadError):
            newer = resolve(directory)
            if newer[0] == folder and not folder.is_dir():
                raise damaged(
                    Path(directory) / MODEL_FILE, f"its field 'model' names {folder.name}, which is not in {directory}"
                ) from None
            if newer[0] == folder or attempt == attempts - 1:
                raise
            folder, meta = newer


def read_config(path: Path) -> Config:
    """A model's ``config.yaml``; a failure names it (:func:`reading`)."""
    with reading(path):
        return Config.from_yaml(path)


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
            raise RunDirectoryError(
                f"{directory}: another labelcon process is writing this run directory; "
                "wait for it to end or choose another --out"
            ) from None
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_entries(directory: Path, names: Sequence[str]) -> None:
    """Remove the files and folders ``names`` of ``directory`` that exist."""
    for name in names:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
