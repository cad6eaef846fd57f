"""Datasets of texts with label sets, and the readers that build them from files.

A :class:`Dataset` holds ``texts`` and one tuple of label names per text (possibly
empty: an item with no labels is a valid item). :func:`read_dataset` reads JSONL, CSV,
TSV, Parquet or plain text (``.txt``: one text per line, no labels).

How a labels field is read:

- a JSON / Parquet list of strings is the label set;
- ``null``, a missing field, or an empty / whitespace-only string is the empty set;
- a string is split on ``label_sep``. For CSV and TSV ``label_sep`` defaults to ``","``.
  For JSONL and Parquet it defaults to ``None``: the whole string is *one* label (a
  separator is never guessed; pass ``label_sep`` to split);
- a CSV/TSV cell written as a list literal (``["a", "b"]`` or pandas' ``['a', 'b']``)
  is read as that list;
- names are stripped of surrounding whitespace; an empty name is an error; a name
  repeated within one item counts once (first occurrence order is kept).

Everything else (numbers, objects, lists holding non-strings) is a :class:`DataError`
naming the file and line; no record is ever skipped silently (blank lines are not
records).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
>>> _ = p.write_text('{"text": "refund please", "labels": ["refund", "billing"]}\\n'
...                  '{"text": "thanks!", "labels": []}\\n')
>>> ds = read_dataset(p)
>>> len(ds), ds.labels
(2, [('refund', 'billing'), ()])
>>> ds.subset([1]).texts
['thanks!']
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from labelcon.data.records import DataError, detect_format, iter_records, read_text, show

if TYPE_CHECKING:
    from labelcon.data.labels import LabelSpace


@dataclass
class Dataset:
    """Texts and their label sets (tuples of names; ``()`` = no labels).

    ``source``: the file read, if any. ``where``: each item's place in it, as the readers
    of :mod:`labelcon.data.records` name it (``"line 7"``; ``"row 7"`` for Parquet); None
    for items not read from a file, which are then named ``"item 7"`` (1-based).
    """

    texts: list[str]
    labels: list[tuple[str, ...]]
    source: str | None = None
    where: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(
                f"expected one label set per text, got {len(self.texts)} texts and {len(self.labels)} label sets"
            )
        if self.where is not None and len(self.where) != len(self.texts):
            raise ValueError(f"expected one place per text, got {len(self.texts)} texts and {len(self.where)} places")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Iterable[int]) -> Dataset:
        """The items at ``indices`` (in that order), same source."""
        rows = [int(i) for i in indices]
        where = None if self.where is None else [self.where[i] for i in rows]
        return Dataset([self.texts[i] for i in rows], [self.labels[i] for i in rows], self.source, where)

    def fingerprint(self) -> dict[str, Any]:
        """The item count and a SHA-256 of the texts and label sets: what a resumed run
        checks to be training on the data it started with."""
        digest = hashlib.sha256()
        for text, labels in zip(self.texts, self.labels, strict=True):
            item = json.dumps([text, list(labels)], ensure_ascii=False, default=lambda v: np.asarray(v).tolist())
            digest.update(item.encode("utf-8"))
        return {"items": len(self), "sha256": digest.hexdigest(), "source": self.source}

    def place(self, index: int) -> str:
        """Where item ``index`` (0-based) came from, for messages: ``"d.jsonl, line 7"``,
        or ``"item 8"`` for items not read from a file."""
        where = self.where[index] if self.where is not None else f"item {index + 1}"
        return f"{self.source}, {where}" if self.source else where

    def label_matrix(self, space: LabelSpace, *, ignore_unknown: bool = False) -> tuple[sp.csr_matrix, Counter]:
        """The label sets encoded in ``space`` (:meth:`LabelSpace.encode`), with the labels
        outside it counted by name. They are dropped with ``ignore_unknown``; otherwise the
        first one raises a :class:`DataError` naming its file and line and the ways out."""
        matrix, unknown = space.encode(self.labels, unknown="ignore", return_unknown=True)
        if unknown and not ignore_unknown:
            items = [i for i, names in enumerate(self.labels) if any(name not in space for name in names)]
            first = items[0]
            label = next(name for name in self.labels[first] if name not in space)
            met = list(dict.fromkeys(name for i in items for name in self.labels[i] if name not in space))
            raise DataError(
                f"{self.place(first)}: unknown label {label!r} ({_count(len(unknown), 'unknown label')} in "
                f"{_count(len(items), 'item')}, first: {met[:10]}): labels met outside training are an error; "
                "pass --ignore-unknown-labels "
                "(Python: ignore_unknown_labels=True) to count them as misses, or --labels-file with the full "
                "label list (Python: labels_file=...)"
            )
        return matrix, unknown


@dataclass
class PairDataset:
    """Sentence pairs with a similarity score (STS-B style)."""

    texts1: list[str]
    texts2: list[str]
    scores: list[float]
    source: str | None = None

    def __len__(self) -> int:
        return len(self.scores)


def read_dataset(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    labels_field: str | None = "labels",
    label_sep: str | None = None,
    format: str | None = None,
) -> Dataset:
    """Read a labelled data file; ``labels_field=None`` or ``""`` reads texts only (all
    label sets empty), as does a ``.txt`` file.

    The format comes from the extension (``.jsonl .ndjson .csv .tsv .parquet .pq .txt``)
    unless ``format`` is given. See the module docstring for how labels are read.
    A ``labels_field`` that no record has is an error (a typo would otherwise make every
    item unlabelled).
    """
    fmt = detect_format(path, format)
    if fmt == "txt" or not labels_field:
        labels_field = None
    sep = label_sep if label_sep is not None or fmt not in ("csv", "tsv") else ","
    texts: list[str] = []
    labels: list[tuple[str, ...]] = []
    places: list[str] = []
    seen_fields: set[str] = set()
    labels_seen = False
    for where, record in iter_records(path, fmt):
        texts.append(_text(record, text_field, path, where))
        places.append(where)
        seen_fields.update(record)
        if labels_field is not None and labels_field in record:
            labels_seen = True
            labels.append(
                parse_labels(record[labels_field], sep, fmt in ("csv", "tsv"), f"{path}, {where}", labels_field)
            )
        else:
            labels.append(())
    if labels_field is not None and not labels_seen:
        raise DataError(
            f"{path}: expected a labels field {labels_field!r}, got records with the fields {sorted(seen_fields)}; "
            "name the labels field with --labels-field NAME (Python: labels_field=NAME), or pass --labels-field '' "
            "(Python: labels_field=None) to read the texts as unlabelled (for --objective simcse)"
        )
    return Dataset(texts, labels, str(path), places)


def as_dataset(
    data: Dataset | str | os.PathLike | tuple[Sequence[str], Sequence[object]],
    *,
    text_field: str = "text",
    labels_field: str | None = "labels",
    label_sep: str | None = None,
) -> Dataset:
    """A :class:`Dataset` from a Dataset (returned as it is), a file path
    (:func:`read_dataset` with the field options), a Hugging Face ``datasets.Dataset``
    (:func:`hf_columns`, with the field options) or a ``(texts, label_sets)`` pair.

    In a pair, a label set is a list, tuple, set or 1-D numpy array of label names; a
    string is one label (``"sports"`` -> ``("sports",)``); ``None`` or an empty string is
    no labels. Names are stripped, an empty name is an error, a repeated name counts once
    and a set's names are sorted. Any other label set, or a text that is not a non-empty
    string, is a :class:`DataError` naming its index.

    >>> as_dataset((["go team!", "rates rise"], ["sports", {"news", "money"}])).labels
    [('sports',), ('money', 'news')]
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_dataset(data, text_field=text_field, labels_field=labels_field, label_sep=label_sep)
    if is_hf_dataset(data):
        data = hf_columns(data, text_field=text_field, labels_field=labels_field)
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError(f"expected a path, a Dataset or a (texts, label_sets) pair, got {show(data)}")
    texts, label_sets = data
    for name, part in (("texts", texts), ("label_sets", label_sets)):
        if isinstance(part, str):
            raise DataError(f"expected {name} as a sequence with one entry per item, got a single string {part[:40]!r}")
    texts, label_sets = list(texts), list(label_sets)
    if len(texts) != len(label_sets):
        raise DataError(f"expected one label set per text, got {len(texts)} texts and {len(label_sets)} label sets")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"texts[{i}]: expected a non-empty string, got {show(text)}")
    return Dataset(texts, [_label_set(value, i) for i, value in enumerate(label_sets)])


def is_hf_dataset(data: object) -> bool:
    """Whether ``data`` is a Hugging Face ``datasets.Dataset`` (told without importing ``datasets``)."""
    return type(data).__module__.startswith("datasets.") and hasattr(data, "column_names") and hasattr(data, "features")


def hf_columns(data: Any, *, text_field: str = "text", labels_field: str | None = "labels") -> tuple[list, list]:
    """The text and label columns of a Hugging Face ``datasets.Dataset`` as a ``(texts,
    label_sets)`` pair for :func:`as_dataset`: label columns of class-label integers
    (``ClassLabel``, or a list of them) become the labels' names; ``labels_field`` None or
    ``''`` reads the texts as unlabelled.

    The columns are named as for files (``text_field`` / ``--text-field``, ``labels_field``
    / ``--labels-field``), as sentence-transformers and SetFit users pass them."""
    columns = list(data.column_names)
    if text_field not in columns:
        raise DataError(
            f"the Hugging Face dataset has no column {text_field!r} (its columns: {columns}); "
            "name the text column with text_field= (--text-field)"
        )
    texts = list(data[text_field])
    if not labels_field:
        return texts, [None] * len(texts)
    if labels_field not in columns:
        raise DataError(
            f"the Hugging Face dataset has no column {labels_field!r} (its columns: {columns}); name the "
            "label column with labels_field= (--labels-field), or pass labels_field=None for unlabelled texts"
        )
    feature = data.features[labels_field]
    names = getattr(getattr(feature, "feature", feature), "names", None)  # ClassLabel, or a list of ClassLabel
    values = list(data[labels_field])
    if names is not None:
        values = [[names[i] for i in value] if isinstance(value, list) else names[value] for value in values]
    return texts, values


def _label_set(value: object, index: int) -> tuple[str, ...]:
    """One label set given from Python (see :func:`as_dataset`)."""
    where = f"label_sets[{index}]"
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if not isinstance(value, (list, tuple, set, frozenset)) and not (isinstance(value, np.ndarray) and value.ndim == 1):
        raise DataError(
            f"{where}: expected a label set: a list, tuple or set of label names, one name as a string, or None; "
            f"got {show(value)}"
        )
    bad = next((name for name in value if not isinstance(name, str)), None)
    if bad is not None:
        raise DataError(f"{where}: expected label names as strings, got a {type(value).__name__} holding {show(bad)}")
    names = [name.strip() for name in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
    if "" in names:
        raise DataError(f"{where}: expected non-empty label names, got an empty one in {show(value)}")
    return tuple(dict.fromkeys(names))


def read_texts(path: str | os.PathLike, *, text_field: str = "text", format: str | None = None) -> list[str]:
    """Just the texts of a file (``.txt``: one per line; JSONL/CSV/TSV/Parquet: ``text_field``)."""
    return read_dataset(path, text_field=text_field, labels_field=None, format=format).texts


def read_pairs(
    path: str | os.PathLike,
    *,
    fields: tuple[str, str, str] = ("text1", "text2", "score"),
    format: str | None = None,
) -> PairDataset:
    """Read scored sentence pairs; ``fields`` names the two text fields and the score field."""
    first, second, score_field = fields
    pairs = PairDataset([], [], [], str(path))
    for where, record in iter_records(path, format):
        pairs.texts1.append(_text(record, first, path, where))
        pairs.texts2.append(_text(record, second, path, where))
        pairs.scores.append(_score(record, score_field, path, where))
    return pairs


def read_label_descriptions(path: str | os.PathLike) -> dict[str, str]:
    """Label texts from a TSV of ``label<TAB>description`` lines (a ``label\tdescription``
    header is skipped). Used by the label-text head and objective instead of bare names."""
    texts: dict[str, str] = {}
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip() or (number == 1 and line.strip().lower() == "label\tdescription"):
            continue
        name, tab, description = line.partition("\t")
        if not tab or not name.strip() or not description.strip():
            raise DataError(f"{path}, line {number}: expected 'label<TAB>description', got {line[:80]!r}")
        if name.strip() in texts:
            raise DataError(f"{path}, line {number}: expected each label once, got {name.strip()!r} again")
        texts[name.strip()] = description.strip()
    return texts


def label_texts(names: Sequence[str], descriptions: str | os.PathLike | None = None) -> list[str]:
    """What label-text heads and objectives embed for each label: its description from the
    ``descriptions`` TSV (:func:`read_label_descriptions`) when it has one, else its name."""
    known = read_label_descriptions(descriptions) if descriptions else {}
    return [known.get(name, name) for name in names]


def parse_labels(value: object, sep: str | None, cell: bool, where: str, field: str = "labels") -> tuple[str, ...]:
    """One item's label set from a field value (see the module docstring for the rules)."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if cell and text.startswith("[") and text.endswith("]"):
            return parse_labels(_list_literal(text, where, field), sep, False, where, field)
        names = text.split(sep) if sep is not None else [text]
    elif isinstance(value, (list, tuple)):
        bad = next((v for v in value if not isinstance(v, str)), None)
        if bad is not None:
            raise DataError(f"{where}: expected {field!r} to be a list of strings, got a list holding {show(bad)}")
        names = list(value)
    else:
        raise DataError(f"{where}: expected {field!r} to be a list of strings or a string, got {show(value)}")
    stripped = [name.strip() for name in names]
    if "" in stripped:
        raise DataError(f"{where}: expected non-empty label names in {field!r}, got an empty one in {show(value)}")
    return tuple(dict.fromkeys(stripped))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _list_literal(text: str, where: str, field: str) -> list:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise DataError(
            f'{where}: expected {field!r} as a list literal like ["a", "b"] or a separated string like a,b; '
            f"got {text[:60]!r}"
        ) from None
    if not isinstance(value, list):
        raise DataError(f"{where}: expected {field!r} to be a list, got {show(value)}")
    return value


def _text(record: dict, field: str, path: str | os.PathLike, where: str) -> str:
    if field not in record:
        raise DataError(
            f"{path}, {where}: expected a text field {field!r}, got a record with the fields {sorted(record)}; "
            "name the text field with text_field= / --text-field"
        )
    value = record[field]
    if not isinstance(value, str):
        raise DataError(f"{path}, {where}: expected {field!r} to be a string, got {show(value)}")
    if not value.strip():
        raise DataError(f"{path}, {where}: expected a non-empty text in {field!r}, got {value!r}")
    return value


def _score(record: dict, field: str, path: str | os.PathLike, where: str) -> float:
    if field not in record:
        raise DataError(
            f"{path}, {where}: expected a score field {field!r}, got a record with the fields {sorted(record)}"
        )
    value = record[field]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{path}, {where}: expected a finite number in {field!r}, got {show(value)}")
    return float(value)
