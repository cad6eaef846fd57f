"""Pairs and tuples of texts: ``(anchor, positive)``, ``(anchor, positive, negative...)``
and scored pairs ``(text1, text2, score)``, from JSONL / CSV / TSV / Parquet files or a
Hugging Face ``datasets.Dataset``.

``fields`` names the text columns in order: the anchor, its positive, then any hard
negatives; with a ``score_field`` there are exactly two text columns and each record
carries a gold similarity (STS-B style). Every record must hold a non-empty string in
each text column and, for scored pairs, a finite number; a bad record is a
:class:`~labelcon.data.DataError` naming the file, the line, what was expected, what came
and the setting that names the columns (``--pair-fields`` / ``pair_fields=``,
``--pair-score-field`` / ``pair_score_field=``).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "nli.jsonl"
>>> _ = p.write_text('{"anchor": "a man sleeps", "positive": "a person rests", "negative": "a man runs"}\\n')
>>> pairs = read_pair_records(p, fields=("anchor", "positive", "negative"))
>>> pairs.columns, pairs.scores, pairs.kind
([['a man sleeps'], ['a person rests'], ['a man runs']], None, 'tuples')
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labelcon.data.dataset import _score, _text, is_hf_dataset
from labelcon.data.records import DataError, iter_records

FIELDS_HELP = "name the text columns with --pair-fields A,B[,NEG...] (Python: pair_fields='A,B')"
SCORE_HELP = "name the score column with --pair-score-field NAME (Python: pair_score_field=NAME)"


@dataclass
class PairRecords:
    """Text tuples in columns (``columns[m][i]``: text m of record i) and, for scored
    pairs, their gold ``scores``. ``fields``: the columns' names; ``source`` and
    ``where``: the file and each record's place in it, when read from a file."""

    columns: list[list[str]]
    scores: list[float] | None
    fields: tuple[str, ...]
    source: str | None = None
    where: list[str] | None = None

    def __len__(self) -> int:
        return len(self.columns[0])

    @property
    def kind(self) -> str:
        """``"scored"`` (trained with CoSENT) or ``"tuples"`` (in-batch contrast)."""
        return "tuples" if self.scores is None else "scored"

    def fingerprint(self) -> dict[str, Any]:
        """The record count and a SHA-256 of the texts and scores: what a resumed run
        checks to be training on the pairs it started with."""
        digest = hashlib.sha256()
        for record in zip(*self.columns, *([self.scores] if self.scores is not None else [])):
            digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        return {"items": len(self), "sha256": digest.hexdigest(), "source": self.source}

    @property
    def texts(self) -> list[str]:
        """Every text of every record, column after column."""
        return [text for column in self.columns for text in column]


def parse_fields(fields: str | Sequence[str], score_field: str | None) -> tuple[str, ...]:
    """The text columns from ``"anchor,positive"`` or a sequence of names, checked: at
    least two, no repeats, exactly two for scored pairs.

    >>> parse_fields("text1, text2", "score")
    ('text1', 'text2')
    """
    names = tuple(name.strip() for name in (fields.split(",") if isinstance(fields, str) else fields))
    if len(names) < 2 or "" in names:
        raise DataError(f"expected at least two text columns (anchor, positive), got {list(names)}; {FIELDS_HELP}")
    if len(set(names)) != len(names):
        raise DataError(f"expected each text column once, got {list(names)}; {FIELDS_HELP}")
    if score_field is not None and len(names) != 2:
        raise DataError(
            f"scored pairs have two text columns and a score, got the text columns {list(names)} with "
            f"the score column {score_field!r}; {FIELDS_HELP}"
        )
    if score_field is not None and score_field in names:
        raise DataError(f"the score column {score_field!r} is also a text column in {list(names)}; {SCORE_HELP}")
    return names


def read_pair_records(
    path: str | os.PathLike,
    *,
    fields: str | Sequence[str] = ("anchor", "positive"),
    score_field: str | None = None,
    format: str | None = None,
) -> PairRecords:
    """Read pairs, tuples or scored pairs from a file (format from the extension unless
    ``format`` is given); see the module docstring."""
    names = parse_fields(fields, score_field)
    pairs = PairRecords([[] for _ in names], [] if score_field is not None else None, names, str(path), [])
    for where, record in iter_records(path, format):
        _check_fields(record, names, score_field, f"{path}, {where}")
        for column, name in zip(pairs.columns, names):
            column.append(_text(record, name, path, where))
        if score_field is not None:
            pairs.scores.append(_score(record, score_field, path, where))
        pairs.where.append(where)
    return pairs


def as_pair_records(
    data: PairRecords | str | os.PathLike | Any,
    *,
    fields: str | Sequence[str] = ("anchor", "positive"),
    score_field: str | None = None,
) -> PairRecords:
    """:class:`PairRecords` from PairRecords (as they are), a file path
    (:func:`read_pair_records`) or a Hugging Face ``datasets.Dataset`` with those columns."""
    if isinstance(data, PairRecords):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_pair_records(data, fields=fields, score_field=score_field)
    if not is_hf_dataset(data):
        raise TypeError(
            f"expected pairs as a file path, a Hugging Face dataset or PairRecords, got {type(data).__name__}"
        )
    names = parse_fields(fields, score_field)
    missing = [name for name in (*names, *([score_field] if score_field else [])) if name not in data.column_names]
    if missing:
        raise DataError(
            f"the Hugging Face dataset has no column {missing[0]!r} (its columns: {data.column_names}); "
            f"{SCORE_HELP if missing[0] == score_field else FIELDS_HELP}"
        )
    pairs = PairRecords([[] for _ in names], [] if score_field else None, names)
    for index, record in enumerate(data.select_columns([*names, *([score_field] if score_field else [])])):
        where = f"row {index}"
        for column, name in zip(pairs.columns, names):
            column.append(_text(record, name, "the Hugging Face dataset", where))
        if score_field:
            pairs.scores.append(_score(record, score_field, "the Hugging Face dataset", where))
    if not len(pairs):
        raise DataError("the Hugging Face dataset holds no pairs")
    return pairs


def _check_fields(record: dict, names: tuple[str, ...], score_field: str | None, where: str) -> None:
    """A record lacking a named column: say which, what the record has, and the setting."""
    for name in names:
        if name not in record:
            raise DataError(
                f"{where}: expected a text column {name!r}, got a record with the fields "
                f"{sorted(record)}; {FIELDS_HELP}"
            )
    if score_field is not None and score_field not in record:
        raise DataError(
            f"{where}: expected a score column {score_field!r}, got a record with the fields "
            f"{sorted(record)}; {SCORE_HELP}"
        )
