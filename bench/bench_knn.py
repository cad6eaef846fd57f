"""Nearest-neighbour search at 10^5 and 10^6 items: exact (blocked) against faiss HNSW,
both as configured in :mod:`labelcon.heads.index`, printed as markdown tables.

    python bench/bench_knn.py [--sizes 100000 1000000] [--queries 1000] [--k 10] [--dim 384]
                              [--centres 1000] [--noise 1.0] [--ef-sweep 32 64 128 256]
                              [--hnsw-m M] [--ef-construction E] [--threads 1] [--json FILE]

Data: a clustered mixture, as embeddings of real items are (random unit vectors have
no neighbourhood structure at all, which makes every index look either perfect or
hopeless). ``--centres`` random unit centres mu_c; item = normalise(mu_c + noise * g /
sqrt(D)), c uniform, g ~ N(0, I_D): with ``--noise 1`` two items of one cluster have
cosine ~0.5 and of different clusters ~0. Queries are fresh draws from the mixture, not
indexed items.

Per size: ``NearestNeighbors(exact=True)`` searches all queries (the ground truth, and
the exact backend's latency); ``NearestNeighbors(exact=False)`` is built (build time)
and searched at its default ``ef_search`` (latency, recall@k = |approx ∩ exact| / k
averaged over queries); the same graph is then searched at every ``--ef-sweep`` value;
the table notes which backend the automatic switch (``exact=None``) picks at that size.
Bars: 1,000 queries in under 2 s, recall@10 >= 0.95. Latencies are the median of
``--repeats`` searches, in process CPU seconds and wall seconds. One thread by default
(BLAS, torch and faiss's OpenMP): the CPU time is then the time on one quiet core and is
barely touched by other users of a shared machine, who stretch only the wall time (with
several threads, OpenMP threads spin at barriers while a neighbour holds the core, which
inflates both); the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import sys
from functools import partial

import faiss
import numpy as np
import torch
from machine import machine
from threadpoolctl import threadpool_limits
from timing import timed

from labelcon.heads import index as index_module
from labelcon.heads.index import NearestNeighbors, exact_by_default

DEFAULTS = {name: p.default for name, p in inspect.signature(NearestNeighbors).parameters.items()}


def mixture(n: int, dim: int, centres: np.ndarray, noise: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors float32 [n, dim] around random ``centres`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        block = centres[rng.integers(len(centres), size=m)]
        block += rng.standard_normal((m, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / k."""
    k = exact.shape[1]
    return float(np.mean([len(set(a.tolist()) & set(e.tolist())) / k for a, e in zip(approx, exact, strict=True)]))


def exact_search(x: np.ndarray, queries: np.ndarray, k: int, repeats: int) -> tuple[float, float, np.ndarray]:
    """Median (wall, CPU) seconds of the exact backend's search, and its neighbours (the ground truth)."""
    index = NearestNeighbors(x, exact=True)
    wall, cpu, (_, truth) = timed(lambda: index.search(queries, k), repeats)
    return wall, cpu, truth


def run_size(n: int, args: argparse.Namespace, centres: np.ndarray, queries: np.ndarray) -> dict:
    x = mixture(n, args.dim, centres, args.noise, seed=1)
    wall, cpu, truth = exact_search(x, queries, args.k, args.repeats)
    row = {"n": n, "auto": "exact" if exact_by_default(n) else "hnsw", "exact_wall": wall, "exact_cpu": cpu}
    print(f"n={n}: exact {cpu:.2f} s CPU / {wall:.2f} s wall; building HNSW ...", flush=True)

    wall, cpu, hnsw = timed(
        partial(
            NearestNeighbors,
            x,
            exact=False,
            hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction,
            ef_search=args.ef_search,
        )
    )
    row.update(build_wall=wall, build_cpu=cpu)
    del x
    wall, cpu, (_, found) = timed(lambda: hnsw.search(queries, args.k), args.repeats)
    row.update(hnsw_wall=wall, hnsw_cpu=cpu, hnsw_recall=recall(found, truth), sweep=[])
    print(f"  build {row['build_cpu']:.0f} s CPU; search {cpu:.2f} s CPU, recall {row['hnsw_recall']:.4f}", flush=True)
    for ef in args.ef_sweep:
        hnsw.ef_search = ef
        wall, cpu, (_, found) = timed(lambda: hnsw.search(queries, args.k), args.repeats)
        row["sweep"].append({"ef_search": ef, "wall": wall, "cpu": cpu, "recall": recall(found, truth)})
    return row


def report(rows: list[dict], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        "`" + " ".join(["python bench/bench_knn.py", *args.argv]) + "`",
        "",
        f"{datetime.date.today().isoformat()}; {machine()}; faiss {faiss.__version__}; {args.threads} thread(s); "
        f"load average {load[0]:.1f} at start, {load[1]:.1f} at end (shared machine).",
        f"{args.queries} queries, k={args.k}, dim {args.dim}, {args.centres} centres, noise {args.noise}; HNSW M="
        f"{args.hnsw_m}, efConstruction={args.ef_construction}, efSearch={args.ef_search}; automatic switch to "
        f"HNSW above {index_module.APPROXIMATE_ABOVE:,} items.",
        "",
        "| items | default backend | exact search: CPU s (wall s) | HNSW build: CPU s (wall s) "
        "| HNSW search: CPU s (wall s) | HNSW recall@10 |",
        "|---:|:---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['auto']} | {r['exact_cpu']:.2f} ({r['exact_wall']:.2f}) | {r['build_cpu']:.0f} "
            f"({r['build_wall']:.0f}) | {r['hnsw_cpu']:.2f} ({r['hnsw_wall']:.2f}) | {r['hnsw_recall']:.4f} |"
        )
    lines += ["", "efSearch sweep on the same graphs (search CPU s / recall@10):", ""]
    lines.append("| items | " + " | ".join(f"efSearch={s['ef_search']}" for s in rows[0]["sweep"]) + " |")
    lines.append("|---:|" + "---:|" * len(rows[0]["sweep"]))
    for r in rows:
        lines.append(f"| {r['n']:,} | " + " | ".join(f"{s['cpu']:.2f} / {s['recall']:.4f}" for s in r["sweep"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hnsw-m", type=int, default=DEFAULTS["hnsw_m"])
    parser.add_argument("--ef-construction", type=int, default=DEFAULTS["ef_construction"])
    parser.add_argument("--ef-search", type=int, default=DEFAULTS["ef_search"])
    parser.add_argument("--ef-sweep", type=int, nargs="*", default=[16, 32, 64, 128, 256])
    parser.add_argument("--threads", type=int, default=1, help="threads for BLAS, torch and faiss")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    threadpool_limits(limits=args.threads)
    centres = np.random.default_rng(0).standard_normal((args.centres, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = mixture(args.queries, args.dim, centres, args.noise, seed=2)
    load_start = os.getloadavg()[0]
    rows = [run_size(n, args, centres, queries) for n in args.sizes]
    text = report(rows, args, (load_start, os.getloadavg()[0]))
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "rows": rows, "report": text}, handle, indent=1)


if __name__ == "__main__":
    main()
