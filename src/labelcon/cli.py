"""The ``labelcon`` command line: a thin layer that parses, builds a Config and calls the library."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np
from pydantic import TypeAdapter, ValidationError

from labelcon.config import DEVICE_HELP, Config, ConfigError, DeviceName, ServeSettings, error_message, refusal
from labelcon.data import DataError, read_texts, registered_names
from labelcon.io import atomic_open, read_json, write_json
from labelcon.modeldir import locked
from labelcon.options import command_line, config_options, settings_options

EXAMPLES_TRAIN = """
\b
Examples:
  labelcon train --train train.jsonl --dev dev.jsonl --test test.jsonl --out runs/a
  labelcon train --train data.csv --labels-field tags --label-sep "|" --out runs/b --encoder static
  labelcon train --dataset goemotions --data-dir ../shared/data --out runs/go
  labelcon train --train train.jsonl --out runs/a --resume      # continue an interrupted run
  labelcon train --train train.jsonl --out runs/a --nproc 2     # two processes (torchrun)
  labelcon train --pairs stsb/train.jsonl --pair-fields text1,text2 --pair-score-field score --out runs/sts
  labelcon train --train train.jsonl --pairs nli.jsonl --pair-fields anchor,positive,negative --out runs/c
"""


def _fail_cleanly(func: Callable) -> Callable:
    """Any error ends with one line on stderr, ``error: ...``, and exit code 2, never a
    traceback. Click's own errors (usage, ``Abort``) keep click's handling; with
    ``LABELCON_DEBUG=1`` in the environment the error is raised with its traceback. A
    closed stdout (the output piped into ``head``) ends the command with exit code 1 and
    no message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # the reader of stdout left (`| head`): stop quietly, as cat does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush finds no pipe
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("LABELCON_DEBUG", "0") not in ("", "0"):
                raise
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(2)

    return wrapper


def _one_line(exc: Exception) -> str:
    """The message of ``exc`` on one line. Errors that describe themselves (labelcon's,
    ``ValueError``, ``OSError``) give their message, a file error its file first; any
    other error is unexpected and is shown with its type and how to see where it came from."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" + (f" ({exc.filename2})" if exc.filename2 else "")
    elif isinstance(exc, (ValueError, OSError)) or type(exc).__module__.startswith("labelcon"):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc} (set LABELCON_DEBUG=1 to see where it came from)"
    return re.sub(r"\s*\n\s*", " ", text.strip())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="labelcon")
def main() -> None:
    """labelcon: contrastive representation learning for items with several labels each.

    \b
    Train an encoder so that items sharing labels sit close together, then predict
    labels, search similar items and evaluate -- from this command or from Python:
      labelcon demo                    # a 1-minute tour on a built-in data set (2 CPU cores)
      labelcon train --help            # train on your own JSONL / CSV / TSV / Parquet
    """


def _device_option(func: Callable) -> Callable:
    """``--device``: where a loaded model embeds and scores (checked as ``Config.device`` is)."""
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        callback=_device_name,
        help=f"Where the model embeds and scores: {DEVICE_HELP}.",
    )(func)


def _device_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return TypeAdapter(DeviceName).validate_python(value)
    except ValidationError as exc:
        raise click.BadParameter(error_message(exc.errors()[0])) from None


def _data_options(func: Callable) -> Callable:
    for option in reversed(
        [
            click.option("--text-field", default=None, help="Field/column holding the text [the run's]."),
            click.option("--labels-field", default=None, help="Field/column holding the labels [the run's]."),
            click.option(
                "--label-sep", default=None, help="Separator when labels are one string, e.g. ',' [the run's]."
            ),
        ]
    ):
        func = option(func)
    return func


@main.command(epilog=EXAMPLES_TRAIN)
@click.option("--train", "train_path", type=click.Path(dir_okay=False), help="Training data file.")
@click.option(
    "--dev", "dev_path", type=click.Path(dir_okay=False), help="Dev data file (default: a seeded carve-out of train)."
)
@click.option("--test", "test_path", type=click.Path(dir_okay=False), help="Test data file, evaluated at the end.")
@click.option(
    "--pairs",
    "pairs_path",
    type=click.Path(dir_okay=False),
    help="Text pairs, tuples or scored pairs to train on (columns: --pair-fields, --pair-score-field), "
    "beside --train or alone.",
)
@click.option(
    "--dev-pairs",
    "dev_pairs_path",
    type=click.Path(dir_okay=False),
    help="Scored pairs for dev: Pearson and Spearman after each epoch (history.json) and in metrics.json; "
    "without labels they pick the best epoch.",
)
@click.option(
    "--dev-queries",
    "dev_queries_path",
    type=click.Path(dir_okay=False),
    help="Dev retrieval queries (id, text), with --dev-corpus and --dev-relevance: nDCG@10, MRR@10 and recall@k "
    "after each epoch and in metrics.json; without labels or --dev-pairs they pick the best epoch.",
)
@click.option(
    "--dev-corpus", "dev_corpus_path", type=click.Path(dir_okay=False), help="Dev retrieval corpus (id, text)."
)
@click.option(
    "--dev-relevance",
    "dev_relevance_path",
    type=click.Path(dir_okay=False),
    help="Dev retrieval relevance (query_id, corpus_id[, score]).",
)
@click.option(
    "--dataset",
    help=f"A registered data set instead of --train/--dev/--test: {', '.join(registered_names(labelled_only=True))}.",
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="Directory holding registered data sets (or $LABELCON_DATA)."
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@config_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of config fields; flags win.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (same data and settings).")
@click.option("--overwrite", is_flag=True, help="Replace the finished or interrupted labelcon run in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries.")
@_fail_cleanly
def train(
    train_path: str | None,
    dev_path: str | None,
    test_path: str | None,
    pairs_path: str | None,
    dev_pairs_path: str | None,
    dev_queries_path: str | None,
    dev_corpus_path: str | None,
    dev_relevance_path: str | None,
    dataset: str | None,
    data_dir: str | None,
    out_dir: str,
    config_file: str | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    **flags: Any,
) -> None:
    """Train an encoder and a label head; write the run directory OUT.

    OUT gets config.yaml, the model (labelcon.json pointing at model.N/: encoder/, head/,
    labels.json, thresholds.json, ...), metrics.json shaped {"dev": {...}, "test": {...}},
    history.json, predictions_test.jsonl and README.md (the model card). Every setting below is a field of
    labelcon.config.Config, also settable in --config FILE.yaml.
    """
    if dataset:
        from labelcon.data.registry import dataset_files

        files = dataset_files(dataset, data_dir)
        train_path, dev_path, test_path = (
            train_path or files["train"],
            dev_path or files["dev"],
            test_path or files["test"],
        )
        for name in ("labels_file", "label_descriptions"):
            flags[name] = flags.get(name) or files[name]
    if not train_path and not pairs_path:
        raise click.UsageError("give --train PATH, --dataset NAME or --pairs PATH")
    if dev_path and not train_path:
        raise click.UsageError("--dev calibrates the label head of --train data; without --train there is none")
    dev_retrieval_paths = (dev_queries_path, dev_corpus_path, dev_relevance_path)
    if any(dev_retrieval_paths) and not all(dev_retrieval_paths):
        raise click.UsageError("the dev retrieval check needs --dev-queries, --dev-corpus and --dev-relevance together")
    _check_parent(out_dir, "--out")
    out = Path(out_dir)
    overrides = {k: v for k, v in flags.items() if v is not None}
    _check_flags(overrides)
    if "LOCAL_WORLD_SIZE" in os.environ:  # under torchrun: record how many processes run on this machine
        overrides.setdefault("nproc", int(os.environ["LOCAL_WORLD_SIZE"]))
    saved = out / "config.yaml"
    if resume and saved.exists() and not config_file:
        config = Config.from_yaml(saved, **overrides)
    elif config_file:
        config = Config.from_yaml(config_file, **overrides)
    else:
        config = Config.build(overrides, source="command line")
    from labelcon.device import training_processes

    processes = training_processes(config.nproc, config.device)
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(_relaunch(click.get_current_context(), processes))
    from labelcon.estimator import Labelcon
    from labelcon.training.checkpoint import CHECKPOINT_FILE
    from labelcon.training.distributed import is_main_process

    if resume and not (out / CHECKPOINT_FILE).exists():
        click.echo(f"note: no checkpoint in {out} to resume from; starting from the beginning", err=True)
    dev_retrieval = None
    if all(dev_retrieval_paths):
        from labelcon.data.retrieval import read_retrieval

        dev_retrieval = read_retrieval(*dev_retrieval_paths)
    started = time.monotonic()
    with _report_warnings():
        model = Labelcon(config=config).fit(
            train_path,
            dev_path,
            test=test_path,
            pairs=pairs_path,
            dev_pairs=dev_pairs_path,
            dev_retrieval=dev_retrieval,
            out_dir=out,
            resume=resume,
            overwrite=overwrite,
            show_progress=not quiet,
        )
    if not is_main_process():  # under torchrun, rank 0 evaluates and writes the run directory
        return
    if not quiet:
        click.echo(f"done in {time.monotonic() - started:.0f} s; run directory: {out}")
        _print_metrics(model.metrics_)


def _check_flags(flags: dict[str, Any]) -> None:
    """Reject a flag whose value its Config field refuses, naming the flag: ``--seed: must
    be >= 0, got -1``. Rules across fields are left to the Config built from all sources."""
    try:
        Config(**flags)
    except ValidationError as exc:
        problems = [
            f"--{err['loc'][0].replace('_', '-')}: {refusal(err)}"
            for err in exc.errors()
            if err["loc"] and err["loc"][0] in flags
        ]
        if problems:
            raise ConfigError("; ".join(problems)) from None


def _check_parent(path: str, flag: str) -> None:
    """Fail before any work when ``path`` cannot be made because a file stands where one
    of the directories above it should be."""
    above = next((parent for parent in Path(path).parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(f"{flag} {path}: cannot be made: {above} is a file, not a directory")


@contextmanager
def _report_warnings() -> Iterator[None]:
    """A report that failed (:class:`labelcon.run_outputs.ReportWarning`) as one ``warning:``
    line on stderr; other warnings pass on as usual."""
    from labelcon.run_outputs import ReportWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReportWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, ReportWarning):
            click.echo(f"warning: {warning.message}", err=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _relaunch(ctx: click.Context, nproc: int) -> int:
    """Run this ``train`` command again as ``nproc`` processes under torchrun (its Python
    entry, ``torch.distributed.run``), with the same options but ``--nproc``; returns its
    exit code. The processes record ``nproc`` in the run's config from torchrun's
    ``LOCAL_WORLD_SIZE``, so ``--resume`` re-launches as many."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "labelcon",
        "train",
        *command_line(ctx, skip={"nproc"}),
    ]
    return subprocess.run(command, check=False).returncode


def _print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    """One row per metric that any split has (the headline ones, then those of pairs and
    retrieval), one column per split."""
    from rich.console import Console
    from rich.table import Table

    from labelcon.embedding_metrics import EMBEDDING_METRICS
    from labelcon.metrics import HEADLINE_METRICS

    table = Table(title="metrics")
    table.add_column("metric")
    for split in metrics:
        table.add_column(split, justify="right")
    for name in (*HEADLINE_METRICS, *EMBEDDING_METRICS):
        if not any(name in values for values in metrics.values()):
            continue
        table.add_row(name, *(f"{values[name]:.3f}" if name in values else "-" for values in metrics.values()))
    Console().print(table)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--data", "data_path", type=click.Path(dir_okay=False), help="Labelled data file.")
@_data_options
@click.option(
    "--ignore-unknown-labels", is_flag=True, help="Count and drop labels unseen in training instead of failing."
)
@click.option(
    "--pairs",
    "pairs_path",
    type=click.Path(dir_okay=False),
    help="Scored pairs: Pearson and Spearman of the cosine against the gold scores.",
)
@click.option("--pair-fields", default=None, help="The two text columns of --pairs [the run's, or text1,text2].")
@click.option("--pair-score-field", default=None, help="The score column of --pairs [the run's, or score].")
@click.option("--queries", "queries_path", type=click.Path(dir_okay=False), help="Retrieval: query records (id, text).")
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False), help="Retrieval: corpus records (id, text).")
@click.option(
    "--relevance",
    "relevance_path",
    type=click.Path(dir_okay=False),
    help="Retrieval: relevant (query_id, corpus_id) records; with a score column, scores <= 0 are not relevant.",
)
@click.option("--id-field", default="id", show_default=True, help="Id field of --queries and --corpus.")
@click.option("--query-field", default="query_id", show_default=True, help="Query id field of --relevance.")
@click.option("--corpus-field", default="corpus_id", show_default=True, help="Corpus id field of --relevance.")
@click.option(
    "--into-metrics",
    "split",
    default=None,
    help="Also write the metrics into RUN_DIR/metrics.json under this name (e.g. test), beside those there.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_device_option
@_fail_cleanly
def evaluate(
    run_dir: str,
    data_path: str | None,
    ignore_unknown_labels: bool,
    pairs_path: str | None,
    pair_fields: str | None,
    pair_score_field: str | None,
    queries_path: str | None,
    corpus_path: str | None,
    relevance_path: str | None,
    id_field: str,
    query_field: str,
    corpus_field: str,
    split: str | None,
    as_json: bool,
    device: str,
    **fields: str | None,
) -> None:
    """Evaluate the model in RUN_DIR on labelled data, scored pairs and/or retrieval data.

    \b
    Examples:
      labelcon evaluate runs/a --data test.jsonl --json
      labelcon evaluate runs/a --pairs stsb/test.jsonl --pair-fields text1,text2 --pair-score-field score
      labelcon evaluate runs/a --queries q.jsonl --corpus c.jsonl --relevance qrels.tsv --into-metrics test
    """
    retrieval = (queries_path, corpus_path, relevance_path)
    if any(retrieval) and not all(retrieval):
        raise click.UsageError("retrieval needs --queries, --corpus and --relevance together")
    if not (data_path or pairs_path or all(retrieval)):
        raise click.UsageError("give --data (labelled items), --pairs (scored pairs) or --queries/--corpus/--relevance")
    model = _load(run_dir, device, fields)
    metrics: dict[str, Any] = {}
    if data_path:
        metrics.update(model.evaluate(data_path, ignore_unknown_labels=ignore_unknown_labels))
    if pairs_path:
        metrics.update(model.evaluate_pairs(pairs_path, fields=pair_fields, score_field=pair_score_field))
    if all(retrieval):
        from labelcon.data.retrieval import read_retrieval

        text_field = fields.get("text_field") or model.config.text_field
        data = read_retrieval(
            *retrieval, id_field=id_field, text_field=text_field, query_field=query_field, corpus_field=corpus_field
        )
        metrics.update(model.evaluate_retrieval(data))
    if split:
        with locked(Path(run_dir)):
            path = Path(run_dir) / "metrics.json"
            saved = read_json(path) if path.exists() else {}
            saved[split] = {**saved.get(split, {}), **_finite_or_null(metrics)}
            write_json(path, saved)
    if as_json:
        click.echo(json.dumps(_finite_or_null(metrics), indent=2, allow_nan=False))
    else:
        _print_metrics({Path(data_path or pairs_path or queries_path).name: metrics})


def _finite_or_null(value: Any) -> Any:
    """``value`` with NaN and infinities (a metric undefined on the data) as None, i.e. JSON null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def _load(run_dir: str, device: str, fields: dict[str, Any] | None = None):
    from labelcon.estimator import Labelcon

    model = Labelcon.load(run_dir, device=device)
    for key, value in (fields or {}).items():
        if value is not None:
            setattr(model.config, key, value)
    return model


def _inputs(texts: tuple[str, ...], input_path: str | None, text_field: str | None) -> list[str]:
    """The texts given as arguments, then those of ``--input``; an empty one is an error, as in a file."""
    for position, text in enumerate(texts, start=1):
        if not text.strip():
            raise DataError(f"text argument {position}: expected a non-empty text, got {text!r}")
    items = list(texts)
    if input_path:
        items += read_texts(input_path, text_field=text_field or "text")
    if not items:
        raise click.UsageError("give texts as arguments or --input PATH")
    return items


@main.command()
@click.argument("run_dir", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False),
    help="File of texts: .txt (one per line), JSONL, CSV, TSV.",
)
@click.option("--text-field", default=None, help="Field/column holding the text [text].")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Scores of the K best labels.")
@_device_option
@_fail_cleanly
def predict(
    run_dir: str, texts: tuple[str, ...], input_path: str | None, text_field: str | None, top_k: int, device: str
) -> None:
    """Predict labels: one JSON line per input with its labels and scores.

    \b
    Examples:
      labelcon predict runs/a "the parcel never arrived" "love it"
      labelcon predict runs/a --input new.jsonl --top-k 3 > predictions.jsonl
    """
    from labelcon.run_outputs import rounded_scores

    items = _inputs(texts, input_path, text_field)
    model = _load(run_dir, device)
    label_sets, ranked = model.predict_with_top_k(items, top_k)
    for text, chosen, top in zip(items, label_sets, ranked, strict=True):
        click.echo(json.dumps({"text": text, "labels": chosen, "scores": rounded_scores(top)}, ensure_ascii=False))


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False), help="File of texts.")
@click.option(
    "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the [n, D] float32 .npy."
)
@click.option("--text-field", default=None, help="Field/column holding the text [text].")
@click.option("--quiet", "-q", is_flag=True)
@_device_option
@_fail_cleanly
def embed(run_dir: str, input_path: str, output: str, text_field: str | None, quiet: bool, device: str) -> None:
    """Write L2-normalised embeddings of the texts in --input to a .npy file.

    \b
    Example:
      labelcon embed runs/a --input corpus.jsonl --output corpus.npy
    """
    _check_parent(output, "--output")
    items = _inputs((), input_path, text_field)
    vectors = _load(run_dir, device).encode(items, show_progress=not quiet)
    with atomic_open(output, "wb") as handle:
        np.save(handle, vectors)
    if not quiet:
        click.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {output}")


@main.command(name="index")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--corpus",
    "corpus_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Items to search: JSONL, CSV, TSV, Parquet or .txt; labelled when they have the labels field.",
)
@click.option("--id-field", default=None, help="Field/column holding each item's id [none: its 0-based position].")
@_data_options
@click.option(
    "--exact/--approximate", default=None, help="Exact cosine search or faiss HNSW [exact up to 200,000 items]."
)
@click.option("--quiet", "-q", is_flag=True)
@_device_option
@_fail_cleanly
def index_corpus(
    run_dir: str,
    corpus_path: str,
    id_field: str | None,
    exact: bool | None,
    quiet: bool,
    device: str,
    **fields: str | None,
) -> None:
    """Embed the items of --corpus and store them in RUN_DIR/index/ for `labelcon search`.

    The index is rebuilt by `labelcon search` when the corpus file or the model changes.

    \b
    Example:
      labelcon index runs/a --corpus train.jsonl --id-field id
    """
    from labelcon.search import save_index

    model = _load(run_dir, device, fields)
    index = model.index(corpus_path, id_field=id_field, exact=exact).index_
    save_index(run_dir, index)
    if not quiet:
        labelled = sum(1 for labels in index.corpus.labels if labels)
        passages = (
            f", with {index.meta['passages']['rows']} windows of long items as passages (search --passages)"
            if index.has_passages
            else ""
        )
        click.echo(
            f"indexed {len(index)} items ({labelled} labelled) from {corpus_path} for {index.meta['backend']} "
            f"search into {Path(run_dir) / 'index'}{passages}"
        )


@main.command(name="search")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("queries", nargs=-1)
@click.option(
    "--input", "input_path", type=click.Path(dir_okay=False), help="File of query texts: .txt, JSONL, CSV, TSV."
)
@click.option("--text-field", default=None, help="Field/column holding the text [text].")
@click.option("--like", multiple=True, metavar="ID", help="Search like the indexed item with this id (repeatable).")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True, help="Hits per query.")
@click.option(
    "--label", "labels", multiple=True, metavar="LABEL", help="Keep hits holding this label (repeatable: any of them)."
)
@click.option(
    "--passages",
    is_flag=True,
    help="Rank items by their best window, not their pooled vector, and give each hit that window as "
    '"passage": {"start", "end", "text", "score"} (character offsets into the item text; the index of a model '
    "that reads long texts as windows, --windows mean/max).",
)
@_device_option
@_fail_cleanly
def search_index(
    run_dir: str,
    queries: tuple[str, ...],
    input_path: str | None,
    text_field: str | None,
    like: tuple[str, ...],
    k: int,
    labels: tuple[str, ...],
    passages: bool,
    device: str,
) -> None:
    """Search the items indexed by `labelcon index`: one JSON line per query,
    {"query": ..., "hits": [{"id", "text", "labels", "score"}, ...]} ("like": ID for --like);
    with --passages each hit also holds "passage": {"start", "end", "text", "score"}.

    \b
    Examples:
      labelcon search runs/a "the parcel never arrived" --k 5
      labelcon search runs/a --input queries.txt --label billing > hits.jsonl
      labelcon search runs/a --like 17
      labelcon search runs/a "the clause on early termination" --passages
    """
    from labelcon.search import fresh_index, save_index

    model = _load(run_dir, device)
    items = _inputs(queries, input_path, text_field) if queries or input_path or not like else []
    index, reason = fresh_index(model)
    if reason is not None:
        click.echo(f"note: rebuilt the search index: {reason}", err=True)
        save_index(run_dir, index)
    results = model.search(items, k, labels=labels, like=like, passages=passages)
    asked = [("query", text) for text in items] + [("like", item) for item in like]
    for (key, query), hits in zip(asked, results, strict=True):
        record = {key: query, "hits": [_hit_record(hit) for hit in hits]}
        click.echo(json.dumps(record, ensure_ascii=False))


def _hit_record(hit: Any) -> dict[str, Any]:
    """A search hit as JSON: id, text, labels, score (4 decimals) and, for a passage hit,
    its passage's start, end, text and score."""
    record = {"id": hit.id, "text": hit.text, "labels": hit.labels, "score": round(hit.score, 4)}
    if hit.passage is not None:
        start, end, score = hit.passage
        record["passage"] = {"start": start, "end": end, "text": hit.text[start:end], "score": round(score, 4)}
    return record


@main.command(name="export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--format",
    "format_",
    required=True,
    type=click.Choice(["sentence-transformers", "onnx"]),
    help="sentence-transformers: a folder SentenceTransformer(DIR) loads; onnx: an ONNX graph + tokenizer.",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write (new or empty)."
)
@click.option("--quantize", type=click.Choice(["int8"]), default=None, help="onnx: quantize the weights to int8.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in --out.")
@click.option("--quiet", "-q", is_flag=True)
@_fail_cleanly
def export_model(run_dir: str, format_: str, out_dir: str, quantize: str | None, overwrite: bool, quiet: bool) -> None:
    """Export the model in RUN_DIR for sentence-transformers or ONNX Runtime.

    OUT holds the encoder in that format, the prediction stage beside it and a model card,
    so `labelcon predict OUT` and Labelcon.load(OUT) still predict (onnx: through ONNX Runtime).

    \b
    Examples:
      labelcon export runs/a --format sentence-transformers --out exports/a-st
      labelcon export runs/a --format onnx --quantize int8 --out exports/a-onnx
    """
    from labelcon.export import export

    out = export(run_dir, out_dir, format_, quantize=quantize, overwrite=overwrite)
    if not quiet:
        click.echo(f"exported {run_dir} to {format_}{' (int8)' if quantize else ''}: {out}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes sharing the port, each with its own copy of the model.",
)
@settings_options(ServeSettings)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="uvicorn's log level (info logs every request).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    help="File of API keys, one per line: every route but GET /health then needs "
    "'Authorization: Bearer <key>' ($LABELCON_API_KEY adds one key).",
)
@_fail_cleanly
def serve(
    run_dir: str, host: str, port: int, workers: int, log_level: str, api_key_file: str | None, **limits: Any
) -> None:
    """Serve the model in RUN_DIR over HTTP until SIGTERM or Ctrl-C (which finish the requests in flight).

    \b
    Routes: GET /health, GET /info, POST /predict, POST /search (once `labelcon index` gave
    the run a corpus), POST /v1/embeddings (OpenAI's format), GET /metrics (Prometheus);
    the API is described at /docs.
    \b
    API keys: with $LABELCON_API_KEY set or --api-key-file, every route but GET /health
    answers 401 without 'Authorization: Bearer <key>'. Without a key, a --host other than a
    loopback address is warned about: anyone who reaches it can use the server.
    \b
    New model versions: when the run directory publishes a newer model (a retrain, a
    resumed run, --overwrite), the server loads it beside the old one and switches to it
    between requests (checked every --reload-seconds); a version that does not load is
    refused with a log line and the old one keeps serving. Answers name their version in
    the X-Labelcon-Model-Version header, /health in its body.
    \b
    Examples:
      labelcon serve runs/a
      curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"inputs": ["love it"]}'
      LABELCON_API_KEY=$(openssl rand -hex 24) labelcon serve runs/a --host 0.0.0.0 --port 8080 --workers 4
    """
    try:
        from labelcon.serve import run
    except ImportError as exc:
        raise click.ClickException(f"serving needs the serve extra ({exc}): pip install 'labelcon[serve]'") from None
    try:
        settings = ServeSettings(**{name: value for name, value in limits.items() if value is not None})
    except ValidationError as exc:
        raise click.UsageError(
            "; ".join(f"--{str(err['loc'][0]).replace('_', '-')}: {refusal(err)}" for err in exc.errors())
        ) from None
    run(run_dir, settings, host=host, port=port, workers=workers, log_level=log_level, api_key_file=api_key_file)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Where to write the page [RUN/report.html]; needed for "
    "several runs. The Markdown summary goes beside it (.md).",
)
@click.option("--label", "labels", multiple=True, help="A label whose scores to draw (repeatable) [the worst labels].")
@click.option(
    "--test",
    "test_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled file for the label figures [the run's test items, predictions_test.jsonl].",
)
@_fail_cleanly
def report(run_dirs: tuple[str, ...], out: str | None, labels: tuple[str, ...], test_path: str | None) -> None:
    """Write a run's report (report.html with figures, report.md), or put several runs side by side.

    \b
    Examples:
      labelcon report runs/a                              # rebuild runs/a/report.html and report.md
      labelcon report runs/a --label refund --label urgent
      labelcon report runs/a runs/b --out compare.html    # side by side; per-label changes on the same test items
    """
    from labelcon.report import write_comparison, write_report

    if len(run_dirs) > 1 and not out:
        raise click.UsageError("give --out FILE.html to put several runs side by side")
    if len(run_dirs) > 1 and (labels or test_path):
        raise click.UsageError("--label and --test apply to the report of one run")
    from labelcon.estimator import Labelcon

    models = [Labelcon.load(run_dir) for run_dir in run_dirs]
    if len(run_dirs) == 1:
        paths = write_report(run_dirs[0], models[0], out, labels=labels, test=test_path)
    else:
        paths = write_comparison(run_dirs, models, out)
    click.echo(f"wrote {paths[0]} and {paths[1]}")


@main.command()
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Keep the run directory here (default: a temporary one)."
)
@click.option("--encoder", help="Encoder to use (default: minilm when installed, else static).")
@click.option("--quiet", "-q", is_flag=True)
@_fail_cleanly
def demo(out_dir: str | None, encoder: str | None, quiet: bool) -> None:
    """Train, evaluate and predict on the built-in multi-label data set (offline, about 1 minute on 2 CPU cores).

    \b
    Examples:
      labelcon demo
      labelcon demo --encoder static --out runs/demo
    """
    from labelcon.demo import run_demo

    if out_dir:
        _check_parent(out_dir, "--out")
    run_demo(Path(out_dir) if out_dir else None, encoder=encoder, quiet=quiet)


if __name__ == "__main__":
    main()
