"""``labelcon demo``: the main job end to end on the data set that ships with labelcon."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from labelcon.data import demo_paths, read_dataset
from labelcon.metrics import HEADLINE_METRICS

EXAMPLES = [
    "I was charged twice for my subscription this month, please refund one of them",
    "The app crashes every time I try to reset my password",
    "Thanks, the new export button is exactly what we needed!",
]


def default_encoder() -> str:
    """MiniLM when its offline package is installed, else the static encoder."""
    return "minilm" if importlib.util.find_spec("all_minilm_l6_v2") else "static"


def run_demo(out_dir: Path | None = None, *, encoder: str | None = None, quiet: bool = False) -> dict:
    """Train on the built-in train split, calibrate on dev, evaluate on test, predict examples.
    The run goes to ``out_dir``, with its report (report.html, report.md) on the test split;
    without one, to a temporary directory removed at the end."""
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="labelcon-demo-") as tmp:
            return _run(Path(tmp), "a temporary run directory (keep it with --out DIR)", encoder, quiet, kept=False)
    return _run(out_dir, f"run directory {out_dir}", encoder, quiet, kept=True)


def _run(out_dir: Path, where: str, encoder: str | None, quiet: bool, kept: bool) -> dict:
    from labelcon.estimator import Labelcon

    console = Console(quiet=quiet)
    paths = demo_paths()
    encoder = encoder or default_encoder()
    train = read_dataset(paths["train"])
    console.print(f"[bold]labelcon demo[/bold]: {len(train)} training texts, encoder [cyan]{encoder}[/cyan], {where}")
    started = time.monotonic()
    settings = {"epochs": 4 if encoder != "static" else 20, "batch_size": 32, "min_steps": 0}
    model = Labelcon(encoder=encoder, labels_file=str(paths["labels"]), **settings)
    model.fit(paths["train"], paths["dev"], test=paths["test"], out_dir=out_dir, show_progress=not quiet)

    table = Table(title=f"test metrics ({time.monotonic() - started:.0f} s)")
    shown = list(HEADLINE_METRICS)[:5]
    for name in shown:
        table.add_column(name, justify="right")
    table.add_row(*(f"{model.metrics_['test'][n]:.3f}" for n in shown))
    console.print(table)

    predictions = Table(title="predictions")
    predictions.add_column("text")
    predictions.add_column("labels")
    predictions.add_column("top scores")
    for text, labels, top in zip(EXAMPLES, model.predict(EXAMPLES), model.top_k(EXAMPLES, 3)):
        predictions.add_row(text, ", ".join(labels), ", ".join(f"{name} {score:.2f}" for name, score in top))
    console.print(predictions)
    if kept:
        console.print(f"report: {out_dir / 'report.html'}")
    return model.metrics_
