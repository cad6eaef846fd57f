"""The ``labelcon`` command line: a thin layer that parses, builds a Config and calls the library."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from labelcon.config import Config, ConfigError
from labelcon.data import DataError, read_texts, registered_names
from labelcon.io import atomic_open, write_json
from labelcon.options import command_line, config_options
from labelcon.rundir import locked


EXAMPLES_TRAIN = """
\b
Examples:
  labelcon train --train train.jsonl --dev dev.jsonl --test test.jsonl --out runs/a
  labelcon train --train data.csv --labels-field tags --label-sep "|" --out runs/b --encoder static
  labelcon train --dataset goemotions --data-dir ../shared/data --out runs/go
  labelcon train --train train.jsonl --out runs/a --resume      # continue an interrupted run
  labelcon train --train train.jsonl --out runs/a --nproc 2     # two processes (torchrun)
"""


def _fail_cleanly(func: Callable) -> Callable:
    """Bad input ends with one clear line on stderr and exit code 2, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DataError, ConfigError, FileNotFoundError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="labelcon")
def main() -> None:
    """labelcon: contrastive representation learning for items with several labels each.

    \b
    Train an encoder so that items sharing labels sit close together, then predict
    labels, search similar items and evaluate -- from this command or from Python:
      labelcon demo                    # a 2-minute tour on a built-in data set
      labelcon train --help            # train on your own JSONL / CSV / TSV / Parquet
    """


def _data_options(func: Callable) -> Callable:
    for option in reversed([
        click.option("--text-field", default=None, help="Field/column holding the text [the run's]."),
        click.option("--labels-field", default=None, help="Field/column holding the labels [the run's]."),
        click.option("--label-sep", default=None, help="Separator when labels are one string, e.g. ',' [the run's]."),
    ]):
        func = option(func)
    return func


@main.command(epilog=EXAMPLES_TRAIN)
@click.option("--train", "train_path", type=click.Path(dir_okay=False), help="Training data file.")
@click.option("--dev", "dev_path", type=click.Path(dir_okay=False), help="Dev data file (default: a seeded carve-out of train).")
@click.option("--test", "test_path", type=click.Path(dir_okay=False), help="Test data file, evaluated at the end.")
@click.option("--dataset", help=f"A registered data set instead of --train/--dev/--test: {', '.join(registered_names(labelled_only=True))}.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Directory holding registered data sets (or $LABELCON_DATA).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@config_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of config fields; flags win.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (same data and settings).")
@click.option("--overwrite", is_flag=True, help="Replace the finished or interrupted labelcon run in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries.")
@_fail_cleanly
def train(train_path, dev_path, test_path, dataset, data_dir, out_dir, config_file, resume, overwrite, quiet, **flags) -> None:
    """Train an encoder and a label head; write the run directory OUT.

    OUT gets config.yaml, the model (labelcon.json pointing at model.N/: encoder/, head/,
    labels.json, thresholds.json, ...), metrics.json shaped {"dev": {...}, "test": {...}},
    history.json and predictions_test.jsonl. Every setting below is a field of
    labelcon.config.Config, also settable in --config FILE.yaml.
    """
    if dataset:
        from labelcon.data.registry import resolve_dataset

        root = resolve_dataset(dataset, data_dir)
        train_path = train_path or str(root / "train.jsonl")
        dev_path = dev_path or (str(root / "dev.jsonl") if (root / "dev.jsonl").exists() else None)
        test_path = test_path or (str(root / "test.jsonl") if (root / "test.jsonl").exists() else None)
        if (root / "labels.txt").exists() and not flags.get("labels_file"):
            flags["labels_file"] = str(root / "labels.txt")
        if (root / "label_descriptions.tsv").exists() and not flags.get("label_descriptions"):
            flags["label_descriptions"] = str(root / "label_descriptions.tsv")
    if not train_path:
        raise click.UsageError("give --train PATH or --dataset NAME")
    out = Path(out_dir)
    overrides = {k: v for k, v in flags.items() if v is not None}
    if "LOCAL_WORLD_SIZE" in os.environ:  # under torchrun: record how many processes run on this machine
        overrides.setdefault("nproc", int(os.environ["LOCAL_WORLD_SIZE"]))
    saved = out / "config.yaml"
    if resume and saved.exists() and not config_file:
        config = Config.from_yaml(saved, **overrides)
    elif config_file:
        config = Config.from_yaml(config_file, **overrides)
    else:
        config = Config.build(overrides, source="command line")
    if config.processes() > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(_relaunch(click.get_current_context(), config.processes()))
    from labelcon.estimator import Labelcon
    from labelcon.training.distributed import is_main_process

    if resume and not (out / "checkpoint.pt").exists():
        click.echo(f"note: no checkpoint in {out} to resume from; starting from the beginning", err=True)
    started = time.monotonic()
    model = Labelcon(config=config).fit(train_path, dev_path, out_dir=out, resume=resume, overwrite=overwrite,
                                       show_progress=not quiet)
    if not is_main_process():  # under torchrun, rank 0 evaluates and writes the run directory
        return
    if test_path and model.stage_ is not None:
        test = model.read(test_path)
        with locked(out):
            model.metrics_["test"] = model.evaluate(test)
            _write_predictions(model, test, out / "predictions_test.jsonl")
            write_json(out / "metrics.json", model.metrics_)
    if not quiet:
        click.echo(f"done in {time.monotonic() - started:.0f} s; run directory: {out}")
        _print_metrics(model.metrics_)


def _relaunch(ctx: click.Context, nproc: int) -> int:
    """Run this ``train`` command again as ``nproc`` processes under torchrun (its Python
    entry, ``torch.distributed.run``), with the same options but ``--nproc``; returns its
    exit code. The processes record ``nproc`` in the run's config from torchrun's
    ``LOCAL_WORLD_SIZE``, so ``--resume`` re-launches as many."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "labelcon", "train", *command_line(ctx, skip={"nproc"})]
    return subprocess.run(command, check=False).returncode


def _write_predictions(model, dataset, path: Path, top_k: int = 5) -> None:
    label_sets, ranked = model.predict_with_top_k(dataset.texts, top_k)
    with atomic_open(path) as handle:
        for text, gold, chosen, top in zip(dataset.texts, dataset.labels, label_sets, ranked, strict=True):
            record = {"text": text, "labels": list(gold), "predicted": chosen, "scores": _rounded(top)}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _rounded(top: list[tuple[str, float]]) -> dict[str, float]:
    """Top-k scores as a JSON object, best first, to 4 decimals."""
    return {name: round(score, 4) for name, score in top}


def _print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    """One row per metric, one column per split."""
    from rich.console import Console
    from rich.table import Table

    names = ["macro_f1", "micro_f1", "samples_f1", "macro_ap", "precision_at_1", "precision_at_3", "lrap", "hamming_loss"]
    table = Table(title="metrics")
    table.add_column("metric")
    for split in metrics:
        table.add_column(split, justify="right")
    for name in names:
        table.add_row(name, *(f"{values[name]:.3f}" if name in values else "-" for values in metrics.values()))
    Console().print(table)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help="Labelled data file.")
@_data_options
@click.option("--ignore-unknown-labels", is_flag=True, help="Count and drop labels unseen in training instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_fail_cleanly
def evaluate(run_dir, data_path, ignore_unknown_labels, as_json, **fields) -> None:
    """Evaluate the model in RUN_DIR on a labelled file.

    \b
    Example:
      labelcon evaluate runs/a --data test.jsonl --json
    """
    model = _load(run_dir, fields)
    metrics = model.evaluate(data_path, ignore_unknown_labels=ignore_unknown_labels)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        _print_metrics({Path(data_path).name: metrics})


def _load(run_dir: str, fields: dict[str, Any] | None = None):
    from labelcon.estimator import Labelcon

    model = Labelcon.load(run_dir)
    for key, value in (fields or {}).items():
        if value is not None:
            setattr(model.config, key, value)
    return model


def _inputs(texts: tuple[str, ...], input_path: str | None, text_field: str | None) -> list[str]:
    items = list(texts)
    if input_path:
        items += read_texts(input_path, text_field=text_field or "text")
    if not items:
        raise click.UsageError("give texts as arguments or --input PATH")
    return items


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_path", type=click.Path(dir_okay=False), help="File of texts: .txt (one per line), JSONL, CSV, TSV.")
@click.option("--text-field", default=None, help="Field/column holding the text [text].")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Scores of the K best labels.")
@_fail_cleanly
def predict(run_dir, texts, input_path, text_field, top_k) -> None:
    """Predict labels: one JSON line per input with its labels and scores.

    \b
    Examples:
      labelcon predict runs/a "the parcel never arrived" "love it"
      labelcon predict runs/a --input new.jsonl --top-k 3 > predictions.jsonl
    """
    model = _load(run_dir)
    items = _inputs(texts, input_path, text_field)
    label_sets, ranked = model.predict_with_top_k(items, top_k)
    for text, chosen, top in zip(items, label_sets, ranked, strict=True):
        click.echo(json.dumps({"text": text, "labels": chosen, "scores": _rounded(top)}, ensure_ascii=False))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False), help="File of texts.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Where to write the [n, D] float32 .npy.")
@click.option("--text-field", default=None, help="Field/column holding the text [text].")
@click.option("--quiet", "-q", is_flag=True)
@_fail_cleanly
def embed(run_dir, input_path, output, text_field, quiet) -> None:
    """Write L2-normalised embeddings of the texts in --input to a .npy file.

    \b
    Example:
      labelcon embed runs/a --input corpus.jsonl --output corpus.npy
    """
    model = _load(run_dir)
    vectors = model.encode(_inputs((), input_path, text_field), show_progress=not quiet)
    with atomic_open(output, "wb") as handle:
        np.save(handle, vectors)
    if not quiet:
        click.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {output}")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Keep the run directory here (default: a temporary one).")
@click.option("--encoder", help="Encoder to use (default: minilm when installed, else static).")
@click.option("--quiet", "-q", is_flag=True)
@_fail_cleanly
def demo(out_dir, encoder, quiet) -> None:
    """Train, evaluate and predict on the built-in multi-label data set (offline, a few minutes).

    \b
    Examples:
      labelcon demo
      labelcon demo --encoder static --out runs/demo
    """
    from labelcon.demo import run_demo

    if out_dir:
        run_demo(Path(out_dir), encoder=encoder, quiet=quiet)
    else:
        with tempfile.TemporaryDirectory(prefix="labelcon-demo-") as tmp:
            run_demo(Path(tmp), encoder=encoder, quiet=quiet)


if __name__ == "__main__":
    main()
