"""What a training run leaves beside its model, the same for ``labelcon train`` and
``Labelcon.fit(out_dir=...)``: the test metrics in ``metrics.json``, ``predictions_test.jsonl``
(each test item with its gold labels, the labels predicted and the top scores), the model
card with the test metrics, and the report (``report.html``, ``report.md``).

A report that fails does not fail the run: it is a :class:`ReportWarning` (the command line
prints it as one ``warning:`` line) and the run stays as it is.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import labelcon.report as report
from labelcon.card import write_card
from labelcon.data import Dataset
from labelcon.io import atomic_open, write_json
from labelcon.modeldir import locked
from labelcon.report.facts import PREDICTIONS_FILE

#: How many of each test item's best labels ``predictions_test.jsonl`` keeps.
TOP_K = 5


class ReportWarning(UserWarning):
    """A run's report that was not written; the run itself is complete."""


def rounded_scores(top: list[tuple[str, float]]) -> dict[str, float]:
    """Top-k scores as a JSON object, best first, to 4 decimals."""
    return {name: round(score, 4) for name, score in top}


def write_predictions(model: Any, dataset: Dataset, path: Path, top_k: int = TOP_K) -> None:
    """``dataset``'s items with their gold labels, the labels ``model`` predicts and its
    ``top_k`` best labels' scores (to 4 decimals, best first), one JSON object a line."""
    label_sets, ranked = model.predict_with_top_k(dataset.texts, top_k)
    with atomic_open(path) as handle:
        for text, gold, chosen, top in zip(dataset.texts, dataset.labels, label_sets, ranked, strict=True):
            record = {"text": text, "labels": list(gold), "predicted": chosen, "scores": rounded_scores(top)}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_run_outputs(model: Any, out_dir: Path, test: Dataset | None) -> None:
    """Evaluate the fitted ``model`` (saved in ``out_dir``) on ``test`` and write the run's
    outputs there; without ``test`` (or labels) only the report."""
    if test is not None and model.stage_ is not None:
        with locked(out_dir):
            model.metrics_["test"] = model.evaluate(test)
            write_predictions(model, test, out_dir / PREDICTIONS_FILE)
            write_json(out_dir / "metrics.json", model.metrics_)
            write_card(out_dir, model, run_dir=out_dir)
    try:
        report.write_report(out_dir, model)
    except Exception as error:  # noqa: BLE001 -- a report must never fail a trained run
        reason = str(error).splitlines()[0] if str(error) else ""
        warnings.warn(
            ReportWarning(
                f"the run is kept, but its report was not written ({type(error).__name__}: "
                f"{reason}); try `labelcon report {out_dir}`"
            ),
            stacklevel=2,
        )
