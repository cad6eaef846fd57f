"""Raw records out of JSONL, CSV, TSV, Parquet and plain-text files, with their line numbers.

Each reader yields ``(where, record)`` pairs: ``where`` is ``"line 7"`` (the 1-based
physical line a record starts on; for CSV/TSV the line its row starts on, the header
being line 1) or ``"row 7"`` for Parquet; ``record`` is a dict of field -> value.
Blank lines are not records and are skipped. CSV and TSV follow the usual quoting rules
(as pandas and spreadsheets write them: a field holding the delimiter, a quote or a line
break is wrapped in double quotes, inner quotes doubled). Files are read as UTF-8.
Validating what the fields hold is the job of :mod:`labelcon.data.dataset`; this module
only turns bytes into records and says exactly where a file is malformed.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
>>> _ = p.write_text('text,labels\\n"hi, there",greeting\\n')
>>> list(iter_records(p))
[('line 2', {'text': 'hi, there', 'labels': 'greeting'})]
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

FORMATS = ("jsonl", "csv", "tsv", "parquet", "txt")
SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}
TXT_FIELD = "text"


class DataError(ValueError):
    """Input data that labelcon cannot use; the message names the file, the place,
    what was expected and what came."""


def show(value: object, limit: int = 60) -> str:
    """A short description of a value for error messages: its type and a clipped repr."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def detect_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format name for ``path``: ``format`` if given, else from the file extension."""
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"{path}: format={format!r} is not supported; expected one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; expected one of "
            f"{', '.join(sorted(SUFFIXES))}, or pass format= (one of {', '.join(FORMATS)})"
        )
    return SUFFIXES[suffix]


def read_text(path: str | os.PathLike) -> str:
    """The whole file decoded as UTF-8 (a leading byte-order mark is dropped)."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: expected UTF-8 text, got the byte {raw[exc.start : exc.start + 1]!r} "
            f"that is not valid UTF-8 ({exc.reason}); re-save the file as UTF-8"
        ) from None


def iter_records(path: str | os.PathLike, format: str | None = None) -> Iterator[tuple[str, dict]]:
    """Yield ``(where, record)`` for every record in ``path``; raise :class:`DataError`
    on a malformed file, and when it holds no records at all."""
    fmt = detect_format(path, format)
    reader = {"jsonl": _jsonl, "csv": _delimited, "tsv": _delimited, "parquet": _parquet, "txt": _txt}[fmt]
    empty = True
    for item in reader(path, fmt):
        empty = False
        yield item
    if empty:
        raise DataError(f"{path}: the file holds no records; expected {_EXPECTED[fmt]}")


_EXPECTED = {
    "jsonl": "one JSON object per line",
    "csv": "a header line and one row per item",
    "tsv": "a header line and one row per item",
    "parquet": "a table with at least one row",
    "txt": "one text per line",
}


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Physical lines (split on ``\\n`` only, so U+2028 inside JSON strings is safe),
    without line endings, skipping blank ones."""
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield number, line


def _jsonl(path: str | os.PathLike, fmt: str) -> Iterator[tuple[str, dict]]:
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}, line {number}: expected a JSON object, got malformed JSON "
                f"({exc.msg.removesuffix(' at')} at column {exc.colno}): {line[:80]!r}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object, got {show(record)}")
        yield f"line {number}", record


def _txt(path: str | os.PathLike, fmt: str) -> Iterator[tuple[str, dict]]:
    for number, line in _lines(path):
        yield f"line {number}", {TXT_FIELD: line}


def _delimited(path: str | os.PathLike, fmt: str) -> Iterator[tuple[str, dict]]:
    delimiter = "," if fmt == "csv" else "\t"
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}, line {start}: expected a well-formed {fmt.upper()} row, got {exc}") from None
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            duplicated = sorted({name for name in header if header.count(name) > 1})
            if duplicated:
                raise DataError(f"{path}, line {start}: expected distinct column names, got {duplicated} twice")
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {start}: expected {len(header)} fields as in the header {header}, "
                f"got {len(row)}: {row!r:.120}"
            )
        yield f"line {start}", dict(zip(header, row))


def _parquet(path: str | os.PathLike, fmt: str) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"reading the Parquet file {path} needs pyarrow: pip install pyarrow (or pip install 'labelcon[parquet]')"
        ) from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises its own error types for unreadable files
        raise DataError(f"{path}: expected a Parquet file, got one pyarrow cannot read: {exc}") from None
    for number, record in enumerate(rows, start=1):
        yield f"row {number}", record
