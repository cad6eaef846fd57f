"""Many labels end to end: memory of a training step and speed of the sparse paths at
10^3, 10^4 and 10^5 labels, printed as markdown tables.

    python bench/bench_many_labels.py [--labels 1000 10000 100000] [--items 100000]
                                      [--per-item 5] [--zipf 1.0] [--batch-size 256]
                                      [--objectives supcon-jaccard mulsupcon label_contrast]
                                      [--heads knn knn-dense prototype label_text]
                                      [--queries 2000] [--threads 1] [--json FILE]

A generated extreme-classification case: ``--items`` items with 1 + Poisson(per_item - 1)
labels each, drawn from C labels with Zipf frequencies p_c ∝ 1 / c^zipf (a few labels
on tens of thousands of items, most on a handful, many on none). Label c has a random
feature vector l_c in R^128 (its "text"); an item is the normalised mean of its labels'
vectors plus as much Gaussian noise, a feature row for an :class:`MLPEncoder`
(128 -> 512 -> 256).

Measured per C:

- ``LabelSpace.encode`` of the label-name sets (CSR, never N x C) and one epoch of
  :class:`LabelAwareBatchSampler` planning (CPU seconds; wall seconds in the JSON);
- peak memory of one training step, per objective: a fresh subprocess loads the data,
  then runs :class:`labelcon.training.Trainer` with a one-step time budget (the epoch's
  sampler plan, ``batch_labels`` (sparse above 4096 labels), encoder forward, objective,
  backward, AdamW step). Reported: ``ru_maxrss``, restarted from the resident size after
  loading so it is the peak of the step itself, and that resident size (imports + data);
  their difference is what the step added. Bar: peak under 4 GB;
- per head, in a fresh subprocess: fit on the training items' features and
  ``predict_top_k(k=5)`` for ``--queries`` held-out items (CPU and wall seconds, peak as above,
  P@1 and P@5 from the top-k pairs). ``knn-dense`` is the same kNN head ranked the dense
  way, ``top_k(predict_scores(x))``, for comparison with its sparse ``predict_top_k``.

The subprocesses run with ``--threads`` threads (1 by default), so their CPU seconds are
the time on one quiet core, which other users of a shared machine barely change.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from machine import machine

FEATURES = 128


def generate(n: int, c: int, per_item: float, zipf: float, seed: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Labels [n, c] (CSR), item features [n, FEATURES] and label features [c, FEATURES], float32."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, c + 1) ** zipf
    counts = 1 + rng.poisson(per_item - 1, size=n)
    ids = rng.choice(c, size=int(counts.sum()), p=p / p.sum())
    y = sp.csr_matrix((np.ones(len(ids), dtype=np.float32), (np.repeat(np.arange(n), counts), ids)), shape=(n, c))
    y.sum_duplicates()
    y.data[:] = 1.0
    label_features = (rng.standard_normal((c, FEATURES)) / np.sqrt(FEATURES)).astype(np.float32)
    x = np.asarray(y @ label_features) / np.maximum(np.diff(y.indptr), 1)[:, None]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x += rng.standard_normal(x.shape).astype(np.float32) / np.sqrt(FEATURES)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return y, x.astype(np.float32), label_features


class Clock:
    """Wall and process CPU seconds since construction (CPU time is what other users of a
    shared machine barely change; with several threads it adds theirs up)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        """(wall, CPU) seconds elapsed."""
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def resident_mb() -> float:
    """Current resident set size (VmRSS), MB."""
    with open("/proc/self/status", encoding="ascii") as handle:
        line = next(line for line in handle if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def peak_mb() -> float:
    """Peak resident set size of this process (ru_maxrss), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Restart the peak (``ru_maxrss`` / VmHWM) from the current resident size, so the peak
    read later is that of the work done since, not of loading the data (Linux >= 4.0:
    ``echo 5 > /proc/self/clear_refs``). False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------- subprocesses


def child_step(data: Path, objective_name: str, batch_size: int) -> dict:
    """One training step through the Trainer; memory before and at peak."""
    from labelcon.config import Config
    from labelcon.encoders import MLPEncoder
    from labelcon.objectives import build_objective
    from labelcon.training import Trainer
    from labelcon.training.settings import TrainingSettings

    y = sp.load_npz(data / "train_labels.npz").tocsr()
    x = np.load(data / "train_features.npy")
    label_features = np.load(data / "label_features.npy")
    reset, before = reset_peak(), resident_mb()
    encoder = MLPEncoder(input_dim=FEATURES, hidden_dim=512, output_dim=256)
    objective = build_objective(objective_name, temperature=0.1)
    # a time budget that runs out after the first step
    config = Config(
        encoder="mlp", objective=objective_name, epochs=1, batch_size=batch_size, lr=1e-3, max_time_minutes=1e-9
    )
    label_texts = list(label_features) if objective.needs_label_embeddings else None
    trainer = Trainer(
        encoder, objective, TrainingSettings.from_config(config), label_texts=label_texts, show_progress=False
    )
    clock = Clock()
    state = trainer.fit(x, y)
    return {
        "steps": state.global_step,
        "seconds": clock.read(),
        "rss_before_mb": before,
        "peak_mb": peak_mb(),
        "peak_reset": reset,
        "loss": state.history[-1]["loss"],
    }


def child_head(data: Path, head_name: str, k: int) -> dict:
    """Fit a head on the training features, then top-k of the held-out queries."""
    from labelcon.heads import build_head
    from labelcon.metrics import precision_at_k, top_k

    y = sp.load_npz(data / "train_labels.npz").tocsr()
    x = np.load(data / "train_features.npy")
    queries, y_queries = np.load(data / "query_features.npy"), sp.load_npz(data / "query_labels.npz").tocsr()
    label_features = np.load(data / "label_features.npy")
    reset, before = reset_peak(), resident_mb()
    clock = Clock()
    if head_name == "label_text":
        head = build_head("label_text").fit(x, y, label_embeddings=label_features)
    else:
        head = build_head("knn" if head_name == "knn-dense" else head_name).fit(x, y)
    fit_seconds, clock = clock.read(), Clock()
    pair = top_k(head.predict_scores(queries), k) if head_name == "knn-dense" else head.predict_top_k(queries, k)
    return {
        "fit_seconds": fit_seconds,
        "top_k_seconds": clock.read(),
        "rss_before_mb": before,
        "peak_mb": peak_mb(),
        "peak_reset": reset,
        "p_at_1": precision_at_k(y_queries, pair, 1),
        "p_at_5": precision_at_k(y_queries, pair, 5),
    }


def run_child(threads: int, *args: str) -> dict:
    """Run this script in a fresh interpreter in child mode with ``threads`` threads for
    torch, BLAS and OpenMP; its last stdout line is JSON."""
    env = {
        **os.environ,
        **{name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- the parent


def run_labels(c: int, args: argparse.Namespace, workdir: Path) -> dict:
    from labelcon.data.labels import LabelSpace
    from labelcon.sampling import LabelAwareBatchSampler

    y_all, x_all, label_features = generate(args.items + args.queries, c, args.per_item, args.zipf, seed=c)
    names = np.array([f"label{i:06d}" for i in range(c)], dtype=object)
    sets = [tuple(names[y_all.indices[a:b]]) for a, b in zip(y_all.indptr[:-1], y_all.indptr[1:], strict=True)]
    clock = Clock()
    encoded = LabelSpace(names.tolist()).encode(sets)
    encode_seconds = clock.read()
    if not (sp.isspmatrix_csr(encoded) and (encoded != y_all).nnz == 0):
        raise AssertionError("LabelSpace.encode did not give the generated labels back as CSR")
    y, x = y_all[: args.items], x_all[: args.items]
    freq = np.bincount(y.indices, minlength=c)

    clock = Clock()
    sampler = LabelAwareBatchSampler(y, args.batch_size, seed=0, drop_last=True)
    n_batches = sum(1 for _ in sampler)
    sampler_seconds = clock.read()

    data = workdir / f"c{c}"
    data.mkdir()
    sp.save_npz(data / "train_labels.npz", y)
    sp.save_npz(data / "query_labels.npz", y_all[args.items :])
    np.save(data / "train_features.npy", x)
    np.save(data / "query_features.npy", x_all[args.items :])
    np.save(data / "label_features.npy", label_features)
    row = {
        "labels": c,
        "items": args.items,
        "nnz": int(y.nnz),
        "labels_with_items": int((freq > 0).sum()),
        "max_freq": int(freq.max()),
        "median_freq_seen": float(np.median(freq[freq > 0])),
        "encode_seconds": encode_seconds,
        "sampler_seconds": sampler_seconds,
        "batches": n_batches,
        "steps": {},
        "heads": {},
    }
    for objective in args.objectives:
        row["steps"][objective] = run_child(args.threads, "step", str(data), objective, str(args.batch_size))
        print(f"C={c} {objective}: {row['steps'][objective]}", flush=True)
    for head in args.heads:
        row["heads"][head] = run_child(args.threads, "head", str(data), head, str(args.k))
        print(f"C={c} {head}: {row['heads'][head]}", flush=True)
    return row


def report(rows: list[dict], args: argparse.Namespace, load: tuple[float, float]) -> str:
    import torch

    lines = [
        "`" + " ".join(["python bench/bench_many_labels.py", *args.argv]) + "`",
        "",
        f"{datetime.date.today().isoformat()}; {machine()}; torch {torch.__version__}; load average "
        f"{load[0]:.1f} at start, {load[1]:.1f} at end (shared machine); {args.threads} thread(s) in the measured "
        "subprocesses.",
        f"{args.items:,} training items, ~{args.per_item} labels per item, Zipf exponent {args.zipf}, batch "
        f"{args.batch_size}, MLPEncoder {FEATURES} -> 512 -> 256; {args.queries:,} held-out queries, k={args.k}.",
        "",
        "| labels C | labels with items | most frequent label | (item, label) pairs | LabelSpace.encode CPU s "
        "| sampler epoch CPU s (batches) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['labels']:,} | {r['labels_with_items']:,} | {r['max_freq']:,} items | {r['nnz']:,} "
            f"| {r['encode_seconds'][1]:.2f} | {r['sampler_seconds'][1]:.2f} ({r['batches']}) |"
        )
    reset = all(s["peak_reset"] for r in rows for s in [*r["steps"].values(), *r["heads"].values()])
    how = "restarted after loading the data" if reset else "including the loading: the peak could not be restarted"
    lines += ["", f"Peak memory of one training step (fresh process, `ru_maxrss` {how}; before = imports + data):", ""]
    lines.append("| labels C | " + " | ".join(f"{o}: peak MB (before)" for o in args.objectives) + " |")
    lines.append("|---:|" + "---:|" * len(args.objectives))
    for r in rows:
        cells = [f"{s['peak_mb']:,.0f} ({s['rss_before_mb']:,.0f})" for s in r["steps"].values()]
        lines.append(f"| {r['labels']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Heads: fit CPU s, top-{args.k} of {args.queries:,} queries CPU s (wall s), peak MB, P@1 / P@{args.k}:",
        "",
    ]
    lines.append("| labels C | " + " | ".join(args.heads) + " |")
    lines.append("|---:|" + ":---|" * len(args.heads))
    for r in rows:
        cells = [
            f"{h['fit_seconds'][1]:.1f}, {h['top_k_seconds'][1]:.2f} ({h['top_k_seconds'][0]:.2f}), "
            f"{h['peak_mb']:,.0f} MB, {h['p_at_1']:.2f} / "
            f"{h['p_at_5']:.2f}"
            for h in r["heads"].values()
        ]
        lines.append(f"| {r['labels']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, data, name, number = sys.argv[2:6]
        child = child_step if mode == "step" else child_head
        result = child(Path(data), name, int(number))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--per-item", type=float, default=5.0)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--objectives", nargs="*", default=["supcon-jaccard", "mulsupcon", "label_contrast"])
    parser.add_argument("--heads", nargs="*", default=["knn", "knn-dense", "prototype", "label_text"])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads of the measured subprocesses")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="labelcon-many-labels-") as tmp:
        rows = [run_labels(c, args, Path(tmp)) for c in args.labels]
    text = report(rows, args, (load_start, os.getloadavg()[0]))
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "rows": rows, "report": text}, handle, indent=1)


if __name__ == "__main__":
    main()
