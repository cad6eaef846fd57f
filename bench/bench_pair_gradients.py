"""The gradient norms of the label objective and of CoSENT at MiniLM's start, and what one
joint clip would leave of the labels' part of a pair step.

    python bench/bench_pair_gradients.py [--batches 4] [--batch-size 64] [--pair-batch-size 32]
        [--max-grad-norm 1] [--seed 0] [--threads 1] [--data-dir ../shared/data]

For each of ``--batches`` draws: a batch of GoEmotions train items under the label objective
``auto`` resolves to for GoEmotions (``supcon-jaccard``, temperature 0.1) and a batch of
STS-B train pairs under CoSENT (scale 20), both on all-MiniLM-L6-v2 at 64 tokens; the
gradient norm of each over the encoder's parameters, their cosine, and the norm of the
labels' part of the step after clipping to ``--max-grad-norm``: one clip of the summed
gradient (how a pair step was clipped before each part was clipped on its own) against a
label-only step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from data_dir import default_data_dir
from machine import machine

from labelcon.data import LabelSpace, read_dataset
from labelcon.data.labels import read_labels_file
from labelcon.data.pairs import read_pair_records
from labelcon.encoders import build_encoder
from labelcon.objectives import build_objective, build_pair_objective


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """The gradient of ``loss`` over ``params``, as one vector (zeros where a parameter is unused)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pair-batch-size", type=int, default=32)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.data_dir / "goemotions"
    train = read_dataset(root / "train.jsonl")
    y = LabelSpace(read_labels_file(root / "labels.txt")).encode(train.labels)
    pairs = read_pair_records(args.data_dir / "stsb" / "train.jsonl", fields="text1,text2", score_field="score")
    encoder = build_encoder("minilm", max_length=64, seed=args.seed)
    encoder.train()
    objective, pair_objective = build_objective("supcon-jaccard", temperature=0.1), build_pair_objective("scored")
    params = [p for p in encoder.parameters() if p.requires_grad]
    rng = np.random.default_rng(args.seed)
    clip = args.max_grad_norm
    print(f"{machine()}; torch threads {torch.get_num_threads()}\n")
    print(
        "| draw | label loss | label grad norm | CoSENT loss | CoSENT grad norm | cosine | labels' part, joint clip "
        "| labels' part, label-only step |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for draw in range(args.batches):
        rows = rng.choice(len(train), args.batch_size, replace=False)
        labels = torch.from_numpy(y[rows].toarray()).float()
        loss = objective(encoder(encoder.tokenize([train.texts[i] for i in rows])), labels)
        g_labels = flat_grad(loss, params)
        chosen = rng.choice(len(pairs), args.pair_batch_size, replace=False)
        columns = [encoder(encoder.tokenize([column[i] for i in chosen])) for column in pairs.columns]
        pair_loss = pair_objective(columns, torch.tensor([pairs.scores[i] for i in chosen]))
        g_pairs = flat_grad(pair_loss, params)
        norm_l, norm_p, norm_sum = g_labels.norm().item(), g_pairs.norm().item(), (g_labels + g_pairs).norm().item()
        cosine = torch.dot(g_labels, g_pairs).item() / (norm_l * norm_p)
        joint, alone = norm_l * min(1.0, clip / norm_sum), norm_l * min(1.0, clip / norm_l)
        print(
            f"| {draw} | {loss.item():.2f} | {norm_l:.2f} | {pair_loss.item():.2f} | {norm_p:.1f} | {cosine:+.3f} "
            f"| {joint:.3f} | {alone:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
