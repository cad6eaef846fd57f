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
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelcon.io import read_json, write_json

#: The file that marks a directory as a saved labelcon model.
MODEL_FILE = "labelcon.json"
FORMAT = 2
#: What a first-format model kept directly in its directory.
FIRST_FORMAT_ENTRIES = ("encoder", "head", "lexical", "labels.json", "label_texts.json", "thresholds.json")
_VERSION = re.compile(r"model\.(\d+)")


class NotAModelError(FileNotFoundError):
    """A directory that holds no saved labelcon model."""


def _versions(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.fullmatch(p.name)) and p.is_dir())


def publish(directory: str | os.PathLike, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    """Write a new model version with ``write(folder)``, make it current, and return its folder.

    ``meta`` joins the pointer file (``format`` and ``model`` are set here). Older versions
    are removed after the switch; a reader still loading one retries (see :func:`load_current`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
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
    for old in versions:
        shutil.rmtree(directory / f"model.{old}", ignore_errors=True)
    if first_format:  # the model this one replaces kept its files directly in the directory
        for entry in FIRST_FORMAT_ENTRIES:
            path = directory / entry
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
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
