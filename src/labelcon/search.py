"""Similar-item search: the items of a corpus nearest to a query in a model's embedding space.

A :class:`SearchIndex` holds a corpus (ids, texts, label sets), the items' L2-normalised
embeddings and a :class:`~labelcon.heads.index.NearestNeighbors` over them: exact blocked
cosine products up to ``APPROXIMATE_ABOVE`` items, faiss HNSW above (or as ``exact`` asks).
:func:`build_index` embeds a corpus with a model's ``encode``. ``Labelcon.search``
(:class:`SearchMixin`) embeds the query texts, or takes the stored embeddings of indexed
items (search by example, the item itself left out of its hits), and returns each query's
``k`` best hits (:class:`Hit`); ``labels`` keeps the items holding any of those labels, which
are then searched exactly.

Passages: when the model's encoder reads long texts as windows (``windows`` ``"mean"`` or
``"max"``, :mod:`labelcon.encoders.windows`), :func:`build_index` embeds the corpus with
the encoder's ``encode_windows``, in one pass: each item's vector is its windows' vectors
pooled by the encoder's rule (equal to what ``encode`` gives), and the index also keeps
the vector and character span of every window of each item read in more than one window.
``search(..., passages=True)`` then ranks the items by their best window (the largest
cosine similarity of the query to any of the item's windows; an item read in one window is
its own only passage, spanning the whole text) and each :class:`Hit` carries that window
as a :class:`Passage` (``start``, ``end``: character offsets into the item's text, and the
window's similarity, which is the hit's score). The default ranking stays the pooled
vector, for every model: it is the vector the model embeds and calibrates every text by,
it serves search by example the same way, and its results do not change with passages
kept; the best window is the choice when the evidence is one passage of a long item.

An index is stored beside the model, in ``DIR/index/``: ``index.json`` (what was indexed,
from which file, by which model version), ``items.jsonl``, ``embeddings.npy`` and, for
HNSW, ``hnsw.npy`` (the serialised graph); with passages also ``windows.npy`` (the window
vectors), ``window_spans.npy`` (each window's item position, start and end) and, for HNSW,
``passages_hnsw.npy``; nothing is pickled. An index with passages is written as format 2,
one without as format 1, which is what earlier versions wrote and read; both load. A
loaded index reads its files on first use. Before its first search, :func:`fresh_index` checks that the corpus
file is unchanged (size and modification time, then SHA-256) and that the model is the one
that built it (a few items re-embedded must match their stored embeddings), and rebuilds
the index when either changed.

>>> import numpy as np
>>> vectors = {"red apple": [1, 0], "green apple": [0.8, 0.6], "blue sky": [0, 1]}
>>> encode = lambda texts: np.array([vectors[t] for t in texts], dtype=np.float32)
>>> index = SearchIndex.build(read_corpus(list(vectors)), encode)
>>> [hit.text for hit in index.search(encode(["red apple"]), k=2)[0]]
['red apple', 'green apple']
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from labelcon.data import DataError, Dataset, as_dataset, read_dataset
from labelcon.data.dataset import is_hf_dataset
from labelcon.data.records import iter_records, show
from labelcon.heads.base import l2_normalize
from labelcon.heads.index import NearestNeighbors
from labelcon.io import atomic_directory, atomic_open, read_json, write_json
from labelcon.modeldir import locked, resolve

#: The folder of a model directory that holds its search index.
INDEX_DIR = "index"
#: The format of an index with passages; one without is written as format 1, as before passages.
FORMAT = 2
#: The formats :meth:`SearchIndex.load` reads: 1 (items only) and 2 (items and passages).
READABLE_FORMATS = (1, 2)
#: Items re-embedded to tell whether the model changed since indexing, and the largest
#: difference from their stored embeddings that still counts as the same model.
PROBE_ITEMS = 8
PROBE_TOLERANCE = 1e-3

Encode = Callable[[list[str]], np.ndarray]
#: An encoder's ``encode_windows``: texts to a :class:`labelcon.encoders.WindowEmbeddings`
#: (``items``, ``windows``, ``spans`` with each window's ``owner``, ``start`` and ``end``).
EncodeWindows = Callable[[list[str]], Any]
ItemId = str | int


class Passage(NamedTuple):
    """The window of an item that matched a query best: ``text[start:end]`` of the item,
    and the window's cosine similarity to the query."""

    start: int
    end: int
    score: float


class Hit(NamedTuple):
    """One search result: the indexed item's id, text and labels, and its cosine similarity
    to the query; with ``passages=True`` the similarity of its best window, which
    ``passage`` names (None otherwise)."""

    id: ItemId
    text: str
    labels: list[str]
    score: float
    passage: Passage | None = None


@dataclass
class Corpus:
    """Items to search: ``ids`` (unique; default their 0-based positions), ``texts``, ``labels``
    and, for a corpus read from a file, ``source``: the file's fingerprint and how it was read."""

    ids: list[ItemId]
    texts: list[str]
    labels: list[tuple[str, ...]]
    source: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.texts)


def read_corpus(
    corpus: Dataset | str | os.PathLike | Sequence[str] | tuple[Sequence[str], Sequence[object]] | Any,
    ids: Sequence[ItemId] | None = None,
    *,
    text_field: str = "text",
    labels_field: str | None = "labels",
    label_sep: str | None = None,
    id_field: str | None = None,
) -> Corpus:
    """A :class:`Corpus` from a file (JSONL, CSV, TSV, Parquet, .txt), a :class:`Dataset`, a
    Hugging Face ``datasets.Dataset``, a ``(texts, label_sets)`` pair or a list of texts.
    A file's items are labelled when its records have ``labels_field`` and unlabelled
    otherwise; ``id_field`` names the field
    holding each record's id. ``ids`` gives the ids of a corpus passed from Python."""
    if isinstance(corpus, (str, os.PathLike)):
        if ids is not None:
            raise ValueError(
                "ids= is for a corpus given from Python; name the id field of a file with id_field= / --id-field"
            )
        return _read_file(Path(corpus), text_field, labels_field, label_sep, id_field)
    if isinstance(corpus, (Dataset, tuple)) or is_hf_dataset(corpus):
        data = as_dataset(corpus, text_field=text_field, labels_field=labels_field)
    else:
        if isinstance(corpus, str) or not all(isinstance(text, str) for text in corpus):
            raise DataError(
                f"expected the corpus as a path, a Dataset, a (texts, label_sets) pair or a list of texts, "
                f"got {show(corpus)}"
            )
        data = Dataset(list(corpus), [()] * len(corpus))
    ids = list(range(len(data))) if ids is None else list(ids)
    if len(ids) != len(data):
        raise ValueError(f"expected one id per item, got {len(ids)} ids for {len(data)} items")
    _check_ids(ids, [f"ids[{i}]" for i in range(len(ids))])
    return Corpus(ids, data.texts, data.labels)


def _read_file(
    path: Path, text_field: str, labels_field: str | None, label_sep: str | None, id_field: str | None
) -> Corpus:
    ids: list[ItemId] = []
    places: list[str] = []
    labelled = False
    for where, record in iter_records(path):
        labelled = labelled or bool(labels_field and labels_field in record)
        if id_field is not None:
            if id_field not in record:
                raise DataError(
                    f"{path}, {where}: expected an id field {id_field!r} (--id-field), got a record with "
                    f"the fields {sorted(record)}"
                )
            ids.append(record[id_field])
            places.append(f"{path}, {where}")
    data = read_dataset(
        path, text_field=text_field, labels_field=labels_field if labelled else None, label_sep=label_sep
    )
    if id_field is None:
        ids = list(range(len(data)))
    else:
        _check_ids(ids, places, f" in {id_field!r} (--id-field)")
    read = {"text_field": text_field, "labels_field": labels_field, "label_sep": label_sep, "id_field": id_field}
    return Corpus(ids, data.texts, data.labels, {**file_fingerprint(path), "read": read})


def _check_ids(ids: list[object], places: list[str], field: str = "") -> None:
    """Ids are strings or whole numbers, unique also as strings (search by example looks them up as text)."""
    seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise DataError(f"{places[i]}: expected an id as a string or a whole number{field}, got {show(value)}")
        if str(value) in seen:
            raise DataError(
                f"{places[i]}: id {value!r}{field} repeats the id of {places[seen[str(value)]]}; ids must be unique"
            )
        seen[str(value)] = i


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """A file's absolute path, size, modification time and SHA-256."""
    path = Path(path).resolve()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def _file_changed(source: dict[str, Any]) -> bool:
    """Whether the file of ``source`` (:func:`file_fingerprint`) now holds other bytes; a
    missing file has not changed (the index keeps its stored items)."""
    path = Path(source["path"])
    if not path.is_file():
        return False
    stat = path.stat()
    if (stat.st_size, stat.st_mtime_ns) == (source["size"], source["mtime_ns"]):
        return False
    return file_fingerprint(path)["sha256"] != source["sha256"]


class SearchIndex:
    """A corpus, its embeddings and a nearest-neighbour index over them (see the module docstring).

    ``meta`` is what ``index.json`` holds: ``items``, ``dim``, ``exact`` (as asked: None =
    automatic), ``backend`` (``"exact"`` or ``"hnsw"``), ``source`` (the corpus file's
    fingerprint, or None), ``model`` (the model version that built it, once saved) and,
    for an index with passages, ``passages``: the count of stored window ``rows`` and the
    ``backend`` of the passage search.
    """

    def __init__(self, meta: dict[str, Any], directory: Path | None = None) -> None:
        self.meta = meta
        self.directory = directory
        #: Whether :func:`fresh_index` has checked this index against its file and model.
        self.checked = False

    @classmethod
    def build(
        cls,
        corpus: Corpus,
        encode: Encode,
        *,
        exact: bool | None = None,
        encode_windows: EncodeWindows | None = None,
    ) -> SearchIndex:
        """Embed ``corpus`` with ``encode`` and index it; with ``encode_windows`` (an
        encoder's :meth:`~labelcon.encoders.Encoder.encode_windows`), embed it with that
        instead, once, and keep the windows of the items read in more than one as passages."""
        if not len(corpus):
            raise DataError("the corpus holds no items to index")
        windows = None if encode_windows is None else encode_windows(corpus.texts)
        embeddings = l2_normalize(encode(corpus.texts) if windows is None else windows.items)
        neighbors = NearestNeighbors(embeddings, exact=exact)
        meta = {
            "format": 1,
            "items": len(corpus),
            "dim": int(embeddings.shape[1]),
            "exact": exact,
            "backend": "exact" if neighbors.exact else "hnsw",
            "source": corpus.source,
            "model": None,
        }
        index = cls(meta)
        index.corpus, index.embeddings, index.neighbors = corpus, embeddings, neighbors
        if windows is not None:
            owners = np.array([span.owner for span in windows.spans], dtype=np.int64)
            several = np.bincount(owners, minlength=len(corpus))[owners] > 1
            index.window_embeddings = l2_normalize(windows.windows[several])
            index.window_spans = np.array(
                [(span.owner, span.start, span.end) for span in windows.spans], dtype=np.int64
            ).reshape(-1, 3)[several]
            meta.update(format=FORMAT, passages={"rows": int(several.sum())})
            meta["passages"]["backend"] = "exact" if index.passage_neighbors.exact else "hnsw"
        index.checked = True
        return index

    @property
    def has_passages(self) -> bool:
        """Whether the index was built with passages (``search(..., passages=True)``)."""
        return "passages" in self.meta

    def __len__(self) -> int:
        return int(self.meta["items"])

    @cached_property
    def corpus(self) -> Corpus:
        with open(self.directory / "items.jsonl", encoding="utf-8") as handle:
            items = [json.loads(line) for line in handle]
        return Corpus(
            [item["id"] for item in items],
            [item["text"] for item in items],
            [tuple(item["labels"]) for item in items],
            self.meta.get("source"),
        )

    @cached_property
    def embeddings(self) -> np.ndarray:
        return np.load(self.directory / "embeddings.npy", allow_pickle=False)

    @cached_property
    def neighbors(self) -> NearestNeighbors:
        graph = None if self.meta["backend"] == "exact" else np.load(self.directory / "hnsw.npy", allow_pickle=False)
        return NearestNeighbors(self.embeddings, exact=graph is None, index_bytes=graph)

    @cached_property
    def window_embeddings(self) -> np.ndarray:
        """[W, dim]: the stored windows' L2-normalised embeddings (items read in more than one window)."""
        return np.load(self.directory / "windows.npy", allow_pickle=False)

    @cached_property
    def window_spans(self) -> np.ndarray:
        """[W, 3] int64: each stored window's item position, start and end (characters)."""
        return np.load(self.directory / "window_spans.npy", allow_pickle=False)

    @cached_property
    def _passages(self) -> tuple[np.ndarray, np.ndarray]:
        """Every passage: the stored windows, then each item without stored windows as a
        whole (its vector, the span of its text); their vectors [P, dim] and [P, 3] spans."""
        spans = self.window_spans
        whole = np.setdiff1d(np.arange(len(self)), spans[:, 0])
        lengths = np.array([len(self.corpus.texts[i]) for i in whole], dtype=np.int64)
        vectors = np.concatenate([self.window_embeddings, self.embeddings[whole]])
        whole_spans = np.stack([whole, np.zeros_like(whole), lengths], axis=1).reshape(-1, 3)
        return vectors, np.concatenate([spans, whole_spans]).astype(np.int64)

    @cached_property
    def passage_neighbors(self) -> NearestNeighbors:
        """The nearest-neighbour index over every passage (see :attr:`_passages`)."""
        if self.directory is None:  # being built: the backend as asked, automatic by the count of passages
            return NearestNeighbors(self._passages[0], exact=self.meta["exact"])
        stored = self.meta["passages"]["backend"] == "hnsw"
        graph = np.load(self.directory / "passages_hnsw.npy", allow_pickle=False) if stored else None
        return NearestNeighbors(self._passages[0], exact=not stored, index_bytes=graph)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {str(item): i for i, item in enumerate(self.corpus.ids)}

    def positions(self, ids: Sequence[ItemId]) -> list[int]:
        """The positions of indexed items by id (given as the id or its text)."""
        missing = [item for item in ids if str(item) not in self._positions]
        if missing:
            raise ValueError(
                f"ids not in the index: {missing[:10]} (--like); search by example takes ids of indexed items"
            )
        return [self._positions[str(item)] for item in ids]

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        labels: Sequence[str] | None = None,
        exclude: Sequence[int] | None = None,
        passages: bool = False,
    ) -> list[list[Hit]]:
        """The ``k`` items most similar to each query embedding, best first; ``labels``: only
        items holding any of them; ``exclude``: per query, an item position left out (its own);
        ``passages``: ranked by their best window, which each hit names (module docstring)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if passages:
            return self._search_passages(np.asarray(queries, dtype=np.float32), k, labels, exclude)
        corpus, rows = self.corpus, None
        neighbors = self.neighbors
        if labels:
            rows = self._rows_holding(labels)
            neighbors = NearestNeighbors(self.neighbors.embeddings[rows], exact=True)
        sims, idx = neighbors.search(np.asarray(queries, dtype=np.float32), k + int(exclude is not None))
        results = []
        for q, (row_sims, row_idx) in enumerate(zip(sims, idx, strict=True)):
            hits = []
            for sim, i in zip(row_sims, row_idx, strict=True):
                item = int(i if rows is None else rows[i]) if i >= 0 else -1
                if item < 0 or (exclude is not None and item == exclude[q]):
                    continue
                hits.append(Hit(corpus.ids[item], corpus.texts[item], list(corpus.labels[item]), float(sim)))
            results.append(hits[:k])
        return results

    def _search_passages(
        self, queries: np.ndarray, k: int, labels: Sequence[str] | None, exclude: Sequence[int] | None
    ) -> list[list[Hit]]:
        """:meth:`search` by each item's best window. The ``(k + 1) * M`` nearest passages
        (M: the most windows an item has; ``+ 1`` for an excluded item) hold at least that
        many items, so their first windows among them are the ``k`` best items' best windows."""
        if not self.has_passages:
            raise ValueError(
                "this index holds no passages: passage search (passages=True, --passages) needs a model that reads "
                "long texts as windows (windows 'mean' or 'max', --windows) and the corpus indexed with it again "
                "(labelcon index)"
            )
        corpus, (_, spans) = self.corpus, self._passages
        neighbors, rows = self.passage_neighbors, None
        if labels:
            rows = np.flatnonzero(np.isin(spans[:, 0], self._rows_holding(labels)))
            neighbors = NearestNeighbors(self.passage_neighbors.embeddings[rows], exact=True)
        most = int(np.bincount(spans[:, 0]).max())
        sims, idx = neighbors.search(queries, (k + int(exclude is not None)) * most)
        results = []
        for q, (row_sims, row_idx) in enumerate(zip(sims, idx, strict=True)):
            hits: list[Hit] = []
            seen = set() if exclude is None else {int(exclude[q])}
            for sim, i in zip(row_sims, row_idx, strict=True):
                if i < 0:
                    continue
                item, start, end = (int(v) for v in spans[i if rows is None else rows[i]])
                if item in seen:
                    continue
                seen.add(item)
                passage = Passage(start, end, float(sim))
                hits.append(Hit(corpus.ids[item], corpus.texts[item], list(corpus.labels[item]), float(sim), passage))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    def _rows_holding(self, labels: Sequence[str]) -> np.ndarray:
        wanted = {labels} if isinstance(labels, str) else set(labels)
        rows = np.array([i for i, names in enumerate(self.corpus.labels) if wanted.intersection(names)], dtype=np.int64)
        if not len(rows):
            known = sorted({name for names in self.corpus.labels for name in names})
            shown = (
                ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
                if known
                else "none (the corpus is unlabelled)"
            )
            raise ValueError(
                f"no indexed item holds any of the labels {sorted(wanted)} (--label); labels in the index: {shown}"
            )
        return rows

    def stale(self, encode: Encode) -> str | None:
        """Why the index no longer matches its corpus file or the model, or None when it does."""
        source = self.meta.get("source")
        if source and _file_changed(source):
            return f"the corpus file {source['path']} changed since it was indexed"
        probe = np.unique(np.linspace(0, len(self) - 1, min(PROBE_ITEMS, len(self))).astype(int))
        now = l2_normalize(encode([self.corpus.texts[i] for i in probe]))
        if now.shape[1] != self.embeddings.shape[1] or np.abs(now - self.embeddings[probe]).max() > PROBE_TOLERANCE:
            return "the model is not the one that indexed the corpus"
        return None

    def rebuilt(self, encode: Encode, encode_windows: EncodeWindows | None = None) -> SearchIndex:
        """A new index of the same corpus (:meth:`build` with ``encode`` and
        ``encode_windows``), read again from its file when that still exists."""
        source = self.meta.get("source")
        if source and Path(source["path"]).is_file():
            corpus = read_corpus(source["path"], **source["read"])
        else:
            corpus = self.corpus
        return SearchIndex.build(corpus, encode, exact=self.meta["exact"], encode_windows=encode_windows)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index into ``directory`` as a whole (:func:`labelcon.io.atomic_directory`)."""
        corpus, embeddings = self.corpus, np.asarray(self.embeddings)
        graph = self.neighbors.serialize()
        arrays = {}
        if self.has_passages:
            arrays = {"windows.npy": self.window_embeddings, "window_spans.npy": self.window_spans}
            passage_graph = self.passage_neighbors.serialize()
            if passage_graph is not None:
                arrays["passages_hnsw.npy"] = passage_graph
        with atomic_directory(directory) as tmp:
            with atomic_open(tmp / "items.jsonl") as handle:
                for item, text, labels in zip(corpus.ids, corpus.texts, corpus.labels, strict=True):
                    handle.write(
                        json.dumps({"id": item, "text": text, "labels": list(labels)}, ensure_ascii=False) + "\n"
                    )
            with atomic_open(tmp / "embeddings.npy", "wb") as handle:
                np.save(handle, embeddings, allow_pickle=False)
            if graph is not None:
                arrays["hnsw.npy"] = graph
            for name, array in arrays.items():
                with atomic_open(tmp / name, "wb") as handle:
                    np.save(handle, np.asarray(array), allow_pickle=False)
            write_json(tmp / "index.json", self.meta)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SearchIndex:
        """The index saved in ``directory``; its items, embeddings and graph are read on first use."""
        directory = Path(directory)
        meta = read_json(directory / "index.json")
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
            got = meta.get("format") if isinstance(meta, dict) else meta
            raise ValueError(
                f"{directory / 'index.json'}: expected a search index of format 1 or 2, got format {got!r}; "
                "index the corpus again (labelcon index)"
            )
        return cls(meta, directory)


def build_index(
    model: Any,
    corpus: Any,
    ids: Sequence[ItemId] | None = None,
    *,
    id_field: str | None = None,
    exact: bool | None = None,
) -> SearchIndex:
    """Index ``corpus`` (see :func:`read_corpus`) with ``model.encode``, reading files with
    the model's ``text_field``, ``labels_field`` and ``label_sep``; with passages when the
    model's encoder reads windows (:func:`window_encoder`)."""
    cfg = model.config
    items = read_corpus(
        corpus,
        ids,
        text_field=cfg.text_field,
        labels_field=cfg.labels_field,
        label_sep=cfg.label_sep,
        id_field=id_field,
    )
    return SearchIndex.build(items, model.encode, exact=exact, encode_windows=window_encoder(model))


def window_encoder(model: Any) -> EncodeWindows | None:
    """The ``encode_windows`` of ``model.encoder_`` when that encoder reads long texts as
    windows (``windows`` ``"mean"`` or ``"max"``), else None: the embedding of each text
    and of its windows in one pass, the texts' equal to ``model.encode``'s."""
    encoder = getattr(model, "encoder_", None)
    if getattr(encoder, "windows", "first") == "first":
        return None
    return encoder.encode_windows


def fresh_index(model: Any) -> tuple[SearchIndex, str | None]:
    """``model.index_``, first rebuilt (and set on the model) when its corpus file or the
    model changed since indexing; with the reason it was rebuilt, or None."""
    index = model.index_
    if index is None:
        raise ValueError(
            "this model has no search index: call model.index(corpus) first, or run `labelcon index RUN --corpus FILE`"
        )
    reason = None if index.checked else index.stale(model.encode)
    if reason is not None:
        index = model.index_ = index.rebuilt(model.encode, window_encoder(model))
    index.checked = True
    return index, reason


class SearchMixin:
    """``index`` and ``search`` for :class:`labelcon.Labelcon`, through its public ``encode``,
    ``config`` and ``index_`` only."""

    def index(
        self,
        corpus: Any,
        ids: Sequence[ItemId] | None = None,
        *,
        id_field: str | None = None,
        exact: bool | None = None,
    ) -> Any:
        """Embed ``corpus`` (a path, a list of texts, a Dataset or a ``(texts, label_sets)``
        pair; see :func:`read_corpus`) for :meth:`search`; ``save`` stores the index with the
        model, ``fit`` drops it. ``exact``: None picks exact search up to ``APPROXIMATE_ABOVE``
        items and faiss HNSW above."""
        self.index_ = build_index(self, corpus, ids, id_field=id_field, exact=exact)
        return self

    def search(
        self,
        queries: Sequence[str] = (),
        k: int = 10,
        *,
        labels: Sequence[str] | None = None,
        like: Sequence[ItemId] = (),
        passages: bool = False,
    ) -> list[list[Hit]]:
        """Per query text, then per indexed item named in ``like`` (search by example, the
        item itself left out), the ``k`` nearest indexed items as :class:`Hit` (id, text,
        labels, score = cosine similarity), best first; ``labels``: only items holding any of them.
        ``passages``: rank the items by their best window instead of their pooled vector, and
        name that window in each hit (``hit.passage``; an index built by a model that reads
        windows, see :mod:`labelcon.search`)."""
        if isinstance(queries, str) or isinstance(like, str):
            raise TypeError("expected a list of queries (and of ids for like=), got a single string; wrap it in a list")
        queries, like = list(queries), list(like)
        if not queries and not like:
            raise ValueError("give query texts, or the ids of indexed items to search like (like=)")
        index, _ = fresh_index(self)
        results = index.search(self.encode(queries), k, labels=labels, passages=passages) if queries else []
        if like:
            rows = index.positions(like)
            results += index.search(index.neighbors.embeddings[rows], k, labels=labels, exclude=rows, passages=passages)
        return results


def save_index(directory: str | os.PathLike, index: SearchIndex) -> Path:
    """Store ``index`` in the model directory ``directory`` (under its lock), recording the
    model version it belongs to."""
    directory = Path(directory)
    with locked(directory):
        index.meta["model"] = resolve(directory)[1].get("model")
        return index.save(directory / INDEX_DIR)


def load_index(directory: str | os.PathLike) -> SearchIndex | None:
    """The index stored in the model directory ``directory``, or None."""
    path = Path(directory) / INDEX_DIR
    return SearchIndex.load(path) if (path / "index.json").is_file() else None
