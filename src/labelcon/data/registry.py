"""Registered data sets by name: found locally, or fetched once from the official source.

A data set directory holds ``train.jsonl``, ``dev.jsonl`` (when the release has a dev
split), ``test.jsonl`` and ``labels.txt`` (not for the pair data set ``stsb``).
:func:`resolve_dataset` looks, in order, in

1. ``data_dir`` when given (the ``--data-dir`` option): ``data_dir/<name>/``, or
   ``data_dir`` itself when it holds the files. When it does not, the data set is
   fetched into ``data_dir/<name>/`` and nowhere else;
2. ``$LABELCON_DATA/<name>/`` when that variable is set and the directory holds the files;
3. the user cache ``datasets/<name>/`` under :func:`labelcon.io.cache_dir` (``$LABELCON_CACHE``,
   else ``$XDG_CACHE_HOME/labelcon``, else ``~/.cache/labelcon``).

Fetching: the original release files are downloaded into ``<dir>/raw/`` (files already
there, e.g. put there by hand, are used as they are) and converted (see
:mod:`labelcon.data.sources`). Without network the :class:`DataError` says which files
to put where. ``demo`` is the small data set shipped inside labelcon.

>>> registered_names()
('demo', 'goemotions', 'reuters21578', 'stsb')
>>> registered_names(labelled_only=True)
('demo', 'goemotions', 'reuters21578')
>>> train = load_split("demo", "train")
>>> len(train), train.labels[1]
(240, ('refund', 'technical'))
"""

from __future__ import annotations

import http.client
import os
from importlib import resources
from pathlib import Path

from labelcon.data.dataset import Dataset, PairDataset, read_dataset, read_pairs
from labelcon.data.records import DataError
from labelcon.data.sources import SOURCES, download
from labelcon.io import cache_dir

DATASETS = {
    "demo": "customer-support messages, 10 labels, multi-label (ships with labelcon)",
    "goemotions": "GoEmotions: Reddit comments, 27 emotions + neutral, multi-label",
    "reuters21578": "Reuters-21578 ModApte: newswire stories, 90 topics, multi-label",
    "stsb": "STS Benchmark: sentence pairs with similarity scores 0-5",
}
PAIR_DATASETS = {"stsb"}
SPLITS = ("train", "dev", "test")
DEMO_FILES = {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl", "labels": "labels.txt"}


def registered_names(*, labelled_only: bool = False) -> tuple[str, ...]:
    """The names :func:`resolve_dataset` knows; ``labelled_only``: without the pair data
    sets, i.e. those ``labelcon train --dataset`` can train on."""
    return tuple(name for name in DATASETS if not (labelled_only and name in PAIR_DATASETS))


def demo_paths() -> dict[str, Path]:
    """Paths of the demo data set's files: keys ``train``, ``dev``, ``test``, ``labels``."""
    root = Path(str(resources.files("labelcon") / "resources" / "demo"))
    return {key: root / name for key, name in DEMO_FILES.items()}


def resolve_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding data set ``name`` (see the module docstring for where it looks)."""
    if name not in DATASETS:
        known = "; ".join(f"{key} ({text})" for key, text in DATASETS.items())
        raise DataError(f"expected a registered data set name, got {name!r}; registered: {known}")
    if name == "demo":
        return demo_paths()["train"].parent
    outputs = SOURCES[name].outputs
    if data_dir is not None:
        candidates = [Path(data_dir) / name, Path(data_dir)]
    else:
        env = os.environ.get("LABELCON_DATA")
        candidates = ([Path(env) / name] if env else []) + [cache_dir() / "datasets" / name]
    for directory in candidates:
        if all((directory / file).is_file() for file in outputs):
            return directory
    target = candidates[0] if data_dir is not None else candidates[-1]
    _fetch(name, target)
    return target


def dataset_files(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, str | None]:
    """The files of data set ``name`` (:func:`resolve_dataset`) by the keyword they go to:
    ``train``, ``dev`` and ``test`` of ``Labelcon.fit``, ``labels_file`` and
    ``label_descriptions`` of the config; None for those it lacks."""
    root = resolve_dataset(name, data_dir)
    files = {
        "train": "train.jsonl",
        "dev": "dev.jsonl",
        "test": "test.jsonl",
        "labels_file": "labels.txt",
        "label_descriptions": "label_descriptions.tsv",
    }
    return {key: str(root / file) if (root / file).is_file() else None for key, file in files.items()}


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Dataset | PairDataset:
    """One split of a registered data set: a :class:`Dataset`, or a :class:`PairDataset` for ``stsb``."""
    if split not in SPLITS:
        raise DataError(f"expected a split in {SPLITS}, got {split!r}")
    path = resolve_dataset(name, data_dir) / f"{split}.jsonl"
    if not path.is_file():
        hint = "; carve one out of train with labelcon.data.train_dev_split" if split == "dev" else ""
        raise DataError(f"{name} has no {split} split: expected {path}, got no such file{hint}")
    return read_pairs(path) if name in PAIR_DATASETS else read_dataset(path)


def _fetch(name: str, target: Path) -> None:
    source = SOURCES[name]
    raw = target / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(_missing_message(name, target, f"cannot create {raw}: {exc}")) from None
    for file, url in source.raw_files.items():
        if not (raw / file).is_file():
            try:
                download(url, raw / file)
            except (OSError, http.client.HTTPException) as exc:
                raise DataError(_missing_message(name, target, f"downloading {url} failed: {exc}")) from None
    source.convert(raw, target)


def _missing_message(name: str, target: Path, reason: str) -> str:
    source = SOURCES[name]
    raw_lines = "\n".join(f"  {target / 'raw' / file}  <- {url}" for file, url in source.raw_files.items())
    return (
        f"data set {name!r} is not available locally and could not be fetched ({reason}).\n"
        f"Either put the converted files {', '.join(source.outputs)} in {target}/ "
        f"(or in DIR/{name}/ and pass --data-dir DIR / data_dir=DIR, or set LABELCON_DATA=DIR),\n"
        f"or download the original release files by hand:\n{raw_lines}\n"
        "and run again: they are converted on first use."
    )
