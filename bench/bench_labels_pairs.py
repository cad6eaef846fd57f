"""GoEmotions labels alone against labels with STS-B pairs beside them, in one run each.

    python bench/bench_labels_pairs.py [--pair-every 4] [--pair-weight 0.5] [--pair-batch-size 32]
        [--max-time MINUTES] [--epochs auto] [--train-items N] [--dev-items N] [--test-items N]
        [--seed 13] [--threads N] [--data-dir ../shared/data] [--json bench/results/labels-pairs.json]

Issue 29's bar: STS-B test Spearman x 100 at least 78 with GoEmotions test macro-F1 within
0.01 of the label-only defaults. Two runs of ``labelcon train --dataset goemotions`` from
all-MiniLM-L6-v2 with the defaults (the default time budget, ``epochs=auto``), the second
with ``--pairs stsb/train.jsonl --pair-fields text1,text2 --pair-score-field score`` and
``--pair-every``, ``--pair-weight``, ``--pair-batch-size``, as Python
(``Labelcon(...).fit``). For each: test macro-F1, micro-F1 and macro-AP, STS-B test Spearman
x 100 of the cosine (``Labelcon.evaluate_pairs``, what ``labelcon evaluate --pairs`` reports),
the label steps and pair batches trained (steps 0, k, 2k, ...: one in ``--pair-every``),
and the wall time of ``fit`` (training, the prediction stage and the test evaluation).
The untrained model's STS-B Spearman is the reference row. ``--max-time``/``--epochs``:
override the defaults (``--max-time 0 --epochs 1``: one epoch each, equal label steps, no
budget). ``--train-items`` / ``--dev-items`` / ``--test-items``: a seeded sample of each
split (by default each split is whole). ``--threads``: torch's intra-op threads (default:
torch's own, every core). Times are a speed figure only on a machine with nothing else
running.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
from data_dir import default_data_dir
from machine import machine

from labelcon import Labelcon
from labelcon.data import read_dataset
from labelcon.data.dataset import Dataset
from labelcon.data.pairs import read_pair_records
from labelcon.embedding_metrics import pair_correlations
from labelcon.encoders import TransformerEncoder
from labelcon.io import write_json

PAIR_FIELDS = {"fields": "text1,text2", "score_field": "score"}


def sample(data: Dataset, n: int | None, seed: int) -> Dataset:
    """``n`` items of ``data`` drawn without replacement (all of them when ``n`` is None)."""
    if n is None or n >= len(data):
        return data
    return data.subset(sorted(np.random.default_rng(seed).choice(len(data), n, replace=False).tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair-every", type=int, default=4)
    parser.add_argument("--pair-weight", type=float, default=0.5)
    parser.add_argument("--pair-batch-size", type=int, default=32)
    parser.add_argument("--max-time", type=float, default=None, help="minutes (default: labelcon's budget)")
    parser.add_argument("--epochs", default=None, help="auto or a number (default: labelcon's)")
    parser.add_argument("--train-items", type=int, default=None)
    parser.add_argument("--dev-items", type=int, default=None)
    parser.add_argument("--test-items", type=int, default=None)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--json", type=Path, default=None, help="write the figures and the settings here")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.data_dir / "goemotions"
    train = sample(read_dataset(root / "train.jsonl"), args.train_items, args.seed)
    dev = sample(read_dataset(root / "dev.jsonl"), args.dev_items, args.seed)
    test = sample(read_dataset(root / "test.jsonl"), args.test_items, args.seed)
    sts_train = read_pair_records(args.data_dir / "stsb" / "train.jsonl", **PAIR_FIELDS)
    sts_test = read_pair_records(args.data_dir / "stsb" / "test.jsonl", **PAIR_FIELDS)
    print(f"{machine()}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"GoEmotions: {len(train)} train, {len(dev)} dev, {len(test)} test items; STS-B {len(sts_train)} train pairs\n"
    )

    common = {"labels_file": str(root / "labels.txt"), "seed": args.seed}
    if args.max_time is not None:
        common["max_time_minutes"] = args.max_time
    if args.epochs is not None:
        common["epochs"] = args.epochs if args.epochs == "auto" else int(args.epochs)
    pair_settings = {
        "pair_fields": PAIR_FIELDS["fields"],
        "pair_score_field": PAIR_FIELDS["score_field"],
        "pair_every": args.pair_every,
        "pair_weight": args.pair_weight,
        "pair_batch_size": args.pair_batch_size,
    }
    base = TransformerEncoder("minilm")
    rows: list[dict] = [
        {
            "system": "all-MiniLM-L6-v2, untrained",
            "stsb_spearman": 100
            * pair_correlations(*map(base.encode, sts_test.columns), sts_test.scores)["pairs_spearman"],
        }
    ]
    print(rows[-1], flush=True)
    systems = [
        ("labels only", {}, None),
        (f"labels + STS-B pairs (every {args.pair_every}, weight {args.pair_weight:g})", pair_settings, sts_train),
    ]
    for name, extra, pairs in systems:
        model = Labelcon(**common, **extra)
        tic = time.monotonic()
        model.fit(train, dev, test=test, pairs=pairs, show_progress=False)
        seconds = time.monotonic() - tic
        steps = model.history_[-1]["step"]  # the global step at the last epoch's end
        test_metrics = model.metrics_["test"]
        rows.append(
            {
                "system": name,
                "macro_f1": test_metrics["macro_f1"],
                "micro_f1": test_metrics["micro_f1"],
                "macro_ap": test_metrics["macro_ap"],
                "stsb_spearman": 100 * model.evaluate_pairs(sts_test)["pairs_spearman"],
                "epochs": len(model.history_),
                "label_steps": steps,
                "pair_batches": math.ceil(steps / args.pair_every) if pairs is not None else 0,
                "fit_seconds": round(seconds, 1),
            }
        )
        print(rows[-1], flush=True)

    only, both = rows[1], rows[2]
    verdict = {
        "stsb_at_least_78": both["stsb_spearman"] >= 78,
        "macro_f1_within_0.01": only["macro_f1"] - both["macro_f1"] <= 0.01,
    }
    print("\n| system | label steps | pair batches | macro-F1 | micro-F1 | macro-AP | STS-B Spearman x 100 | fit min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows[1:]:
        print(
            f"| {row['system']} | {row['label_steps']} | {row['pair_batches']} | {row['macro_f1']:.3f} | "
            f"{row['micro_f1']:.3f} | {row['macro_ap']:.3f} | {row['stsb_spearman']:.1f} | "
            f"{row['fit_seconds'] / 60:.1f} |"
        )
    print(f"\nuntrained STS-B Spearman x 100: {rows[0]['stsb_spearman']:.1f}; bar: {verdict}")
    if args.json:
        settings = {**vars(args), "data_dir": str(args.data_dir), "json": str(args.json)}
        write_json(
            args.json,
            {
                "machine": machine(),
                "load_at_end": os.getloadavg()[0],
                "settings": settings,
                "rows": rows,
                "bar": verdict,
            },
        )


if __name__ == "__main__":
    main()
