"""Similar-item search: labelcon's trained space against the neighbours a user has without it,
and the query latency of ``labelcon search``, printed as markdown tables.

    python bench/bench_search.py goemotions --run runs/go-static [--queries 1000] [--k 10]
                                 [--systems labelcon,tfidf,minilm] [--sizes 10000 100000 1000000]
                                 [--corpus-limit N] [--repeats 3] [--data-dir DIR] [--json FILE]

Corpus: the data set's train split (``--corpus-limit``: a seeded sample of it); queries: a
seeded sample of ``--queries`` labelled test items. For every query's top ``--k`` corpus
items, two figures, averaged over all hits of all queries:

- share sharing a label: the hit holds at least one of the query's labels;
- Jaccard: ``|Y_query ∩ Y_hit| / |Y_query ∪ Y_hit|``.

Systems: ``labelcon`` (the run's encoder: ``model.index(train)`` + ``model.search``);
``tfidf`` (cosine between TF-IDF rows, word 1-2-grams, sublinear tf, min_df=2, fitted on
the corpus: neighbours without any model); ``minilm`` (frozen all-MiniLM-L6-v2, mean
pooled, normalised, 256 tokens: what a sentence-transformers user embeds with). Bar
(GoEmotions, static-encoder run, 1,000 queries): labelcon's share beats TF-IDF's by 0.05.

Speed, with the run's model:

- end to end: ``labelcon index`` of the corpus into a copy of the run, then, in a fresh
  process, ``labelcon search RUN --input queries.txt --k K`` (load, embed, search, print):
  wall seconds, median of ``--repeats`` (bar: under 10 s for 1,000 queries);
- at each of ``--sizes``: the corpus embeddings tiled with a little noise up to N items
  (real neighbourhood structure at any size), indexed with the automatic backend (exact up
  to ``APPROXIMATE_ABOVE`` items, faiss HNSW above): build seconds, and the search
  seconds of the query embeddings (median of ``--repeats``), CPU and wall.

``--run``: a labelcon run directory, e.g. GoEmotions' static-encoder run
(``labelcon train --dataset goemotions --encoder static --out runs/go-static``); without
it a static-encoder run is trained into a temporary directory (``--minutes`` budget).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from data_dir import default_data_dir
from machine import machine
from sklearn.feature_extraction.text import TfidfVectorizer
from timing import timed

from labelcon import Labelcon
from labelcon.data import Dataset, load_split
from labelcon.encoders import TransformerEncoder
from labelcon.heads.index import APPROXIMATE_ABOVE, NearestNeighbors
from labelcon.metrics import top_k
from labelcon.search import Corpus, SearchIndex

SYSTEMS = ("labelcon", "tfidf", "minilm")
SEED = 13
#: Standard deviation of the noise added to tiled embeddings, relative to a unit vector.
TILE_NOISE = 0.05


def overlap(query_labels: list[tuple[str, ...]], hit_labels: list[list[tuple[str, ...]]]) -> dict[str, float]:
    """Share of hits holding a query label, and mean Jaccard of the label sets, over all hits.

    >>> overlap([("a",), ("b", "c")], [[("a", "b"), ()], [("c",)]])
    {'share_sharing_a_label': 0.6667, 'jaccard': 0.3333}
    """
    shared, jaccard = [], []
    for query, hits in zip(query_labels, hit_labels, strict=True):
        for labels in hits:
            common = len(set(query) & set(labels))
            shared.append(common > 0)
            jaccard.append(common / len(set(query) | set(labels)))
    return {"share_sharing_a_label": round(float(np.mean(shared)), 4), "jaccard": round(float(np.mean(jaccard)), 4)}


def tfidf_neighbours(corpus: list[str], queries: list[str], k: int, block: int = 256) -> np.ndarray:
    """Indices [m, k] of each query's k most cosine-similar corpus rows in TF-IDF space."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x = vectorizer.fit_transform(corpus).T.tocsc()
    q = vectorizer.transform(queries)
    return np.vstack([top_k((q[i : i + block] @ x).toarray(), k)[0] for i in range(0, q.shape[0], block)])


def minilm_neighbours(corpus: list[str], queries: list[str], k: int) -> np.ndarray:
    encoder = TransformerEncoder("minilm", max_length=256).eval()
    index = NearestNeighbors(encoder.encode(corpus, batch_size=128), exact=True)
    return index.search(encoder.encode(queries, batch_size=128), k)[1]


def quality(system: str, model: Labelcon, corpus: Dataset, queries: Dataset, k: int) -> dict[str, float]:
    if system == "labelcon":
        hits = model.search(queries.texts, k)
        found = [[tuple(hit.labels) for hit in row] for row in hits]
    else:
        idx = (tfidf_neighbours if system == "tfidf" else minilm_neighbours)(corpus.texts, queries.texts, k)
        found = [[corpus.labels[i] for i in row] for row in idx]
    return overlap(queries.labels, found)


def end_to_end(run: Path, corpus_file: Path, queries: Dataset, k: int, repeats: int, work: Path) -> dict[str, float]:
    """``labelcon index`` into a copy of the run, then ``labelcon search --input`` timed in fresh processes."""
    copy = shutil.copytree(run, work / "run", ignore=shutil.ignore_patterns("checkpoint.pt", "index"))
    command = [sys.executable, "-m", "labelcon"]
    wall, _, _ = timed(
        lambda: subprocess.run([*command, "index", str(copy), "--corpus", str(corpus_file), "-q"], check=True)
    )
    query_file = work / "queries.txt"
    query_file.write_text("".join(text.replace("\n", " ") + "\n" for text in queries.texts), encoding="utf-8")
    search = [*command, "search", str(copy), "--input", str(query_file), "--k", str(k)]
    seconds, _, _ = timed(lambda: subprocess.run(search, check=True, stdout=subprocess.DEVNULL), repeats)
    return {"index_seconds": round(wall, 2), "search_seconds": round(seconds, 2)}


def at_size(n: int, base: np.ndarray, corpus: Dataset, query_vectors: np.ndarray, k: int, repeats: int) -> dict:
    """Build and search an index of ``n`` items: ``base`` tiled with noise (see the module docstring)."""
    rng = np.random.default_rng(SEED)
    rows = np.arange(n) % len(base)
    vectors = base[rows] + rng.standard_normal((n, base.shape[1]), dtype=np.float32) * np.float32(
        TILE_NOISE / np.sqrt(base.shape[1])
    )
    items = Corpus(list(range(n)), [corpus.texts[i] for i in rows], [corpus.labels[i] for i in rows])
    build_wall, build_cpu, index = timed(lambda: SearchIndex.build(items, lambda _: vectors))
    wall, cpu, _ = timed(lambda: index.search(query_vectors, k), repeats)
    return {
        "items": n,
        "backend": index.meta["backend"],
        "build_cpu": round(build_cpu, 2),
        "build_wall": round(build_wall, 2),
        "search_cpu": round(cpu, 3),
        "search_wall": round(wall, 3),
    }


def report(result: dict) -> str:
    lines = [
        f"## Similar-item search: {result['dataset']}",
        "",
        f"{result['machine']}; {result['date']}; load average {result['load'][0]:.2f} -> {result['load'][1]:.2f}",
        f"run: `{result['run']}`; corpus: {result['corpus_items']} train items; {result['queries']} test queries; "
        f"k = {result['k']}",
        "",
        "| neighbours from | share of hits sharing a label | mean Jaccard |",
        "|---|---:|---:|",
    ]
    for system, figures in result["quality"].items():
        lines.append(f"| {system} | {figures['share_sharing_a_label']:.4f} | {figures['jaccard']:.4f} |")
    e2e = result["end_to_end"]
    lines += [
        "",
        f"`labelcon index`: {e2e['index_seconds']:.1f} s; `labelcon search --input` of {result['queries']} "
        f"queries end to end: {e2e['search_seconds']:.2f} s wall",
        "",
        f"| items | backend (exact up to {APPROXIMATE_ABOVE:,}) | build s CPU / wall | "
        f"{result['queries']} queries s CPU / wall |",
        "|---:|---|---:|---:|",
    ]
    for row in result["sizes"]:
        lines.append(
            f"| {row['items']:,} | {row['backend']} | {row['build_cpu']:.2f} / {row['build_wall']:.2f} | "
            f"{row['search_cpu']:.3f} / {row['search_wall']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a registered data set, e.g. goemotions or arxiv_abstracts")
    parser.add_argument("--run", type=Path, help="a labelcon run directory (default: train a static-encoder run)")
    parser.add_argument("--minutes", type=float, default=12.0, help="training budget without --run")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--corpus-limit", type=int, help="index a seeded sample of this many train items")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; expected some of {','.join(SYSTEMS)}")
    load_start = os.getloadavg()[0]
    corpus, test = load_split(args.dataset, "train", args.data_dir), load_split(args.dataset, "test", args.data_dir)
    rng = np.random.default_rng(SEED)
    if args.corpus_limit and args.corpus_limit < len(corpus):
        corpus = corpus.subset(np.sort(rng.choice(len(corpus), args.corpus_limit, replace=False)))
    labelled = [i for i, labels in enumerate(test.labels) if labels]
    queries = test.subset(np.sort(rng.choice(labelled, min(args.queries, len(labelled)), replace=False)))
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        work = Path(tmp)
        run = args.run
        if run is None:
            run = work / "trained"
            dev = load_split(args.dataset, "dev", args.data_dir)
            Labelcon(encoder="static", max_time_minutes=args.minutes).fit(corpus, dev, out_dir=run)
        model = Labelcon.load(run).index(corpus)
        result = {
            "dataset": args.dataset,
            "run": str(args.run or "a static-encoder run trained here"),
            "corpus_items": len(corpus),
            "queries": len(queries),
            "k": args.k,
            "machine": machine(),
            "date": datetime.date.today().isoformat(),
        }
        result["quality"] = {}
        for system in systems:
            print(f"neighbours from {system} ...", flush=True)
            result["quality"][system] = quality(system, model, corpus, queries, args.k)
        corpus_file = work / "corpus.jsonl"
        corpus_file.write_text(
            "".join(
                json.dumps({"text": t, "labels": list(y)}) + "\n"
                for t, y in zip(corpus.texts, corpus.labels, strict=True)
            ),
            encoding="utf-8",
        )
        print("labelcon index / labelcon search ...", flush=True)
        result["end_to_end"] = end_to_end(run, corpus_file, queries, args.k, args.repeats, work)
        query_vectors = model.encode(queries.texts)
        result["sizes"] = []
        for n in args.sizes:
            print(f"{n:,} items ...", flush=True)
            result["sizes"].append(at_size(n, model.index_.embeddings, corpus, query_vectors, args.k, args.repeats))
    result["load"] = (load_start, os.getloadavg()[0])
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
