"""GradCache: peak memory and throughput of one MiniLM training step, against
sentence-transformers' ``CachedMultipleNegativesRankingLoss``.

    python bench/bench_gradcache.py [--batches 1024 4096] [--pair-batches 1024 4096]
        [--mini-batch-size 64] [--steps 3] [--budget-texts 3072] [--json results.json]
        [--data ../shared/data/goemotions/train.jsonl]

Every setting runs in a fresh Python process, so its ``ru_maxrss`` (the peak resident
set of that process) is its own peak memory; the script prints it after the model and
optimizer are built ("after load") and after the training steps ("peak"). One step is
what ``labelcon.training.Trainer`` runs per batch: tokenize, embed (in one graph, or
chunk by chunk with :func:`labelcon.training.gradcache.cached_backward` when a
mini-batch size is set), the objective on the whole batch, backward, AdamW. The encoder
is ``build_encoder("minilm", max_length=64, precision=P)`` in train mode (dropout on), with
P = ``--precision`` (default float32, as sentence-transformers computes; ``auto`` gives
labelcon's default, bfloat16 autocast on CPUs that have it).

Contestants:

- ``labelcon supcon-jaccard``: one stream (the batch's texts), multi-label targets;
- ``labelcon simcse``: two streams (each text twice, dropout as the view), InfoNCE;
- ``st cached-mnrl``: sentence-transformers' ``CachedMultipleNegativesRankingLoss`` on
  (text, text) pairs from the same MiniLM folder, the same two streams as ``simcse``.

Texts (and GoEmotions labels) are read from ``--data``, shuffled with a fixed seed, and
each step takes the next batch. A setting runs ``min(steps, budget_texts // batch)``
steps (at least one) and reports the median step time, wall clock and process CPU time.
Settings without GradCache are skipped when their projected peak memory (from the
largest smaller batch already measured) exceeds half the machine's available memory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions" / "train.jsonl"
MAX_LENGTH = 64
LR = 5e-5


def read_data(path: Path, n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """``n`` (text, labels) records of the JSONL file at ``path``, shuffled with ``seed``."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
    if n > len(records):
        raise ValueError(f"{path} holds {len(records)} records; the benchmark needs {n}")
    chosen = [records[i] for i in order[:n]]
    return [r["text"] for r in chosen], [r["labels"] for r in chosen]


def peak_rss_gb() -> float:
    """This process's peak resident set so far, in GB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def labelcon_step_fn(objective_name: str, mini_batch_size: int | None, precision: str = "float32"):
    """A function running one labelcon training step on (texts, label rows)."""
    from labelcon.encoders import build_encoder
    from labelcon.objectives import build_objective
    from labelcon.training.gradcache import cached_backward

    encoder = build_encoder("minilm", max_length=MAX_LENGTH, precision=precision).train()
    objective = build_objective(objective_name)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=LR)

    def loss_fn(*embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        extra = {"positives": embeddings[1]} if objective.needs_positives else {}
        return objective(embeddings[0], labels, **extra)

    def step(texts: list[str], labels: torch.Tensor) -> float:
        streams = [texts, texts] if objective.needs_positives else [texts]
        if mini_batch_size:
            chunked = [
                [encoder.tokenize(s[i : i + mini_batch_size]) for i in range(0, len(s), mini_batch_size)]
                for s in streams
            ]
            loss = cached_backward(encoder, chunked, lambda *z: loss_fn(*z, labels=labels))
        else:
            loss = loss_fn(*(encoder(encoder.tokenize(s)) for s in streams), labels=labels)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step


def st_step_fn(mini_batch_size: int):
    """A function running one sentence-transformers CachedMNRL step on (text, text) pairs."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from labelcon.encoders import shipped_path

    model = SentenceTransformer(str(shipped_path("minilm")), device="cpu")
    model.max_seq_length = MAX_LENGTH
    model.train()
    loss_module = CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)

    def step(texts: list[str], labels: torch.Tensor) -> float:
        features = [model.tokenize(texts), model.tokenize(texts)]
        loss = loss_module(features, None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step


def run_one(setting: dict[str, Any]) -> dict[str, Any]:
    """Run ``setting`` in this process; the result as a dict (printed as JSON by ``--one``)."""
    from labelcon.data import LabelSpace

    batch, steps = setting["batch"], setting["steps"]
    texts, label_sets = read_data(Path(setting["data"]), batch * steps)
    space = LabelSpace.from_label_sets(label_sets)
    labels = torch.from_numpy(space.encode(label_sets).toarray().astype("float32"))
    if setting["impl"] == "st":
        step = st_step_fn(setting["mini_batch_size"])
    else:
        step = labelcon_step_fn(setting["objective"], setting["mini_batch_size"], setting.get("precision", "float32"))
    after_load = peak_rss_gb()
    walls, cpus, losses = [], [], []
    for s in range(steps):
        rows = slice(s * batch, (s + 1) * batch)
        wall, cpu = time.perf_counter(), time.process_time()
        losses.append(step(texts[rows], labels[rows]))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {
        **setting,
        "after_load_gb": after_load,
        "peak_gb": peak_rss_gb(),
        "wall_s": walls,
        "cpu_s": cpus,
        "losses": losses,
        "threads": torch.get_num_threads(),
    }


def available_gb() -> float:
    """MemAvailable from /proc/meminfo, in GB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def settings(
    batches: list[int], pair_batches: list[int], mini_batch: int, steps: int, budget: int, data: str
) -> list[dict[str, Any]]:
    """The benchmark grid: labelcon supcon-jaccard with and without GradCache at each of
    ``batches`` (plain runs at half the batch too, where the full batch may not fit), then
    labelcon simcse against sentence-transformers at each of ``pair_batches``."""
    plain = sorted(set(batches) | {b // 2 for b in batches if b // 2 >= min(batches)})
    grid = [("labelcon", "supcon-jaccard", b, None) for b in plain]
    grid += [("labelcon", "supcon-jaccard", b, mini_batch) for b in batches]
    for b in pair_batches:
        grid += [("labelcon", "simcse", b, mini_batch), ("st", "cached-mnrl", b, mini_batch)]
    return [
        {
            "impl": impl,
            "objective": obj,
            "batch": b,
            "mini_batch_size": m,
            "steps": max(1, min(steps, budget // b)),
            "data": data,
        }
        for impl, obj, b, m in grid
    ]


def projected_peak(setting: dict[str, Any], done: list[dict[str, Any]]) -> float | None:
    """Peak memory of a run without GradCache, scaled linearly in the batch from the largest
    smaller batch measured with the same contestant; None when there is none."""
    same = [
        r
        for r in done
        if r["impl"] == setting["impl"]
        and r["objective"] == setting["objective"]
        and r["mini_batch_size"] is None
        and r["batch"] < setting["batch"]
        and "peak_gb" in r
    ]
    if not same:
        return None
    ref = max(same, key=lambda r: r["batch"])
    return ref["after_load_gb"] + (ref["peak_gb"] - ref["after_load_gb"]) * setting["batch"] / ref["batch"]


def table(results: list[dict[str, Any]]) -> str:
    header = (
        "| contestant | batch | mini-batch | steps | step wall s (median) | step CPU s (median) "
        "| items/s (wall) | peak RSS GB | RSS after load GB |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        name = f"{'labelcon' if r['impl'] == 'labelcon' else 'sentence-transformers'} {r['objective']}"
        mini = r["mini_batch_size"] or "none"
        if "skipped" in r:
            lines.append(f"| {name} | {r['batch']} | {mini} | 0 | not run: {r['skipped']} | | | | |")
            continue
        wall, cpu = statistics.median(r["wall_s"]), statistics.median(r["cpu_s"])
        lines.append(
            f"| {name} | {r['batch']} | {mini} | {len(r['wall_s'])} | {wall:.0f} | {cpu:.0f} "
            f"| {r['batch'] / wall:.1f} | {r['peak_gb']:.2f} | {r['after_load_gb']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument(
        "--pair-batches",
        type=int,
        nargs="*",
        default=[1024, 4096],
        help="batches for the two-stream comparison with sentence-transformers",
    )
    parser.add_argument("--mini-batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="most steps per setting")
    parser.add_argument("--budget-texts", type=int, default=3072, help="steps per setting: about this many rows")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSONL file of {text, labels} records")
    parser.add_argument("--json", help="also write every result to this JSON file")
    parser.add_argument(
        "--precision", default="float32", choices=["float32", "auto", "bfloat16"], help="labelcon's encoder precision"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting (JSON) and print its result
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))), flush=True)
        return

    results: list[dict[str, Any]] = []
    grid = settings(args.batches, args.pair_batches, args.mini_batch_size, args.steps, args.budget_texts, args.data)
    grid = [{**setting, "precision": args.precision} for setting in grid]
    for setting in grid:
        if setting["mini_batch_size"] is None:
            projected = projected_peak(setting, results)
            if projected is not None and projected > available_gb() / 2:
                results.append(
                    {
                        **setting,
                        "skipped": f"projected peak {projected:.1f} GB > half of the {available_gb():.1f} GB available",
                    }
                )
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
                continue
        done = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(setting)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            results.append({**setting, "skipped": f"failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(
        f"date: {datetime.date.today()}, torch {torch.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(table(results))


if __name__ == "__main__":
    main()
