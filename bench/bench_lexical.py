"""The lexical vote at 10^4-10^6 training texts: fit time, query latency and peak memory of
:class:`labelcon.heads.lexical.LexicalKNN`, beside scikit-learn's brute-force cosine
``NearestNeighbors`` on the same TF-IDF rows (what a user would reach for instead).

    python bench/bench_lexical.py [--sizes 10000 100000 1000000] [--queries 1000] [--k 20]
                                  [--labels 10000] [--corpus FILE] [--json FILE]

Data: documents of three sentences drawn at random (seeded) from a corpus of sentences,
one per line: by default ``$LABELCON_DATA/wiki1m/train.txt`` (``LABELCON_DATA`` defaults
to ``shared/data`` beside the repository), 300,000 Wikipedia sentences, so 10^6 documents reuse sentences
in new combinations. Each document gets 1-3 labels from ``--labels`` labels with
power-law (Zipf, exponent 1.1) frequencies; the labels only shape the vote's output,
not its cost. Queries are fresh documents of the same kind.

Each size runs in its own process so that its peak resident memory (``ru_maxrss``) is
its own. Per size: ``LexicalKNN.fit`` (TF-IDF vocabulary and idf, the training rows and
their transpose), ``sparse_scores`` on the queries (the vote, as the estimator calls
it), and sklearn ``NearestNeighbors(metric="cosine", algorithm="brute")`` fitted on the
same rows and asked the same ``k`` neighbours (neighbours only, no vote). One thread
(BLAS); the CPU time is the time on one quiet core, the load average is printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from data_dir import default_data_dir
from machine import machine
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits
from timing import timed

from labelcon.heads.lexical import LexicalKNN


def documents(sentences: list[str], n: int, seed: int, per_doc: int = 3) -> list[str]:
    """``n`` documents of ``per_doc`` sentences drawn at random from ``sentences``."""
    picks = np.random.default_rng(seed).integers(len(sentences), size=(n, per_doc))
    return [" ".join(sentences[i] for i in row) for row in picks]


def power_law_labels(n: int, n_labels: int, seed: int) -> sp.csr_matrix:
    """1-3 labels per item, label c drawn with probability proportional to (c + 1)^-1.1."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_labels + 1) ** 1.1
    counts = rng.integers(1, 4, size=n)
    cols = rng.choice(n_labels, size=int(counts.sum()), p=p / p.sum())
    rows = np.repeat(np.arange(n), counts)
    Y = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n, n_labels))
    Y.data[:] = 1.0  # a label drawn twice for one item is held once
    return Y


def run_size(n: int, args: argparse.Namespace) -> dict:
    """Measure one size (called in a child process)."""
    sentences = Path(args.corpus).read_text(encoding="utf-8").splitlines()
    train = documents(sentences, n, seed=1)
    queries = documents(sentences, args.queries, seed=2)
    Y = power_law_labels(n, args.labels, seed=3)
    row: dict = {"items": n}
    with threadpool_limits(1):
        row["fit_wall"], row["fit_cpu"], vote = timed(lambda: LexicalKNN(k=args.k).fit(train, Y))
        row["vocabulary"] = vote.items_.shape[1]
        row["nnz_per_item"] = vote.items_.nnz / n
        row["vote_wall"], row["vote_cpu"], scores = timed(lambda: vote.sparse_scores(queries))
        row["vote_nnz_per_query"] = scores.nnz / args.queries
        row["rss_after_vote_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        rows_q = vote.features_.transform(queries)
        knn = NearestNeighbors(n_neighbors=args.k, metric="cosine", algorithm="brute").fit(vote.items_)
        row["sklearn_wall"], row["sklearn_cpu"], _ = timed(lambda: knn.kneighbors(rows_q))
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--corpus", default=str(default_data_dir() / "wiki1m" / "train.txt"))
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: measure one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_size(args.one, args)))
        return
    if not Path(args.corpus).is_file():
        sys.exit(f"error: corpus {args.corpus} not found (one sentence per line; set --corpus or LABELCON_DATA)")
    print(f"# {datetime.date.today()} · {machine()} · load average {os.getloadavg()[0]:.1f}")
    print(f"# {args.queries} queries, k={args.k}, {args.labels} labels, corpus {args.corpus}\n")
    print(
        "| items | vocabulary | nnz / item | fit wall s (CPU s) | vote: queries wall s (CPU s) "
        "| sklearn brute cosine kNN wall s (CPU s) | peak RSS GB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for n in args.sizes:
        child = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--queries",
            str(args.queries),
            "--k",
            str(args.k),
            "--labels",
            str(args.labels),
            "--corpus",
            args.corpus,
        ]
        row = json.loads(subprocess.run(child, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        rows.append(row)
        print(
            f"| {n:,} | {row['vocabulary']:,} | {row['nnz_per_item']:.0f} "
            f"| {row['fit_wall']:.1f} ({row['fit_cpu']:.1f}) | {row['vote_wall']:.2f} ({row['vote_cpu']:.2f}) "
            f"| {row['sklearn_wall']:.2f} ({row['sklearn_cpu']:.2f}) | {row['peak_rss_gb']:.2f} |",
            flush=True,
        )
    print(f"\n# load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"date": str(datetime.date.today()), "machine": machine(), "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
