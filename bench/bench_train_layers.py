"""Training step time with all layers trained against only the top ``train_layers``.

    python bench/bench_train_layers.py [--encoder minilm] [--train-layers 2 1] [--batch 64]
        [--steps 10] [--max-length 64] [--precision auto]
        [--data $LABELCON_DATA/goemotions/train.jsonl]

One step is what the trainer runs per batch: tokenize (with ``train_layers``, in train
mode, which looks up or computes the frozen layers' output), embed,
``supcon(relation="jaccard")`` on random multi-hot labels, backward, AdamW. Each setting
runs the same ``steps`` batches twice, the settings taking turns on each batch (so a
busy machine slows them alike): the first pass is a first epoch (the frozen layers'
cache fills as it goes), the second a later epoch (every text is in the cache). The
table gives the median step time of each pass and its ratio to training all layers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from data_dir import default_data_dir
from machine import machine

from labelcon.encoders import build_encoder
from labelcon.objectives import supcon

DEFAULT_DATA = default_data_dir() / "goemotions" / "train.jsonl"


def step_seconds(
    encoder: torch.nn.Module, batch: list[str], labels: torch.Tensor, optimizer: torch.optim.Optimizer
) -> float:
    """Seconds of one training step on ``batch``."""
    start = time.perf_counter()
    loss = supcon(encoder(encoder.tokenize(batch)), labels, 0.1, relation="jaccard")
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="minilm", help="minilm, mpnet or a model folder")
    parser.add_argument("--train-layers", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="batches per pass")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSONL file of {text, labels} records")
    args = parser.parse_args()
    lines = Path(args.data).read_text(encoding="utf-8").splitlines()[: args.batch * args.steps]
    texts = [json.loads(line)["text"] for line in lines]
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    labels = torch.randint(0, 2, (args.batch, 28), generator=torch.Generator().manual_seed(0)).float()
    print(
        f"{machine()}; torch {torch.__version__}; {args.encoder}; precision {args.precision}; batch {args.batch}; "
        f"max length {args.max_length}; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| layers trained | first epoch step s | later epoch step s | ratio to all layers (later) |\n"
        "|---|---:|---:|---:|"
    )
    settings = [None, *args.train_layers]
    runs = []
    for train_layers in settings:
        encoder = build_encoder(
            args.encoder, max_length=args.max_length, precision=args.precision, train_layers=train_layers
        ).train()
        runs.append((encoder, torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=5e-5)))
    # the settings take turns on each batch, so a busy machine slows them alike
    passes = [
        [[step_seconds(encoder, batch, labels, optimizer) for encoder, optimizer in runs] for batch in batches]
        for _ in range(2)
    ]
    medians = [[statistics.median(step[i] for step in steps) for i in range(len(runs))] for steps in passes]
    for i, train_layers in enumerate(settings):
        first, later = medians[0][i], medians[1][i]
        print(f"| {train_layers or 'all'} | {first:.2f} | {later:.2f} | {later / medians[1][0]:.2f} |")


if __name__ == "__main__":
    main()
