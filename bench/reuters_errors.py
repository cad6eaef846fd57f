"""Where a trained model's Reuters-21578 test errors are, and two decision-side levers.

    python bench/reuters_errors.py RUN_DIR [--data-dir ../shared/data] [--chunks 15]

RUN_DIR is a ``labelcon train --dataset reuters21578 [--seed S]`` run directory: dev is
the run's own carve-out (``train_dev_split(train, dev_fraction, seed)`` from its config),
so this is also the split ``bench/compare.py reuters21578 --seed S`` gives. Prints:

- test misses (FN) and false alarms (FP) by how many labels an article holds;
- the rank of each missed label among the article's scores, and its score over its threshold;
- the labels with the most errors;
- two levers, each decided on dev as the model is (the rule of
  ``labelcon.heads.decisions.choose_rule``, at least one label per item):
  **relative to the top**: the thresholds, or ``s_c >= rho * max_c' s_c'``; **chunks**:
  an article longer than the encoding length is also embedded in the following windows
  of that many tokens (at most ``--chunks`` of them), the head scores every window, and a
  label takes its best window's score (``max``) or the mean of that and the first
  window's (``mean of first and max``); the lexical vote reads the whole text as before.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from data_dir import default_data_dir
from machine import machine

from labelcon import Labelcon
from labelcon.data import train_dev_split
from labelcon.data.registry import load_split
from labelcon.metrics import evaluate
from labelcon.prediction import StageSettings


def windows(model: Labelcon, texts: list[str], limit: int) -> tuple[list[str], np.ndarray]:
    """The text of every window after the first (``max_length - 2`` tokens each, at most
    ``limit`` per text) and the index of the text each belongs to."""
    tokenizer, body = model.encoder_.tokenizer, model.encoder_.max_length - 2
    out, owner = [], []
    for i, ids in enumerate(tokenizer(texts, add_special_tokens=False)["input_ids"]):
        for start in range(body, len(ids), body)[:limit]:
            out.append(tokenizer.decode(ids[start : start + body]))
            owner.append(i)
    return out, np.asarray(owner, dtype=np.int64)


def chunk_scores(model: Labelcon, texts: list[str], limit: int) -> dict[str, np.ndarray]:
    """The stage's scores of ``texts``: as the model scores them (the first window), and
    the two chunk rules of the module docstring."""
    stage, items = model.stage_, model.features(texts)
    first = stage.head.predict_scores(items.embeddings)
    best = first.copy()
    extra, owner = windows(model, texts, limit)
    if extra:
        np.maximum.at(best, owner, stage.head.predict_scores(model.encode(extra)))
    return {
        "first window (the model)": stage.mixed(first, items),
        "max over windows": stage.mixed(best, items),
        "mean of first and max": stage.mixed((first + best) / 2, items),
    }


def line(name: str, y, decisions: np.ndarray, scores: np.ndarray) -> str:
    figures = evaluate(y, scores, decisions)
    truth = y.toarray().astype(bool)
    return (
        f"| {name} | {figures['micro_f1']:.4f} | {figures['macro_f1']:.4f} | {int((truth & ~decisions).sum())} | "
        f"{int((~truth & decisions).sum())} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--chunks", type=int, default=15, help="most extra windows per article")
    args = parser.parse_args()
    model = Labelcon.load(args.run_dir)
    cfg, stage = model.config, model.stage_
    _, dev = train_dev_split(load_split("reuters21578", "train", args.data_dir), cfg.dev_fraction, cfg.seed)
    test = load_split("reuters21578", "test", args.data_dir)
    y_dev, y_test = (model.labels.encode(d.labels) for d in (dev, test))
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f}; seed {cfg.seed}\n")

    scores = {name: chunk_scores(model, list(d.texts), args.chunks) for name, d in (("dev", dev), ("test", test))}
    model_scores = scores["test"]["first window (the model)"]
    decisions = stage.decide(model_scores)
    truth = y_test.toarray().astype(bool)
    missed, alarms = truth & ~decisions, ~truth & decisions
    held = truth.sum(1)
    chars = np.array([len(t) for t in test.texts])
    print("| labels held | test articles | median characters | FN | FP |\n|---|---:|---:|---:|---:|")
    for name, rows in (("1", held == 1), ("2", held == 2), (">= 3", held >= 3)):
        print(f"| {name} | {rows.sum()} | {np.median(chars[rows]):.0f} | {missed[rows].sum()} | {alarms[rows].sum()} |")

    rank = (-model_scores).argsort(1).argsort(1)[missed]
    print(
        "\nrank of the missed labels (1 = the article's best):",
        ", ".join(f"{r + 1}: {n}" for r, n in enumerate(np.bincount(rank, minlength=8)[:8])),
        f"(of {missed.sum()})",
    )
    items, labels = np.nonzero(missed)
    ratio = model_scores[items, labels] / np.maximum(stage.thresholds.thresholds[labels], 1e-9)
    print(
        "missed label's score over its threshold, quartiles:", np.quantile(ratio, [0.25, 0.5, 0.75]).round(3).tolist()
    )
    errors = missed.sum(0) + alarms.sum(0)
    print("\n| label | test articles | FN | FP |\n|---|---:|---:|---:|")
    for c in np.argsort(-errors)[:10]:
        print(f"| {model.labels.names[c]} | {truth[:, c].sum()} | {missed[:, c].sum()} | {alarms[:, c].sum()} |")

    print("\n| decisions (calibrated on dev) | test micro-F1 | macro-F1 | FN | FP |\n|---|---:|---:|---:|---:|")
    print(line("the model's", y_test, decisions, model_scores))
    top = model_scores.max(1, keepdims=True)
    for rho in (0.5, 0.7, 0.9):
        print(
            line(
                f"its thresholds, or >= {rho:g} x the top score",
                y_test,
                decisions | (model_scores >= rho * top),
                model_scores,
            )
        )
    settings = StageSettings.from_config(cfg)
    for name in list(scores["dev"])[1:]:
        rule, _ = stage.rule_on_dev(lambda: [scores["dev"][name]], y_dev, settings)  # noqa: B023
        test_scores = scores["test"][name]
        print(line(f"chunks: {name}", y_test, rule.apply(test_scores, at_least_one=stage.at_least_one), test_scores))


if __name__ == "__main__":
    main()
