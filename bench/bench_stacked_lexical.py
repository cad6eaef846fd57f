"""A second text scorer stacked on a run's final scores: TF-IDF one-vs-rest SVMs mixed on top.

The prediction stage keeps the text scorer that ranks dev best and stacks one of the other
kind on top where dev ranks better (``labelcon.heads.text_scorers``). This asks what one
more scorer, TF-IDF SVMs without the embedding, adds on top of whatever a run kept. It
reads a harness run's saved scores (``compare.py --save-scores``: the head's scores with
the kept scorers already mixed in), fits the ranker's TF-IDF half on train
(``DenseSparseLinear`` with ``dense_scale=0``: the saved file holds no embeddings),
Platt-scales it on dev, and mixes it on top at each weight::

    s' = (1 - w) * s + w * svm(tfidf(text))        outside the head's own-threshold columns

Every row goes through the harness protocol (the decision rule chosen on dev, test
figures), so the ``w=0`` row reproduces the run's. The weight the stage would keep, the
best dev ranking by the target metric, is marked::

    python bench/compare.py arxiv_abstracts --systems labelcon --save-scores DIR
    python bench/bench_stacked_lexical.py arxiv_abstracts DIR/arxiv_abstracts-seed13-labelcon.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from compare import classification_table, load_task, parse_args, protocol_row
from systems.common import Result

from labelcon.heads import FallbackThreshold
from labelcon.heads.decisions import resolve_target_metric
from labelcon.heads.dense_sparse import DenseSparseLinear
from labelcon.heads.lexical import mix_scores
from labelcon.metrics import ranking_quality

WEIGHTS = (0.0, 0.25, 0.5, 0.75)
C_VALUES = (0.1, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("scores", type=Path, help="an npz written by compare.py --save-scores")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=None, help="the harness's seed of the saved run (default 13)")
    args = parser.parse_args()
    harness = parse_args(
        [args.dataset, "--systems", "labelcon"]
        + (["--data-dir", str(args.data_dir)] if args.data_dir else [])
        + (["--seed", str(args.seed)] if args.seed is not None else [])
    )
    task, test, splits = load_task(args.dataset, harness)
    with np.load(args.scores) as saved:
        dev, test_scores = saved["dev"], saved["test"]
        if not np.array_equal(saved["y_dev"], task.y_dev.toarray()):
            sys.exit(f"{args.scores}: its dev labels are not {args.dataset}'s dev under seed {task.seed}; pass --seed")
        columns = saved["fallback_columns"].tolist()
        own = FallbackThreshold(columns, float(saved["fallback"])) if columns else None
    metric = resolve_target_metric("auto", len(task.labels))
    y_train = task.labels.encode(task.train_full.labels, source="train")
    no_embedding = lambda n: np.zeros((n, 1), dtype=np.float32)  # noqa: E731
    rows, marks = [], []
    for C in C_VALUES:
        tic = time.perf_counter()
        svm = DenseSparseLinear(C=C, dense_scale=0.0).fit(
            task.train_full.texts, y_train, no_embedding(len(task.train_full))
        )
        fit_seconds = time.perf_counter() - tic
        svm.calibrate(task.dev.texts, task.y_dev, no_embedding(len(task.dev)))
        on_dev = svm.sparse_scores(task.dev.texts, no_embedding(len(task.dev)))
        on_test = svm.sparse_scores(test.texts, no_embedding(len(test)))
        ranked = {}
        for weight in WEIGHTS:
            load_before, started = os.getloadavg()[0], time.perf_counter()
            mixed = Result(
                mix_scores(dev, on_dev, weight, columns),
                mix_scores(test_scores, on_test, weight, columns),
                fit_seconds,
                {"C": C, "weight": weight},
                own,
            )
            ranked[weight] = ranking_quality(task.y_dev, mixed.dev_scores, metric)
            name = f"saved scores + {weight:g} x TF-IDF SVM (C={C:g}, fit {fit_seconds:.0f} s)"
            rows.append(protocol_row(name, "stacked", task, test, task.labels, mixed, started, load_before))
            print(f"{name}: dev {metric} ranking {ranked[weight]:.4f}", file=sys.stderr, flush=True)
        marks.append(f"C={C:g}: dev keeps w={max(ranked, key=ranked.get):g}")
    print(f"{args.dataset} {splits}\n{classification_table(rows)}\n" + "; ".join(marks))


if __name__ == "__main__":
    main()
