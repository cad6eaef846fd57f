"""The folder that carries ``bench/gpu_check.py``'s needs to a GPU machine without network.

A borrowed GPU machine may reach no package registry or model hub, may lack packages
labelcon needs (pydantic, for one), and takes at most about 60 MiB along. The folder
(made by ``bench/prepare_gpu_check.py``, read back by ``gpu_check.py --bundle``) holds:

- ``minilm/``: all-MiniLM-L6-v2 with its weights in float16 (43 MiB instead of 87),
  restored to float32 at start (:func:`restore_model`); each weight then differs from the
  original by float16 rounding (relative 2^-11 at most), the same model for every row;
- ``data/``: the data set's splits, gzipped, and its ``labels.txt``; ``data/NAME`` names it;
- ``wheels/``: the wheels of the packages the check needs beyond the machine's own
  (``pip install --no-index --no-deps`` installs them, see bench/README.md).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MODEL, DATA, WHEELS = "minilm", "data", "wheels"
WEIGHTS = "model.safetensors"
SPLITS = ("train", "dev", "test")
#: What the prepared folder may weigh: what a borrowed machine's call takes along, with room.
LIMIT_BYTES = 60 * 2**20


def _converted(source: Path, target: Path, dtype: torch.dtype) -> None:
    """``source``'s safetensors weights written to ``target`` with floating tensors in ``dtype``."""
    tensors = load_file(str(source))
    save_file(
        {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()},
        str(target),
        metadata={"format": "pt"},
    )


def _copy_model(source: Path, target: Path, dtype: torch.dtype) -> Path:
    """A copy of the model folder ``source`` at ``target``, its weights in ``dtype``."""
    if not (source / WEIGHTS).is_file():
        raise FileNotFoundError(f"{source}: no {WEIGHTS}; expected a sentence-transformers model folder")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(WEIGHTS))
    _converted(source / WEIGHTS, target / WEIGHTS, dtype)
    return target


def pack_model(source: Path, bundle: Path) -> Path:
    """The model folder ``source`` into ``bundle/minilm`` with float16 weights."""
    return _copy_model(source, bundle / MODEL, torch.float16)


def restore_model(bundle: Path, target: Path) -> Path:
    """The bundle's model as a float32 model folder at ``target`` (loadable by labelcon and sentence-transformers)."""
    return _copy_model(bundle / MODEL, target, torch.float32)


def pack_data(source: Path, bundle: Path, name: str, rows: dict[str, int] | None = None) -> Path:
    """The splits of the data folder ``source`` (``train/dev/test.jsonl``, ``labels.txt``),
    gzipped into ``bundle/data``; ``rows`` keeps only the first lines of a split."""
    target = bundle / DATA
    target.mkdir(parents=True)
    for split in SPLITS:
        lines = (source / f"{split}.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        limit = (rows or {}).get(split)
        with gzip.open(target / f"{split}.jsonl.gz", "wt", encoding="utf-8") as out:
            out.writelines(lines[:limit] if limit else lines)
    shutil.copy(source / "labels.txt", target / "labels.txt")
    (target / "NAME").write_text(name + "\n", encoding="utf-8")
    return target


def restore_data(bundle: Path, target: Path) -> tuple[Path, str]:
    """The bundle's data set unpacked into ``target``; returns the folder and the data set's name."""
    source = bundle / DATA
    target.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with gzip.open(source / f"{split}.jsonl.gz", "rt", encoding="utf-8") as packed:
            (target / f"{split}.jsonl").write_text(packed.read(), encoding="utf-8")
    shutil.copy(source / "labels.txt", target / "labels.txt")
    return target, (source / "NAME").read_text(encoding="utf-8").strip()


def folder_bytes(path: Path) -> int:
    """The size of every file under ``path``."""
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
