"""The run report: one self-contained HTML page with figures, and a Markdown summary.

``labelcon train`` writes ``RUN/report.html`` and ``RUN/report.md`` at the end of a run;
``labelcon report RUN`` builds them again, ``labelcon report A B --out compare.html``
puts runs side by side. The report is a thin layer over a run directory and its
prediction stage (:mod:`labelcon.report.facts`); the page opens from disk with no
network: figures are inline SVG drawn with matplotlib, and it holds no script or URL.

>>> from labelcon.report import write_report        # doctest: +SKIP
>>> write_report("runs/a", Labelcon.load("runs/a"))  # doctest: +SKIP
[PosixPath('runs/a/report.html'), PosixPath('runs/a/report.md')]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from labelcon.io import atomic_open
from labelcon.modeldir import locked
from labelcon.report.facts import ReportError, RunFacts, gather

__all__ = ["ReportError", "RunFacts", "gather", "write_comparison", "write_report"]

HTML_FILE, MARKDOWN_FILE = "report.html", "report.md"


def write_report(
    run_dir: str | os.PathLike,
    model: Any,
    out: str | os.PathLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    test: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the report of the run in ``run_dir``, whose model is ``model``, to ``out``
    (default ``run_dir/report.html``) and its Markdown summary beside it (``.md``); returns
    both paths. ``labels``: the labels
    whose score distributions to show (default: the worst); ``test``: a labelled file for
    the label figures (default: the run's test items, ``predictions_test.jsonl``)."""
    from labelcon.report.page import render_html, render_markdown

    facts = gather(run_dir, model, test=test)
    known = facts.stage.labels.names if facts.stage is not None else ()
    unknown = [name for name in labels or [] if name not in known]
    if unknown:
        raise ReportError(f"{unknown[0]!r} is not a label of {run_dir}; its labels: {', '.join(known[:20]) or 'none'}")
    html_path = Path(out) if out is not None else Path(run_dir) / HTML_FILE
    paths = [html_path, html_path.with_suffix(".md")]
    texts = [render_html(facts, list(labels or [])), render_markdown(facts, html_path.name)]
    with locked(run_dir) if out is None else nullcontext():
        for path, text in zip(paths, texts, strict=True):
            with atomic_open(path) as handle:
                handle.write(text)
    return paths


def write_comparison(
    run_dirs: Sequence[str | os.PathLike], models: Sequence[Any], out: str | os.PathLike
) -> list[Path]:
    """Write the runs of ``run_dirs`` (with their ``models``) side by side to ``out`` (HTML)
    and a Markdown summary beside it; per-label deltas when they were tested on the same items."""
    from labelcon.report.compare import render_comparison

    if len(run_dirs) < 2:
        raise ReportError(f"a comparison needs at least 2 runs, got {len(run_dirs)}")
    html, markdown = render_comparison([gather(run, model) for run, model in zip(run_dirs, models, strict=True)])
    paths = [Path(out), Path(out).with_suffix(".md")]
    for path, text in zip(paths, (html, markdown), strict=True):
        with atomic_open(path) as handle:
            handle.write(text)
    return paths
