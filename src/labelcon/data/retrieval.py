"""Retrieval data: queries, a corpus and which corpus items are relevant to which query.

Three files (JSONL / CSV / TSV / Parquet): queries and corpus records with an id and a
text (``id_field``, ``text_field``), relevance records naming a query id and a corpus id
(``query_id``, ``corpus_id``; with a ``score`` column, a record scored 0 or less is not a
relevant pair, as in BEIR's qrels). Ids are compared as strings. A repeated id, or a
relevance record naming an id that its file does not hold, is a
:class:`~labelcon.data.DataError` naming the file and the line.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "q.jsonl").write_text('{"id": "q1", "text": "refund?"}\\n')
>>> _ = (d / "c.jsonl").write_text('{"id": 7, "text": "money back"}\\n{"id": 8, "text": "late parcel"}\\n')
>>> _ = (d / "r.jsonl").write_text('{"query_id": "q1", "corpus_id": 7}\\n')
>>> data = read_retrieval(d / "q.jsonl", d / "c.jsonl", d / "r.jsonl")
>>> data.relevant, data.corpus_ids
([{0}], ['7', '8'])
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labelcon.data.dataset import _score, _text
from labelcon.data.records import DataError, iter_records, show


@dataclass
class RetrievalSet:
    """Query and corpus texts with their ids, and for each query the positions of its
    relevant corpus items (``relevant[q]``: a set of corpus indices)."""

    query_ids: list[str]
    queries: list[str]
    corpus_ids: list[str]
    corpus: list[str]
    relevant: list[set[int]]


def read_retrieval(
    queries: str | os.PathLike,
    corpus: str | os.PathLike,
    relevance: str | os.PathLike,
    *,
    id_field: str = "id",
    text_field: str = "text",
    query_field: str = "query_id",
    corpus_field: str = "corpus_id",
    score_field: str = "score",
) -> RetrievalSet:
    """Read the three files described in the module docstring."""
    query_ids, query_texts = _texts(queries, id_field, text_field)
    corpus_ids, corpus_texts = _texts(corpus, id_field, text_field)
    query_index = {qid: i for i, qid in enumerate(query_ids)}
    corpus_index = {cid: i for i, cid in enumerate(corpus_ids)}
    relevant: list[set[int]] = [set() for _ in query_ids]
    for where, record in iter_records(relevance):
        place = f"{relevance}, {where}"
        qid, cid = (
            _id(record, name, place, flag)
            for name, flag in ((query_field, "query_field"), (corpus_field, "corpus_field"))
        )
        if qid not in query_index:
            raise DataError(f"{place}: expected a query id of {queries}, got {qid!r}, which it does not hold")
        if cid not in corpus_index:
            raise DataError(f"{place}: expected a corpus id of {corpus}, got {cid!r}, which it does not hold")
        if score_field in record and _score(record, score_field, relevance, where) <= 0:
            continue
        relevant[query_index[qid]].add(corpus_index[cid])
    if not any(relevant):
        raise DataError(f"{relevance}: expected at least one relevant (query, corpus item) pair, got none")
    return RetrievalSet(query_ids, query_texts, corpus_ids, corpus_texts, relevant)


def _texts(path: str | os.PathLike, id_field: str, text_field: str) -> tuple[list[str], list[str]]:
    """Ids (as strings, each once) and texts of a queries or corpus file."""
    ids: list[str] = []
    texts: list[str] = []
    first: dict[str, str] = {}
    for where, record in iter_records(path):
        key = _id(record, id_field, f"{path}, {where}", "id_field")
        if key in first:
            raise DataError(f"{path}, {where}: expected each id once, got {key!r} again (first on {first[key]})")
        first[key] = where
        ids.append(key)
        texts.append(_text(record, text_field, path, where))
    return ids, texts


def _id(record: dict, field: str, place: str, setting: str) -> str:
    if field not in record:
        raise DataError(
            f"{place}: expected an id field {field!r}, got a record with the fields {sorted(record)}; "
            f"name it with --{setting.replace('_', '-')} ({setting}=)"
        )
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{place}: expected {field!r} to be a non-empty string or an integer, got {show(value)}")
    return str(value)
