"""MiniLM training throughput against max length, on long texts (Reuters articles).

    python bench/bench_max_length.py [--lengths 64 128 256] [--batch 64] [--steps 3]
        [--precision auto] [--data ../shared/data/reuters21578/train.jsonl]

One step is what the trainer runs per batch: tokenize (pad to the longest text, truncate
to the max length), embed, ``supcon(relation="jaccard")`` on random multi-hot labels,
backward, AdamW. Each length takes the next ``batch`` texts for each of ``steps`` steps;
the first step is a warm-up, the table gives the fastest of the rest in items/s. This
is the measurement behind ``resolve_max_length``'s cap at 128 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from machine import machine

from labelcon.encoders import build_encoder
from labelcon.objectives import supcon

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "reuters21578" / "train.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="steps per length, the first one a warm-up")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSONL file of {text, labels} records")
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in Path(args.data).read_text(encoding="utf-8").splitlines()]
    print(
        f"{machine()}; torch {torch.__version__}; precision {args.precision}; batch {args.batch}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| max length | step s (each) | items/s (best after warm-up) |\n|---:|---|---:|")
    for length in args.lengths:
        encoder = build_encoder("minilm", max_length=length, precision=args.precision).train()
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=5e-5)
        labels = torch.randint(0, 2, (args.batch, 28)).float()
        seconds = []
        for step in range(args.steps):
            batch = texts[step * args.batch : (step + 1) * args.batch]
            start = time.perf_counter()
            loss = supcon(encoder(encoder.tokenize(batch)), labels, 0.1, relation="jaccard")
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds.append(time.perf_counter() - start)
        best = min(seconds[1:] or seconds)
        print(f"| {length} | {', '.join(f'{s:.2f}' for s in seconds)} | {args.batch / best:.1f} |", flush=True)


if __name__ == "__main__":
    main()
