"""labelcon against what users would pick instead, side by side on the same splits.

    python bench/compare.py goemotions
    python bench/compare.py reuters21578
    python bench/compare.py arxiv_abstracts
    python bench/compare.py goemotions --shots 8
    python bench/compare.py stsb [--model RUN_DIR]
    python bench/compare.py goemotions --systems tfidf,frozen --limit 2000
    python bench/compare.py reuters21578 --systems labelcon,tfidf --seeds 13,14,15
    python bench/compare.py arxiv_abstracts --systems labelcon --save-scores runs/scores

Every system (``bench/systems/``) fits on the same training items and returns dev and
test scores [n, C]; everything after that is done here, identically for all of them:

1. the decision rule chosen on dev as labelcon chooses its own
   (``labelcon.heads.decisions.choose_rule`` by the default target metric, cross-fitted on
   dev where dev's scores are small enough: per-label thresholds calibrated with labelcon's
   ``Thresholds.calibrate`` at its ``min_positives``, rare labels under the micro-F1-optimal
   global threshold or under the system's own threshold for them when it has one
   (labelcon's ``auto`` head scores such labels with a class-balanced probe and brings
   the threshold meant for it, :class:`labelcon.heads.FallbackHead`), one global
   threshold, top-k or rank-capped thresholds); when every training item has a label, an
   item clearing no threshold gets its top label, as labelcon's own predictions do
   (:attr:`systems.common.Task.at_least_one`);
2. metrics on test with ``labelcon.metrics.evaluate``, plus nDCG@5 and PSP@5 (propensities
   from the training label counts, A=0.55, B=1.5) and the mean number of labels predicted
   and held per test item.

A data set without a dev split (Reuters) gets ``train_dev_split(train, 0.1, seed)``,
labelcon's documented carve-out, for every system. ``--limit N`` keeps a seeded random
N items of each split (after the carve-out) for quick checks; ``--shots N`` trains every
system on ``sample_shots(train, N, seed)``. The bce system trains for ``--budget-minutes``,
by default for as long as labelcon trained in the same invocation (labelcon then runs first).

``--save-scores DIR`` also keeps every system's dev and test scores with their labels
(``DIR/<dataset>-seed<S>-<system>.npz``), so decision rules can be studied on them without
training again.

Output: a markdown table on stdout and the rows as JSON in ``bench/results/`` (one file
per data set and setting, written atomically after each system, so an interrupted run
keeps the rows it finished; rows of other systems already in the file are kept, so
subsets can be run one at a time). "train" is the time a system spends
fitting (including its own model selection on dev); "end-to-end" adds loading, scoring
dev and test, threshold calibration and evaluation.

``--seeds 13,14,15`` runs every system once per seed (the seed of the carve-out, ``--limit``,
``--shots`` and training; each seed's rows go to its own results file, as ``--seed`` writes
them) and then summarises the seeds in ``<dataset>[-...]-seeds.json``: per system and
metric the mean, the sample standard deviation, the min and the max, with each seed's
commit and date. ``--seeds ... --summarize`` runs nothing and summarises the rows of
``--systems`` that the seeds' files already hold, so seeds run at different times can be
summarised together.

``stsb``: Spearman x 100 of cosine similarity on STS-B test for the base MiniLM and for
labelcon trained on GoEmotions with its defaults (``--model DIR`` loads a run directory
instead of training), to check that training on labels does not wreck general similarity.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import scipy.stats
import torch
import transformers
from data_dir import default_data_dir
from systems import SYSTEMS, load_system
from systems.common import LONG_MAX_LENGTH, Result, Task
from systems.labelcon_system import labelcon_params

from labelcon import Labelcon
from labelcon.config import Config
from labelcon.data import Dataset, LabelSpace, read_dataset, read_pairs, sample_shots, train_dev_split
from labelcon.encoders import TransformerEncoder
from labelcon.heads.decisions import choose_rule, resolve_target_metric, rule_name
from labelcon.io import atomic_open, read_json, write_json
from labelcon.machine import cpu_model
from labelcon.metrics import evaluate, label_propensities, ndcg_at_k, psp_at_k

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
DEFAULTS = Config()
PAIR_DATASET = "stsb"
STS_SOURCE = "goemotions"
ENCODE_BATCH = 128
COLUMNS = (
    ("macro_f1", "macro-F1"),
    ("micro_f1", "micro-F1"),
    ("samples_f1", "samples-F1"),
    ("macro_ap", "macro-AP"),
    ("precision_at_1", "P@1"),
    ("precision_at_5", "P@5"),
    ("ndcg_at_5", "nDCG@5"),
    ("psp_at_5", "PSP@5"),
)


# ---------------------------------------------------------------- command line


def seed_list(text: str) -> list[int]:
    """``"13,14,15"`` -> ``[13, 14, 15]`` (distinct integers, in the order given)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 13,14,15, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated integers, got {text!r}")
    return seeds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare labelcon with TF-IDF, frozen MiniLM, BCE fine-tuning and SetFit on one data set.",
    )
    parser.add_argument(
        "dataset",
        help="a directory name under --data-dir: goemotions, reuters21578, "
        "arxiv_abstracts, ... (train.jsonl, test.jsonl, labels.txt, optional dev.jsonl), or stsb",
    )
    parser.add_argument(
        "--systems",
        default=None,
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all; setfit only with --shots)",
    )
    parser.add_argument("--limit", type=int, default=None, help="keep a seeded random N items of each split")
    parser.add_argument("--shots", type=int, default=None, help="few-shot regime: N training examples per label")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="training budget of the bce system (default: labelcon's training time in this run)",
    )
    parser.add_argument(
        "--labelcon-head",
        default=None,
        metavar="HEAD",
        help="run labelcon with this head instead of its default (auto); its row is "
        "named 'labelcon (head=HEAD)' and kept beside the default's",
    )
    parser.add_argument(
        "--labelcon-params",
        type=json.loads,
        default={},
        metavar="JSON",
        help="Labelcon keywords other than the defaults, e.g. '{\"train_layers\": 2}'; the row "
        "is named after them ('labelcon (train_layers=2)') and kept beside the default's",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="seed of the carve-out, --limit, --shots and training (default: labelcon's, 13)",
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        metavar="S1,S2,...",
        help="run every system once per seed (each seed's rows in its own results file, as "
        "--seed writes them), then summarise the seeds: mean, spread, min and max",
    )
    parser.add_argument(
        "--save-scores",
        type=Path,
        default=None,
        metavar="DIR",
        help="also keep each system's dev and test scores, as DIR/<dataset>-seed<S>-<system>.npz",
    )
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="with --seeds: only summarise the rows the seeds' results files already hold",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="folder holding the data sets ($LABELCON_DATA, else ../shared/data next to the repo)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="stsb only: a labelcon run directory trained on GoEmotions (default: train one)",
    )
    args = parser.parse_args(argv)
    for name in ("limit", "shots", "budget_minutes"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.dataset == PAIR_DATASET:
        if args.systems or args.shots or args.budget_minutes:
            parser.error("stsb compares base MiniLM with labelcon: --systems, --shots, --budget-minutes do not apply")
        return args
    if args.model is not None:
        parser.error("--model applies to stsb only")
    if args.summarize and not args.seeds:
        parser.error("--summarize summarises the seeds given by --seeds S1,S2,...")
    default = [name for name in SYSTEMS if name != "setfit" or args.shots]
    chosen = args.systems
    args.systems = default if chosen is None else [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = [name for name in args.systems if name not in SYSTEMS]
    if unknown or not args.systems:
        parser.error(f"--systems: expected names from {', '.join(SYSTEMS)}, got {unknown or 'none'}")
    if "setfit" in args.systems and not args.shots:
        parser.error("setfit runs in the few-shot regime only (it enumerates all O(n^2) training pairs): add --shots N")
    if args.labelcon_head is not None:
        args.labelcon_params["head"] = args.labelcon_head
    if args.labelcon_params:
        if "labelcon" not in args.systems:
            parser.error("--labelcon-head and --labelcon-params apply to the labelcon system: add it to --systems")
        try:
            Config(**args.labelcon_params)
        except ValueError as error:
            parser.error(f"--labelcon-params / --labelcon-head: {error}")
    if "bce" in args.systems and args.budget_minutes is None and "labelcon" not in args.systems:
        parser.error("bce trains for a wall-clock budget: add --budget-minutes M, or run it together with labelcon")
    return args


# ---------------------------------------------------------------- data


def subsample(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    """A seeded random ``limit`` items of ``dataset`` in their original order (all when None)."""
    if limit is None or limit >= len(dataset):
        return dataset
    keep = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:limit])
    return dataset.subset(keep.tolist())


def load_task(name: str, args: argparse.Namespace) -> tuple[Task, Dataset, dict[str, Any]]:
    """The task every system gets, the test set, and a description of the splits."""
    folder = args.data_dir / name
    needed = ("train.jsonl", "test.jsonl", "labels.txt")
    missing = [file for file in needed if not (folder / file).is_file()]
    if missing:
        raise SystemExit(
            f"{folder}: expected a data set folder with {', '.join(needed)} (dev.jsonl optional); "
            f"missing {', '.join(missing)}. Set --data-dir or $LABELCON_DATA."
        )
    train = read_dataset(folder / "train.jsonl")
    if (folder / "dev.jsonl").is_file():
        dev, dev_source = read_dataset(folder / "dev.jsonl"), "dev.jsonl"
    else:
        train, dev = train_dev_split(train, DEFAULTS.dev_fraction, seed=args.seed)
        dev_source = f"train_dev_split(train, {DEFAULTS.dev_fraction}, seed={args.seed})"
    test = read_dataset(folder / "test.jsonl")
    train, dev, test = (subsample(split, args.limit, args.seed) for split in (train, dev, test))
    few = sample_shots(train, args.shots, seed=args.seed) if args.shots else train
    labels = LabelSpace.from_label_sets(train.labels, labels_file=folder / "labels.txt")
    task = Task(
        dataset=name,
        train=few,
        train_full=train,
        dev=dev,
        test=test,
        labels=labels,
        labels_file=folder / "labels.txt",
        y_train=labels.encode(few.labels, source="train"),
        y_dev=labels.encode(dev.labels, source="dev"),
        seed=args.seed,
        shots=args.shots,
        budget_seconds=60 * args.budget_minutes if args.budget_minutes else None,
        labelcon_params=args.labelcon_params,
    )
    splits = {
        "train": len(few),
        "train_before_shots": len(train),
        "dev": len(dev),
        "test": len(test),
        "labels": len(labels),
        "dev_source": dev_source,
        "limit": args.limit,
        "shots": args.shots,
        "seed": args.seed,
        "at_least_one": task.at_least_one,
    }
    return task, test, splits


# ---------------------------------------------------------------- running and reporting


def machine() -> dict[str, Any]:
    """CPU model and count, thread count and library versions, for the record."""
    return {
        "cpu": cpu_model() or platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def git_state() -> str:
    """``git describe --always --dirty`` of the repository (the labelcon code measured)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def row_name(system: str, labelcon_params: dict[str, Any]) -> str:
    """The name of a system's result row: ``labelcon (train_layers=2)`` for labelcon with keywords."""
    if system != "labelcon" or not labelcon_params:
        return system
    return "labelcon (" + ", ".join(f"{key}={value}" for key, value in sorted(labelcon_params.items())) + ")"


def run_system(
    name: str, task: Task, test: Dataset, labels: LabelSpace, scores_dir: Path | None = None
) -> dict[str, Any]:
    """Run one system and score it with the shared protocol; returns its result row. With
    ``scores_dir``, its dev and test scores are kept there too (:func:`save_scores`)."""
    module = load_system(name)
    print(f"\n== {name}: {module.DESCRIPTION}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result: Result = module.run(task)
    system = row_name(name, task.labelcon_params)
    if scores_dir is not None:
        y_test = labels.encode(test.labels, source="test")
        save_scores(scores_dir / f"{task.dataset}-seed{task.seed}-{name}.npz", task, y_test, result)
    return protocol_row(system, module.DESCRIPTION, task, test, labels, result, started, load_before)


def save_scores(path: Path, task: Task, y_test: scipy.sparse.csr_matrix, result: Result) -> None:
    """A system's dev and test scores with their labels, written atomically to ``path`` (npz:
    ``dev``, ``test``, ``y_dev``, ``y_test`` as dense 0/1, ``fallback``: the system's own
    threshold for the label columns ``fallback_columns``, NaN and none for systems without
    one), for studying decision rules without retraining."""
    own = result.fallback_threshold
    fallback, columns = (np.nan, []) if own is None else (own.threshold, own.columns)
    with atomic_open(path, "wb", encoding=None) as f:
        np.savez_compressed(
            f,
            dev=result.dev_scores,
            test=result.test_scores,
            y_dev=task.y_dev.toarray().astype(np.int8),
            y_test=y_test.toarray().astype(np.int8),
            fallback=np.float64(fallback),
            fallback_columns=np.asarray(columns, dtype=np.int64),
        )


def protocol_row(
    system: str,
    description: str,
    task: Task,
    test: Dataset,
    labels: LabelSpace,
    result: Result,
    started: float,
    load_before: float,
) -> dict[str, Any]:
    """Score a system's dev and test scores with the shared protocol; returns its result row
    (``started``: ``time.perf_counter()`` when the system began, ``load_before``: the load then)."""
    y_test = labels.encode(test.labels, source="test")
    shape_dev, shape_test = (len(task.dev), len(labels)), (len(test), len(labels))
    if result.dev_scores.shape != shape_dev or result.test_scores.shape != shape_test:
        raise RuntimeError(
            f"{system} returned scores of shapes {result.dev_scores.shape} and "
            f"{result.test_scores.shape}, expected {shape_dev} and {shape_test}"
        )
    rule, rule_figures = choose_rule(
        lambda: [result.dev_scores],
        task.y_dev,
        min_positives=DEFAULTS.min_positives,
        fallback=result.fallback_threshold,
        metric=resolve_target_metric(DEFAULTS.target_metric, len(labels)),
        at_least_one=task.at_least_one,
        seed=task.seed,
    )
    dev_metrics = evaluate(task.y_dev, result.dev_scores, rule.apply(result.dev_scores, at_least_one=task.at_least_one))
    test_pred = rule.apply(result.test_scores, at_least_one=task.at_least_one)
    test_metrics = evaluate(y_test, result.test_scores, test_pred)
    test_metrics["ndcg_at_5"] = ndcg_at_k(y_test, result.test_scores, 5)
    test_metrics["psp_at_5"] = psp_at_k(y_test, result.test_scores, 5, label_propensities(task.y_train))
    predicted = np.asarray(test_pred.sum(axis=1)).ravel()
    decisions = {
        "rule": rule_name(rule),
        "dev_figures": {k: round(v, 5) for k, v in rule_figures.items()},
        "test_labels_per_item": {
            "predicted": round(float(predicted.mean()), 3),
            "true": round(float(y_test.sum(axis=1).mean()), 3),
        },
        "labels_predicted_for_every_test_item": int((np.asarray(test_pred.sum(axis=0)).ravel() == len(test)).sum()),
    }
    end_to_end = time.perf_counter() - started
    return {
        "system": system,
        "description": description,
        "test": test_metrics,
        "dev_after_calibration_on_dev": dev_metrics,
        "train_seconds": round(result.train_seconds, 1),
        "end_to_end_seconds": round(end_to_end, 1),
        "decisions": decisions,
        "notes": result.notes,
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_state(),
        "command": "python bench/compare.py " + " ".join(sys.argv[1:]),
    }


def fmt_seconds(seconds: float | None) -> str:
    """``42 s``, ``12m 05s``, ``1h 02m``; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def markdown_table(header: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def classification_table(rows: list[dict[str, Any]]) -> str:
    header = ["system", *(title for _, title in COLUMNS), "labels/item", "decision rule", "train", "end-to-end"]
    body = [
        [
            row["system"],
            *(f"{row['test'][key]:.3f}" for key, _ in COLUMNS),
            _labels_per_item(row),
            row["decisions"]["rule"],
            fmt_seconds(row["train_seconds"]),
            fmt_seconds(row["end_to_end_seconds"]),
        ]
        for row in rows
    ]
    return markdown_table(header, body)


def _labels_per_item(row: dict[str, Any]) -> str:
    """``predicted / true`` mean labels per test item."""
    counts = row["decisions"]["test_labels_per_item"]
    return f"{counts['predicted']:.2f} / {counts['true']:.2f}"


def results_path(args: argparse.Namespace, seed: int | None = None, *, summary: bool = False) -> Path:
    """``bench/results/<dataset>[-shotsN][-limitN][-seedN].json`` for ``seed`` (default
    ``--seed``; named only when not the default), or with ``summary`` the ``-seeds.json``
    that summarises several seeds."""
    seed = args.seed if seed is None else seed
    parts = [args.dataset]
    if getattr(args, "shots", None):
        parts.append(f"shots{args.shots}")
    if args.limit:
        parts.append(f"limit{args.limit}")
    if summary:
        parts.append("seeds")
    elif seed != DEFAULTS.seed:
        parts.append(f"seed{seed}")
    return RESULTS_DIR / ("-".join(parts) + ".json")


def save_rows(path: Path, setting: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Merge ``rows`` into the JSON file at ``path`` by system name, atomically."""
    existing = read_json(path) if path.exists() else {}
    kept = existing.get("rows", {}) if existing.get("setting") == setting else {}
    kept.update({row["system"]: row for row in rows})
    write_json(path, {"setting": setting, "rows": kept})


def compare(args: argparse.Namespace) -> None:
    task, test, splits = load_task(args.dataset, args)
    print(f"{args.dataset}: {splits}", file=sys.stderr, flush=True)
    order = sorted(args.systems, key=lambda name: (name != "labelcon", list(SYSTEMS).index(name)))
    rows: dict[str, dict[str, Any]] = {}
    for name in order:
        rows[name] = run_system(name, task, test, task.labels, args.save_scores)
        save_rows(results_path(args), {"dataset": args.dataset, **splits}, [rows[name]])  # kept if a later system fails
        if name == "labelcon" and task.budget_seconds is None:
            task.budget_seconds = rows[name]["train_seconds"]
    table_rows = [rows[name] for name in SYSTEMS if name in rows]
    print(
        f"\n{args.dataset}: train {splits['train']}, dev {splits['dev']} ({splits['dev_source']}), "
        f"test {splits['test']}, {splits['labels']} labels; test metrics, thresholds calibrated on dev\n"
    )
    print(classification_table(table_rows))
    print(f"\nrows written to {results_path(args).relative_to(REPO)}")


# ---------------------------------------------------------------- several seeds

SEED_METRICS = ("macro_f1", "micro_f1", "macro_ap", "precision_at_1", "precision_at_5")


def seed_summary(per_seed: dict[int, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per system, each metric of :data:`SEED_METRICS` over the seeds that have its row:
    ``n``, ``mean``, ``sd`` (sample standard deviation, ddof=1; 0 for one seed), ``min``, ``max``,
    with the seconds, commit and date of every seed's row.

    ``per_seed`` maps a seed to the rows of its results file, keyed by system name."""
    systems = list(dict.fromkeys(name for rows in per_seed.values() for name in rows))
    summary: dict[str, dict[str, Any]] = {}
    for name in systems:
        rows = {seed: seed_rows[name] for seed, seed_rows in per_seed.items() if name in seed_rows}
        metrics = {}
        for key in SEED_METRICS:
            values = np.array([row["test"][key] for row in rows.values()])
            metrics[key] = {
                "n": len(values),
                "mean": round(float(values.mean()), 5),
                "sd": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 5),
                "min": round(float(values.min()), 5),
                "max": round(float(values.max()), 5),
            }
        summary[name] = {
            "seeds": list(rows),
            "metrics": metrics,
            "runs": {
                str(seed): {
                    "end_to_end_seconds": row["end_to_end_seconds"],
                    "git": row["git"],
                    "date": row["date"],
                    **{key: row["test"][key] for key in SEED_METRICS},
                }
                for seed, row in rows.items()
            },
        }
    return summary


def seeds_table(summary: dict[str, dict[str, Any]]) -> str:
    """``mean ± sd (min–max)`` per metric, and the median end-to-end time, one row per system."""
    header = ["system", "seeds", *(title for key, title in COLUMNS if key in SEED_METRICS), "end-to-end (median)"]
    body = []
    for name, entry in summary.items():
        cells = [
            f"{m['mean']:.3f} ± {m['sd']:.3f} ({m['min']:.3f}–{m['max']:.3f})" for key, m in entry["metrics"].items()
        ]
        seconds = float(np.median([run["end_to_end_seconds"] for run in entry["runs"].values()]))
        body.append([name, ", ".join(map(str, entry["seeds"])), *cells, fmt_seconds(seconds)])
    return markdown_table(header, body)


def compare_seeds(args: argparse.Namespace) -> None:
    """Run :func:`compare` once per seed of ``--seeds`` (unless ``--summarize``), then summarise
    the rows the seeds' results files hold into ``<dataset>[-...]-seeds.json``."""
    if not args.summarize:
        for seed in args.seeds:
            args.seed = seed
            compare(args)
    wanted = {row_name(system, args.labelcon_params) for system in args.systems}
    per_seed = {}
    for seed in args.seeds:
        path = results_path(args, seed)
        if not path.exists():
            raise SystemExit(f"{path}: no results for seed {seed}; run it with --seed {seed} first")
        per_seed[seed] = {name: row for name, row in read_json(path)["rows"].items() if name in wanted}
    summary = seed_summary(per_seed)
    path = results_path(args, summary=True)
    write_json(path, {"seeds": args.seeds, "systems": summary})
    print(
        f"\n{args.dataset}: {len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}); test metrics, "
        "mean ± sample sd (min–max)\n"
    )
    print(seeds_table(summary))
    print(f"\nsummary written to {path.relative_to(REPO)}")


# ---------------------------------------------------------------- STS-B


def spearman(
    encode: Callable[[list[str]], np.ndarray], texts1: list[str], texts2: list[str], gold: list[float]
) -> float:
    """Spearman x 100 between the cosine similarity of the pairs' embeddings and the gold scores."""
    a, b = encode(texts1), encode(texts2)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return 100 * float(scipy.stats.spearmanr(cosine, gold).statistic)


def subsample_pairs(
    texts1: list[str], texts2: list[str], scores: list[float], limit: int | None, seed: int
) -> tuple[list[str], list[str], list[float]]:
    """A seeded random ``limit`` pairs (all when None), in their original order."""
    keep = range(len(scores))
    if limit is not None and limit < len(scores):
        keep = np.sort(np.random.default_rng(seed).permutation(len(scores))[:limit]).tolist()
    return [texts1[i] for i in keep], [texts2[i] for i in keep], [scores[i] for i in keep]


def compare_sts(args: argparse.Namespace) -> None:
    pairs_path = args.data_dir / PAIR_DATASET / "test.jsonl"
    if not pairs_path.is_file():
        raise SystemExit(f"{pairs_path}: expected the STS-B test pairs; set --data-dir or $LABELCON_DATA")
    pairs = read_pairs(pairs_path)
    pairs_limited = subsample_pairs(pairs.texts1, pairs.texts2, pairs.scores, args.limit, args.seed)
    rows = []
    started = time.perf_counter()
    if args.model is not None:
        model, train_seconds, source = Labelcon.load(args.model), None, f"loaded from {args.model}"
    else:
        task, _, splits = load_task(STS_SOURCE, args)
        tic = time.perf_counter()
        model = Labelcon(**labelcon_params(task)).fit(task.train_full, task.dev)
        train_seconds = time.perf_counter() - tic
        source = f"trained here on {STS_SOURCE} ({splits['train']} train, {splits['dev']} dev)"
    max_length = getattr(model.encoder_, "max_length", LONG_MAX_LENGTH)
    labelcon_score = spearman(lambda texts: model.encode(texts, show_progress=True), *pairs_limited)
    rows.append(
        {
            "system": f"labelcon ({STS_SOURCE}, defaults)",
            "spearman_test": labelcon_score,
            "train_seconds": None if train_seconds is None else round(train_seconds, 1),
            "end_to_end_seconds": round(time.perf_counter() - started, 1),
            "notes": {"model": source},
        }
    )
    started = time.perf_counter()
    base = TransformerEncoder("minilm", max_length=max_length).eval()
    base_score = spearman(lambda texts: base.encode(texts, batch_size=ENCODE_BATCH, show_progress=True), *pairs_limited)
    rows.insert(
        0,
        {
            "system": "all-MiniLM-L6-v2 (base)",
            "spearman_test": base_score,
            "train_seconds": None,
            "end_to_end_seconds": round(time.perf_counter() - started, 1),
            "notes": {"max_length": max_length},
        },
    )
    stamp = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_state(),
        "command": "python bench/compare.py " + " ".join(sys.argv[1:]),
    }
    rows = [{**row, **stamp} for row in rows]
    setting = {"dataset": PAIR_DATASET, "pairs": len(pairs_limited[0]), "limit": args.limit, "seed": args.seed}
    save_rows(results_path(args), setting, rows)
    print(f"\nSTS-B test ({len(pairs_limited[0])} pairs): Spearman x 100 of cosine similarity\n")
    print(
        markdown_table(
            ["system", "Spearman", "train", "end-to-end"],
            [
                [
                    row["system"],
                    f"{row['spearman_test']:.2f}",
                    fmt_seconds(row["train_seconds"]),
                    fmt_seconds(row["end_to_end_seconds"]),
                ]
                for row in rows
            ],
        )
    )
    print(f"\nrows written to {results_path(args).relative_to(REPO)}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.dataset == PAIR_DATASET:
        compare_sts(args)
    elif args.seeds:
        compare_seeds(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
