"""Dev embedded as training computes against float32: speed, and whether decisions stay equal.

A trained run (``labelcon train --dataset NAME --out RUN``) embeds dev twice, in float32
(as :meth:`labelcon.Labelcon.encode` does) and as training computes (``as_trained``:
bfloat16 where the hardware has it, as ``fit`` embeds dev), chooses the decision rule on
each (``PredictionStage.rule_on_dev``, as ``fit`` does) and applies both rules to
the float32 test scores. Prints the two passes' times, the embeddings' cosine agreement,
both rules' test micro- and macro-F1 and how many test decisions differ::

    python bench/bench_dev_precision.py RUN [--dataset reuters21578] [--data-dir DIR]

Dev is the data set's ``dev.jsonl`` where it has one, else the run's carve-out of train
(``dev_fraction`` and ``seed`` of its config).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from data_dir import default_data_dir
from machine import machine

from labelcon import Labelcon
from labelcon.data import DataError, train_dev_split
from labelcon.data.registry import load_split
from labelcon.metrics import evaluate
from labelcon.prediction import Features, StageSettings


def timed(embed: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    """``embed()`` and the seconds it took."""
    tic = time.monotonic()
    out = embed()
    return out, time.monotonic() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--dataset", default="reuters21578")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    model = Labelcon.load(args.run_dir)
    cfg, stage = model.config, model.stage_
    try:
        dev = load_split(args.dataset, "dev", args.data_dir)
    except DataError:
        _, dev = train_dev_split(load_split(args.dataset, "train", args.data_dir), cfg.dev_fraction, cfg.seed)
    test = load_split(args.dataset, "test", args.data_dir)
    texts = list(dev.texts)
    y_dev, y_test = (model.labels.encode(d.labels) for d in (dev, test))
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f}; {len(dev)} dev, {len(test)} test texts\n")

    exact, exact_s = timed(lambda: model.encode(texts))
    trained, trained_s = timed(lambda: model.encoder_.encode(texts, as_trained=True))
    cosine = np.sum(exact * trained, axis=1)
    print(f"dev float32 {exact_s:.1f} s, as trained {trained_s:.1f} s ({exact_s / trained_s:.2f}x)")
    print(f"cosine of the two embeddings: min {cosine.min():.6f}, median {np.median(cosine):.6f}\n")

    test_scores = stage.scores(model.features(list(test.texts)))
    settings = StageSettings.from_config(cfg)
    decisions = {}
    print("| dev embedded | rule chosen | test micro-F1 | test macro-F1 |\n|---|---|---:|---:|")
    for name, z in (("float32", exact), ("as trained", trained)):
        dev_scores = stage.scores(Features(z, texts))
        rule, _ = stage.rule_on_dev(lambda: [dev_scores], y_dev, settings)  # noqa: B023
        decisions[name] = rule.apply(test_scores, at_least_one=stage.at_least_one)
        figures = evaluate(y_test, test_scores, decisions[name])
        print(f"| {name} | {rule.name} | {figures['micro_f1']:.4f} | {figures['macro_f1']:.4f} |")
    differ = int((decisions["float32"] != decisions["as trained"]).sum())
    print(f"\ntest decisions that differ: {differ} of {decisions['float32'].size}")


if __name__ == "__main__":
    main()
