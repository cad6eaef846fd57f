"""Speed of labelcon.objectives (forward + backward, CPU), printed as a markdown table.

    python bench/bench_objectives.py [--repeats 5] [--threads 1 2]

1. supcon(relation="jaccard") at B=4096, D=384 against a bare ``z @ z.T`` forward +
   backward of the same shape (bar: at most 3x), for C=28 dense labels and C=4000 labels
   (~5 per item) given dense and as a sparse CSR tensor.
2. single-label supcon against pytorch-metric-learning's SupConLoss (bar: equal to 1e-5,
   at least 2x faster).
3. mulsupcon against a straightforward per-label loop (bar: equal, at least 10x faster)
   at B=1024, C=100.

Timings are medians over repeats of the process's CPU time and wall time; each
contestant and its baseline run interleaved, so load from other users of the machine hits
both alike. It runs with one intra-op thread, then with two: on a shared machine a
parallel region waits for its slowest thread, so two-thread timings depend on the
neighbours' load far more than one-thread CPU times do.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from labelcon.objectives import mulsupcon, supcon

D = 384


def _labels(n: int, c: int, per_item: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, c, generator=g) < per_item / c).float()
    y[torch.arange(n), torch.randint(0, c, (n,), generator=g)] = 1.0  # no item without labels
    return y


def _embeddings(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def _step(loss_fn: Callable[[], torch.Tensor], z: torch.Tensor) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one forward + backward."""
    wall, cpu = time.perf_counter(), time.process_time()
    loss_fn().backward()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    z.grad = None
    return cpu, wall


def race(contestant: Callable[[], torch.Tensor], baseline: Callable[[], torch.Tensor], z: torch.Tensor, repeats: int):
    """Median (CPU, wall) seconds of forward+backward for both, interleaved, after one
    warm-up each."""
    _step(contestant, z), _step(baseline, z)
    times_c, times_b = [], []
    for _ in range(repeats):
        times_c.append(_step(contestant, z))
        times_b.append(_step(baseline, z))
    medians = [tuple(statistics.median(t[i] for t in times) for i in (0, 1)) for times in (times_c, times_b)]
    return medians[0], medians[1]


def bare_matmul(z: torch.Tensor) -> Callable[[], torch.Tensor]:
    upstream = torch.randn(z.shape[0], z.shape[0])

    def run() -> torch.Tensor:
        return torch.tensordot(z @ z.T, upstream)  # backward: two [B, B] x [B, D] products

    return run


def mulsupcon_loop(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """MulSupCon written label by label: for each label, its holders as anchors against all
    items, self masked, mean log-probability of the other holders."""
    z = F.normalize(z, dim=1)
    losses = []
    for c in range(y.shape[1]):
        holders = torch.nonzero(y[:, c]).flatten()
        if len(holders) < 2:
            continue
        logits = z[holders] @ z.T / temperature
        is_self = torch.zeros_like(logits, dtype=torch.bool)
        is_self[torch.arange(len(holders)), holders] = True
        log_prob = logits.masked_fill(is_self, float("-inf")).log_softmax(dim=1)
        positive = y[:, c].bool().unsqueeze(0) & ~is_self
        losses.append(-log_prob.masked_fill(~positive, 0.0).sum(dim=1) / positive.sum(dim=1))
    return torch.cat(losses).mean()


def run(repeats: int) -> list[tuple]:
    """The three comparisons, as table rows; ratios from CPU time with one thread, from
    wall time with more (CPU time then counts every thread)."""
    pick = 0 if torch.get_num_threads() == 1 else 1
    rows = []
    b = 4096
    z = _embeddings(b)
    bare = bare_matmul(z)
    for c, per_item, sparse in [(28, 2, False), (4000, 5, False), (4000, 5, True)]:
        y = _labels(b, c, per_item, seed=c)
        labels = y.to_sparse_csr() if sparse else y
        ours, base = race(partial(supcon, z, labels, 0.1, "jaccard"), bare, z, repeats)
        ratio = ours[pick] / base[pick]
        form = "sparse CSR" if sparse else "dense"
        rows.append(
            (
                f"supcon jaccard, B={b}, C={c} {form}, {y.sum(1).mean():.1f} labels/item",
                "bare z@z.T fwd+bwd",
                ours,
                base,
                f"{ratio:.2f}x the bare time",
                ratio <= 3.0,
            )
        )

    try:
        from pytorch_metric_learning.losses import SupConLoss
    except ImportError:
        rows.append(("supcon single-label", "pytorch-metric-learning not installed", None, None, "", False))
    else:
        pml = SupConLoss(temperature=0.1)
        for b in (1024, 4096):
            z = _embeddings(b, seed=1)
            ids = torch.randint(0, 100, (b,), generator=torch.Generator().manual_seed(2))
            gap = abs(supcon(z, ids, 0.1).item() - pml(z, ids).item())
            ours, base = race(partial(supcon, z, ids, 0.1), partial(pml, z, ids), z, repeats)
            speedup = base[pick] / ours[pick]
            rows.append(
                (
                    f"supcon single-label, B={b}, 100 classes",
                    "pml SupConLoss",
                    ours,
                    base,
                    f"{speedup:.1f}x faster, |diff| {gap:.1e}",
                    speedup >= 2.0 and gap <= 1e-5,
                )
            )

    b, c = 1024, 100
    z, y = _embeddings(b, seed=3), _labels(b, c, 5, seed=4)
    gap = abs(mulsupcon(z, y, 0.1).item() - mulsupcon_loop(z, y, 0.1).item())
    ours, base = race(partial(mulsupcon, z, y, 0.1), partial(mulsupcon_loop, z, y, 0.1), z, repeats)
    speedup = base[pick] / ours[pick]
    rows.append(
        (
            f"mulsupcon, B={b}, C={c}, {y.sum(1).mean():.1f} labels/item",
            "per-label loop",
            ours,
            base,
            f"{speedup:.1f}x faster, |diff| {gap:.1e}",
            speedup >= 10.0 and gap <= 1e-5,
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    threads = " ".join(map(str, args.threads))
    print(
        f"`python bench/bench_objectives.py --repeats {args.repeats} --threads {threads}`, "
        f"{datetime.date.today()}, {model}, {os.cpu_count()} cores, torch {torch.__version__}\n"
    )
    for count in args.threads:
        torch.set_num_threads(count)
        torch.manual_seed(0)
        load = os.getloadavg()[0]
        rows = run(args.repeats)
        basis = "CPU time" if count == 1 else "wall time"
        print(
            f"{count} thread(s); load average {load:.1f} before, {os.getloadavg()[0]:.1f} after; ratios from {basis}\n"
        )
        print("| case | baseline | labelcon CPU (wall) | baseline CPU (wall) | result | bar met |")
        print("|---|---|---|---|---|---|")
        for case, baseline, ours, base, result, met in rows:
            print(f"| {case} | {baseline} | {_ms(ours)} | {_ms(base)} | {result} | {'yes' if met else 'NO'} |")
        print()


def _ms(times: tuple[float, float] | None) -> str:
    return "" if times is None else f"{times[0] * 1e3:.0f} ms ({times[1] * 1e3:.0f} ms)"


if __name__ == "__main__":
    main()
