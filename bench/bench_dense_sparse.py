"""One trained encoder, two or three text scorers in its prediction stage: the TF-IDF kNN vote
(``knn``), ``auto`` (the default: the vote and the dense+sparse ranker, TF-IDF + embedding
through one-vs-rest linear SVMs at C 0.1 and 1, Platt-scaled on dev, tried on dev with their
weights, the best dev ranking figure of the target metric kept) and, with ``--forced``, the
ranker at the C and weight dev picks for it; each row scored with the shared protocol of
``compare.py`` and written to its results file.

    python bench/many_label_proxy.py --out DIR --with-title --limit 8000 --min-df 3 --max-df 60
    python bench/bench_dense_sparse.py manylabel_lexical --data-dir DIR --model RUN
    python bench/bench_dense_sparse.py manylabel_lexical --data-dir DIR --model RUN --params '{"epochs": 0}'

(``"epochs": 0``: the base MiniLM, untrained.) ``--c-values 0.1,1,10 --weights 0.25,0.5,0.75,1``:
the grid ``auto`` tries for the ranker (default: the library's ``DENSE_SPARSE_C`` and
``DENSE_SPARSE_WEIGHTS``), named in the row. ``--params '{"lexical_scorer": "knn"}'`` saves
fitting the dense+sparse ranker once more inside ``fit``: every row sets its own scorer.

``--model RUN``: a run directory to load; when it holds no model, ``Labelcon(labels_file=...,
**params)`` is fitted on the harness's train and dev (``--params``: its keywords, JSON) and
saved there, so the encoder is trained once and every scorer sees the same embeddings
(kept in RUN/embeddings.npz for the next call). ``--seed S``: the harness's seed, which
carves dev out of train where the data set has no dev (a run of ``labelcon train --seed S``
carves the same dev).
Rows are named ``labelcon + <scorer> (<params>)``; "train" is the stage's fit (head, text
scorer, thresholds) on embeddings computed once, whose seconds are in the row's notes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from compare import classification_table, load_task, parse_args, protocol_row, results_path, save_rows
from systems.common import Result

from labelcon import Labelcon
from labelcon.heads import text_scorers
from labelcon.prediction import Features, PredictionStage, StageSettings


def numbers(text: str) -> tuple[float, ...]:
    """``"0.1,1,10"`` as ``(0.1, 1.0, 10.0)``."""
    return tuple(float(x) for x in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--model", type=Path, required=True, help="run directory to load, or to save the fit into")
    parser.add_argument("--params", type=json.loads, default={}, help="Labelcon keywords when training (JSON)")
    parser.add_argument("--forced", action="store_true", help="a row for lexical_scorer=dense_sparse too")
    parser.add_argument("--seed", type=int, default=None, help="the harness's seed (default: compare.py's, 13)")
    parser.add_argument("--c-values", type=numbers, default=None, help="the ranker's C grid (comma-separated)")
    parser.add_argument("--weights", type=numbers, default=None, help="the ranker's weight grid (comma-separated)")
    args = parser.parse_args()
    grid = {}
    if args.c_values:
        text_scorers.DENSE_SPARSE_C = grid["C"] = args.c_values
    if args.weights:
        text_scorers.DENSE_SPARSE_WEIGHTS = grid["weights"] = args.weights
    harness = parse_args(
        [args.dataset, "--systems", "labelcon"]
        + (["--data-dir", str(args.data_dir)] if args.data_dir else [])
        + (["--seed", str(args.seed)] if args.seed is not None else [])
    )
    task, test, splits = load_task(args.dataset, harness)
    print(f"{args.dataset}: {splits}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    if (args.model / "labelcon.json").exists():
        model = Labelcon.load(args.model)
    else:
        model = Labelcon(labels_file=str(task.labels_file), **args.params).fit(task.train_full, task.dev)
        model.save(args.model)
    train_seconds = time.perf_counter() - started
    splits_used = {"train": task.train_full, "dev": task.dev, "test": test}
    cache = args.model / "embeddings.npz"
    tic = time.perf_counter()
    if cache.exists():
        with np.load(cache) as saved:
            vectors = {name: saved[name] for name in splits_used}
    else:
        vectors = {name: model.encode(split.texts, show_progress=True) for name, split in splits_used.items()}
        np.savez(cache, **vectors)
    embedded = {name: Features(vectors[name], split.texts) for name, split in splits_used.items()}
    embed_seconds = time.perf_counter() - tic
    rows = []
    for scorer in ("knn", "auto", *(("dense_sparse",) if args.forced else ())):
        load_before, started = os.getloadavg()[0], time.perf_counter()
        settings = StageSettings.from_config(model.config.model_copy(update={"lexical_scorer": scorer}))
        y_train = task.labels.encode(task.train_full.labels, source="train")
        stage = PredictionStage.fit(
            task.labels,
            embedded["train"],
            y_train,
            embedded["dev"],
            task.y_dev,
            settings,
            show_progress=True,
        )
        fit_seconds = time.perf_counter() - started
        notes = {
            "params": args.params,
            "ranker_grid": grid,
            "model": str(args.model),
            "encoder_fit_seconds_or_load": round(train_seconds, 1),
            "embedding_seconds_train_dev_test": round(embed_seconds, 1),
            "stage_timings": stage.timings,
            "lexical": stage.lexical_candidate,
            "selection": {k: round(v, 5) for k, v in stage.selection.items()},
        }
        result = Result(stage.scores(embedded["dev"]), stage.scores(embedded["test"]), fit_seconds, notes)
        name = f"labelcon + {scorer}" + (f" ({json.dumps(args.params, sort_keys=True)})" if args.params else "")
        name += f" (ranker grid {json.dumps(grid)})" if grid and scorer != "knn" else ""
        rows.append(
            protocol_row(
                name,
                "labelcon's stage with lexical_scorer=" + scorer,
                task,
                test,
                task.labels,
                result,
                started,
                load_before,
            )
        )
        print(f"{name}: kept {stage.lexical_candidate}", file=sys.stderr, flush=True)
        save_rows(results_path(harness), {"dataset": args.dataset, **splits}, [rows[-1]])
    print(classification_table(rows))


if __name__ == "__main__":
    main()
