"""What ``keep_base`` (WiSE-FT) trades: STS-B similarity against the labels' dev macro-AP.

    python bench/bench_keep_base.py RUN_DIR [--keep 0 0.3 0.5] [--train-sample 10000]
        [--data-dir ../shared/data]

RUN_DIR is a ``labelcon train --dataset goemotions`` run directory (``keep_base`` 0). For
each share A, the encoder's weights are moved to ``A * start + (1 - A) * trained`` (what
``labelcon train --keep-base A`` does after training; the start is all-MiniLM-L6-v2),
then: Spearman x 100 of cosine similarity on the STS-B test pairs, and GoEmotions dev
macro-AP of a linear probe (C=16) fitted on a seeded sample of train.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from data_dir import default_data_dir
from machine import machine
from scipy.stats import spearmanr

from labelcon import Labelcon
from labelcon.data import read_pairs
from labelcon.data.registry import load_split
from labelcon.encoders import TransformerEncoder
from labelcon.heads import build_head
from labelcon.metrics import average_precision_per_label
from labelcon.training.wiseft import interpolate_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--keep", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    parser.add_argument("--train-sample", type=int, default=10000)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    model = Labelcon.load(args.run_dir)
    pairs = read_pairs(args.data_dir / "stsb" / "test.jsonl")
    train = load_split("goemotions", "train", args.data_dir)
    dev = load_split("goemotions", "dev", args.data_dir)
    rows = np.random.default_rng(0).permutation(len(train.texts))[: args.train_sample]
    y_train = model.labels.encode([train.labels[i] for i in rows])
    y_dev = model.labels.encode(dev.labels, unknown="ignore")
    trained = {k: v.clone() for k, v in model.encoder_.state_dict().items()}
    start = TransformerEncoder("minilm", max_length=model.encoder_.max_length).state_dict()
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f}\n")
    print("| keep_base | STS-B Spearman | GoEmotions dev macro-AP |\n|---:|---:|---:|")
    for keep in args.keep:
        model.encoder_.load_state_dict(trained)
        interpolate_weights(model.encoder_, start, 1.0 - keep)
        a, b = model.encode(pairs.texts1), model.encode(pairs.texts2)
        sts = 100 * spearmanr((a * b).sum(1), pairs.scores).statistic
        probe = build_head("linear", C=16).fit(model.encode([train.texts[i] for i in rows]), y_train)
        ap = np.nanmean(average_precision_per_label(y_dev, probe.predict_scores(model.encode(dev.texts))))
        print(f"| {keep:g} | {sts:.2f} | {ap:.3f} |", flush=True)


if __name__ == "__main__":
    main()
