"""Runs side by side: headline metrics with their change from the first run, the settings
that differ, training curves and time on shared axes, and, when the runs were tested on
the same items, each label's F1 and AP change."""

from __future__ import annotations

import json

import numpy as np

from labelcon.report.facts import RunFacts
from labelcon.report.figures import GREY, canvas, to_svg
from labelcon.report.markup import figure, md_table, notes, page, table
from labelcon.report.summary import HEADLINE, choices, dev_epochs, loss_points, time_phases

#: Labels in each of the tables of the biggest losses and gains.
CHANGED_LABELS = 15


def render_comparison(runs: list[RunFacts]) -> tuple[str, str]:
    """The comparison page (HTML) and its Markdown summary; the first run is the baseline."""
    names = _names(runs)
    split = "test" if all("test" in r.metrics for r in runs) else "dev"
    metric_rows = [[names[i], *_metric_cells(r, runs[0], split)] for i, r in enumerate(runs)]
    metric_headers = ["run", *(f"{split} {m}" for m in HEADLINE), "chosen on dev"]
    same, why = _same_items(runs)
    deltas = _label_deltas(runs, names) if same else None
    lines = [f"{len(runs)} runs; changes against {names[0]}", why]
    sections = [("summary", "Summary", table(metric_headers, metric_rows) + notes([why]))]
    sections.append(("settings", "Settings that differ", _settings(runs, names)))
    sections.append(("training", "Training", _training(runs, names)))
    if deltas is not None:
        sections.append(("labels", "Per-label changes", deltas[0]))
    sections.append(
        ("notes", "Notes", notes([f"{names[i]}: {n}" for i, r in enumerate(runs) for n in r.notes]) or "<p>None.</p>")
    )
    html = page(f"labelcon comparison: {' vs '.join(names)}", lines, sections)
    markdown = [f"# labelcon comparison: {' vs '.join(names)}", "", why, "", md_table(metric_headers, metric_rows)]
    if deltas is not None:
        markdown += [deltas[1]]
    return html, "\n".join(markdown) + "\n"


def _names(runs: list[RunFacts]) -> list[str]:
    """Each run's directory name, or its path where names repeat."""
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r.path) for r in runs]


def _metric_cells(run: RunFacts, base: RunFacts, split: str) -> list[str]:
    cells = []
    for metric in HEADLINE:
        value, before = run.metrics.get(split, {}).get(metric), base.metrics.get(split, {}).get(metric)
        if value is None:
            cells.append("–")
        else:
            change = f" ({value - before:+.3f})" if before is not None and run is not base else ""
            cells.append(f"{value:.3f}{change}")
    picked = [f"{c.title}: {c.picked}" for c in choices(run.stage) if c.picked] if run.stage is not None else []
    return [*cells, "; ".join(picked)]


def _same_items(runs: list[RunFacts]) -> tuple[bool, str]:
    evaluations = [r.evaluation for r in runs]
    if any(e is None for e in evaluations):
        return False, "Some runs have no label figures: no per-label changes."
    if len({(e.split, e.sha256) for e in evaluations}) > 1:
        return False, "The runs were evaluated on different items: no per-label changes."
    return True, f"All runs were evaluated on the same {evaluations[0].total} {evaluations[0].split} items."


def _settings(runs: list[RunFacts], names: list[str]) -> str:
    keys = sorted({k for r in runs for k in r.config})
    differ = [k for k in keys if len({json.dumps(r.config.get(k)) for r in runs}) > 1]
    if not differ:
        return "<p>The runs have the same settings.</p>"
    return table(["setting", *names], [[k, *(json.dumps(r.config.get(k)) for r in runs)] for k in differ])


def _training(runs: list[RunFacts], names: list[str]) -> str:
    blocks = []
    with canvas("compare-loss", 8, 2.8, ncols=2) as (fig, axes):
        for name, run in zip(names, runs):
            points = loss_points(run.history)
            for ax, column in zip(axes, (0, 1)):
                ax.plot(points[:, column], points[:, 2], label=name)
        axes[0].set(xlabel="step", ylabel="training loss")
        axes[1].set(xlabel="seconds of training")
        axes[1].legend()
        blocks.append(figure(to_svg(fig, "compare-loss"), "Training loss against step and time.", "compare-loss"))
    epochs = [dev_epochs(r.history) for r in runs]
    if any(epochs):
        with canvas("compare-dev", 5, 2.8) as (fig, ax):
            for name, checked in zip(names, epochs):
                ax.plot(
                    [e["epoch"] for e in checked], [e.get("macro_ap") for e in checked], marker="o", ms=3, label=name
                )
            ax.set(xlabel="epoch", ylabel="dev macro-AP (kNN check)")
            ax.legend()
            blocks.append(figure(to_svg(fig, "compare-dev"), "Dev macro-AP of the per-epoch check.", "compare-dev"))
    blocks.append(figure(_time_figure(runs, names), "Seconds per phase of each run.", "compare-time"))
    return f'<div class="grid">{"".join(blocks)}</div>'


def _time_figure(runs: list[RunFacts], names: list[str]) -> str:
    phases = [dict(time_phases(r)) for r in runs]
    order = list(dict.fromkeys(name for p in phases for name in p))
    with canvas("compare-time", 6, 0.9 + 0.4 * len(runs)) as (fig, ax):
        left = np.zeros(len(runs))
        for i, phase in enumerate(order):
            widths = np.array([p.get(phase, 0.0) for p in phases])
            ax.barh(names[::-1], widths[::-1], left=left[::-1], color=f"C{i}", label=phase)
            left += widths
        ax.set_xlabel("seconds")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncols=3)
        return to_svg(fig, "compare-time")


def _label_deltas(runs: list[RunFacts], names: list[str]) -> tuple[str, str]:
    """The per-label section (HTML) and its Markdown: each run's F1 against the first run's
    per label, and the labels whose F1 changed most."""
    base = runs[0].labels
    shared = [n for n in base.names if all(n in r.labels.names for r in runs[1:])]
    at = [{n: i for i, n in enumerate(r.labels.names)} for r in runs]
    f1 = np.array([[r.labels.f1[at[k][n]] for n in shared] for k, r in enumerate(runs)])
    ap = np.array([[r.labels.ap[at[k][n]] for n in shared] for k, r in enumerate(runs)])
    titles = {}
    with canvas("compare-labels", 4.5, 4) as (fig, ax):
        ax.plot([0, 1], [0, 1], color=GREY, ls=":")
        for k in range(1, len(runs)):
            for j, name in enumerate(shared):
                if not np.isnan(f1[0, j]):
                    ax.scatter([f1[0, j]], [f1[k, j]], s=18, color=f"C{k - 1}", alpha=0.8).set_gid(f"label-{k}-{j}")
                    titles[f"label-{k}-{j}"] = f"{name}: F1 {f1[0, j]:.2f} in {names[0]}, {f1[k, j]:.2f} in {names[k]}"
            ax.scatter([], [], color=f"C{k - 1}", label=names[k])
        ax.set(xlabel=f"F1 in {names[0]}", ylabel="F1 in the other run", xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
        ax.legend(loc="lower right")
        svg = to_svg(fig, "compare-labels", titles)
    change = np.nan_to_num(f1[-1] - f1[0])
    order = np.argsort(change, kind="stable")
    picked = [*order[:CHANGED_LABELS], *order[::-1][:CHANGED_LABELS]]
    picked = list(dict.fromkeys(int(j) for j in picked if change[j] != 0))
    headers = ["label", *(f"F1 {n}" for n in names), *(f"AP {n}" for n in names), f"F1 change ({names[-1]})"]
    rows = [[shared[j], *map(float, f1[:, j]), *map(float, ap[:, j]), float(change[j])] for j in picked]
    caption = (
        f"Each label's F1 in the other runs (y) against {names[0]} (x); above the diagonal: better. Hover a point."
    )
    html = (
        figure(svg, caption, "compare-labels") + f"<h3>Labels whose F1 changed most ({names[-1]} against "
        f"{names[0]})</h3>" + (table(headers, rows) if rows else "<p>No label's F1 changed.</p>")
    )
    return html, f"## Per-label F1 changes ({names[-1]} against {names[0]})\n\n" + md_table(headers, rows)
