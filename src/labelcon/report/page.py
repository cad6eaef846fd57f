"""One run's report: the HTML page (``report.html``) and its Markdown summary (``report.md``)."""

from __future__ import annotations

import json
from html import escape

import numpy as np

from labelcon.embedding_metrics import EMBEDDING_METRICS
from labelcon.heads.decisions import MARGIN
from labelcon.report import figures
from labelcon.report.facts import RARE_ITEMS, LabelFigures, RunFacts, label_sets_matrix
from labelcon.report.markup import Raw, cards, figure, md_table, notes, page, table
from labelcon.report.summary import (
    HEADLINE,
    Example,
    changed_settings,
    choices,
    data_statistics,
    dev_epochs,
    examples,
    loss_points,
    machine,
    time_phases,
)

#: Worst labels in the error table, and labels in the score distributions (at most).
WORST, DISTRIBUTIONS = 10, 6
#: Labels in the co-occurrence matrix.
COOCCURRING = 15
#: Every label in the per-label table up to this many, else the worst and the best half as many.
TABLE_LABELS = 200
SECTIONS = (
    ("summary", "Summary"),
    ("training", "Training"),
    ("labels", "Labels"),
    ("decisions", "Decisions"),
    ("space", "Embedding space"),
    ("errors", "Worst labels"),
    ("run", "Run"),
)
CAPTIONS = {
    "loss": "Training loss (the mean over a window of steps) against the step and against the seconds of training.",
    "dev": "Dev metrics after each checked epoch: the trainer's kNN check at a 0.5 threshold, not the final head, "
    "and the Spearman of dev pairs and nDCG@10 of dev retrieval when the run had them; the run keeps the best epoch.",
    "time": "Where the time went: training steps, the per-epoch dev checks, then embedding train and dev and "
    "fitting the prediction stage.",
    "choices": "The choices made on dev: every candidate's dev figure, the one picked in red; decision rules "
    "are cross-fitted on dev where its scores are small enough, else the stage keeps per-label thresholds "
    f"unless another rule leads by {MARGIN:g}.",
}


def render_html(facts: RunFacts, picked: list[str] | None = None) -> str:
    """The report page; ``picked``: labels whose score distributions to show (default the worst)."""
    parts = {
        "summary": _summary(facts),
        "training": _training(facts),
        "labels": _labels(facts),
        "decisions": _decisions(facts, picked or []),
        "space": _space(facts),
        "errors": _errors(facts),
        "run": _run(facts),
    }
    return page(
        f"labelcon run report: {facts.name}",
        [_header_line(facts)],
        [(key, heading, parts[key]) for key, heading in SECTIONS],
    )


def _header_line(facts: RunFacts) -> str:
    cfg = facts.config
    return (
        f"{facts.path} · {facts.state.get('status', 'saved model')} · encoder {cfg.get('encoder')} · "
        f"objective {facts.objective} · head {cfg.get('head')} · {len(facts.history)} epochs"
    )


def _grid(blocks: list[str], empty: str) -> str:
    return f'<div class="grid">{"".join(blocks)}</div>' if blocks else f"<p>{empty}</p>"


def _summary(facts: RunFacts) -> str:
    split = "test" if "test" in facts.metrics else "dev"
    values = facts.metrics.get(split, {})
    shown = cards([(f"{split} {name}", f"{values[name]:.3f}") for name in HEADLINE if name in values])
    embedding = [
        (f"{part} {label}", f"{facts.metrics[part][name]:.3f}")
        for part in ("dev", "test")
        for name, label in EMBEDDING_METRICS.items()
        if name in facts.metrics.get(part, {})
    ]
    if embedding:
        shown += cards(embedding)
    if facts.stage is not None:
        shown += f"<p>Chosen on dev: {escape('; '.join(c.describe() for c in choices(facts.stage)))}.</p>"
    return shown + notes(facts.notes)


def _training(facts: RunFacts) -> str:
    points, epochs, phases = loss_points(facts.history), dev_epochs(facts.history), time_phases(facts)
    blocks = [figure(figures.loss(points), CAPTIONS["loss"], "loss")] if len(points) else []
    if epochs:
        blocks.append(figure(figures.dev_curves(epochs), CAPTIONS["dev"], "dev"))
    if phases:
        blocks.append(figure(figures.time_bars(phases), CAPTIONS["time"], "time"))
    return _grid(blocks, "No training history in this run.")


def _labels(facts: RunFacts) -> str:
    labels, evaluation = facts.labels, facts.evaluation
    if labels is None:
        return "<p>No label figures (see the notes in the summary).</p>"
    split, shown = evaluation.split, len(figures.shown_labels(labels))
    against = "the label's training items" if labels.train is not None else f"its {split} items"
    caption = (
        f"Per-label {split} F1 and AP against {against} (log scale): hover a point for its label. Rare: "
        f"fewer than {RARE_ITEMS} training items; zero-shot: none (drawn at 0.5)."
    )
    if shown < len(labels.names):
        caption += f" {shown} of {len(labels.names)} labels: the worst and the most frequent."
    held = np.flatnonzero(labels.support > 0)  # F1 and AP need items holding the label
    order = held[np.argsort(labels.f1[held], kind="stable")]
    half = TABLE_LABELS // 2
    rows = order if len(order) <= TABLE_LABELS else np.r_[order[:half], order[-half:]]
    heading = f"every label with {split} items" if len(rows) == len(order) else f"the {half} worst and best labels"
    headers = ["label", "training items", f"{split} items", "predicted", "F1", "AP", "threshold"]
    return (
        figure(figures.per_label(labels, split), caption, "labels")
        + f'<details><summary>Table of {heading}, worst F1 first</summary><div class="scroll">'
        + table(headers, [_label_row(labels, int(c)) for c in rows])
        + "</div></details>"
    )


def _label_row(labels: LabelFigures, c: int) -> list:
    threshold = f"{labels.threshold[c]:.3f} ({'own' if labels.own[c] else 'fallback'})"
    return [
        labels.names[c],
        _train_count(labels, c),
        int(labels.support[c]),
        int(labels.predicted[c]),
        float(labels.f1[c]),
        float(labels.ap[c]),
        threshold,
    ]


def _train_count(labels: LabelFigures, c: int) -> int | str:
    return int(labels.train[c]) if labels.train is not None else "–"


def _decisions(facts: RunFacts, picked: list[str]) -> str:
    if facts.stage is None:
        return "<p>This run predicts no labels.</p>"
    made = choices(facts.stage)
    blocks = [figure(figures.dev_choices(made), CAPTIONS["choices"], "choices")] if any(c.figures for c in made) else []
    labels, evaluation = facts.labels, facts.evaluation
    if labels is not None:
        blocks.append(
            figure(
                figures.precision_recall(evaluation),
                f"Micro precision-recall on {evaluation.split} as "
                "one threshold for every label sweeps, and where the stage's decisions sit.",
                "pr",
            )
        )
        columns = [labels.names.index(name) for name in picked] or labels.worst(DISTRIBUTIONS)
        rule = facts.stage.thresholds
        uses = rule.rank_cap is None or bool(rule.thresholds.any())  # a top-k rule has no thresholds
        caption = (
            f"Scores of {evaluation.split} positives and negatives (each a density) of "
            f"{'the labels asked for' if picked else 'the worst labels'}"
            + (", with the label's threshold." if uses else "; the rule is top-k: no thresholds.")
        )
        if columns:
            blocks.append(figure(figures.score_distributions(labels, evaluation, columns[:9], uses), caption, "scores"))
    return "<ul>" + "".join(f"<li>{escape(c.describe())}</li>" for c in made) + "</ul>" + _grid(blocks, "")


def _space(facts: RunFacts) -> str:
    labels, evaluation, blocks = facts.labels, facts.evaluation, []
    if labels is not None and len(evaluation.texts) > 2:
        blocks.append(
            figure(
                figures.embedding_map(evaluation, labels.names),
                f"The {evaluation.split} items' "
                "embeddings in two dimensions (PCA), coloured by their most frequent label.",
                "map",
            )
        )
    if labels is not None and len(labels.names) > 1:
        counts = labels.train if labels.train is not None else labels.support
        top = np.argsort(-counts, kind="stable")[:COOCCURRING]
        names = [labels.names[c] for c in top]
        matrix = label_sets_matrix(facts.train, names) if facts.train is not None else evaluation.y[:, top]
        where = "training" if facts.train is not None else evaluation.split
        caption = (
            f"Co-occurrence of the {len(top)} most frequent labels in the {where} data: item counts; colour: "
            "the share of the row label's items that hold the column label."
        )
        blocks.append(figure(figures.cooccurrence(names, matrix), caption, "cooccurrence"))
    return _grid(blocks, "No label data to draw.")


def _errors(facts: RunFacts) -> str:
    labels, evaluation = facts.labels, facts.evaluation
    if labels is None:
        return "<p>No label figures.</p>"
    rows = []
    for c in labels.worst(WORST):
        missed, alarms = examples(evaluation, labels.names, c)
        rows.append(
            [
                labels.names[c],
                _train_count(labels, c),
                int(labels.support[c]),
                float(labels.f1[c]),
                float(labels.ap[c]),
                Raw(_examples(missed, "missed")),
                Raw(_examples(alarms, "false alarm")),
            ]
        )
    headers = [
        "label",
        "training items",
        f"{evaluation.split} items",
        "F1",
        "AP",
        "missed (gold, not predicted)",
        "false alarms (predicted, not gold)",
    ]
    return table(headers, rows)


def _examples(items: list[Example], kind: str) -> str:
    return (
        "".join(
            f'<div class="example">“{escape(e.text[:200])}”<br><small>{kind} at score {e.score:.2f}; gold: '
            f"{escape(', '.join(e.gold) or 'none')}; predicted: {escape(', '.join(e.predicted) or 'none')}"
            "</small></div>"
            for e in items
        )
        or "–"
    )


def _run(facts: RunFacts) -> str:
    changed = changed_settings(facts.config)
    rows = {
        part: [[k, json.dumps(facts.config[k])] for k in sorted(facts.config) if (k in changed) == part]
        for part in (True, False)
    }
    settings = (
        table(["changed from labelcon's defaults", "value"], rows[True])
        + f"<details><summary>The other {len(rows[False])} settings, at their defaults</summary>"
        + table(["setting", "value"], rows[False])
        + "</details>"
    )
    names = sorted({name for values in facts.metrics.values() for name, v in values.items() if isinstance(v, float)})
    metrics = table(
        ["metric", *facts.metrics], [[n, *(m.get(n, float("nan")) for m in facts.metrics.values())] for n in names]
    )
    return (
        (f"<h3>Metrics</h3>{metrics}" if names else "")
        + f"<h3>Data</h3>{table(['', ''], data_statistics(facts))}"
        + f"<h3>Settings</h3>{settings}"
        + f"<h3>Machine and libraries (where this report was built)</h3>{table(['', ''], machine())}"
    )


def render_markdown(facts: RunFacts, html_name: str = "report.html") -> str:
    """A short summary for terminals and pull requests, pointing at the page ``html_name``."""
    lines = [f"# labelcon run report: {facts.name}", "", _header_line(facts), ""]
    if facts.metrics:
        names = [*HEADLINE, *(n for n in EMBEDDING_METRICS if any(n in m for m in facts.metrics.values()))]
        rows = [[n, *(m.get(n, float("nan")) for m in facts.metrics.values())] for n in names]
        lines += ["## Metrics", "", md_table(["metric", *facts.metrics], rows)]
    if facts.stage is not None:
        lines += ["## Chosen on dev", "", *(f"- {c.describe()}" for c in choices(facts.stage)), ""]
    phases = time_phases(facts)
    total = sum(s for _, s in phases) or 1.0
    rows = [[name, f"{s:.1f}", f"{100 * s / total:.0f}%"] for name, s in phases]
    lines += ["## Where the time went", "", md_table(["phase", "seconds", "share"], rows)]
    labels, evaluation = facts.labels, facts.evaluation
    if labels is not None:
        rows = [
            [labels.names[c], _train_count(labels, c), int(labels.support[c]), float(labels.f1[c]), float(labels.ap[c])]
            for c in labels.worst(WORST)
        ]
        headers = ["label", "training items", f"{evaluation.split} items", "F1", "AP"]
        lines += [f"## Worst labels on {evaluation.split}", "", md_table(headers, rows)]
    lines += ["## Data", "", *(f"- {k}: {v}" for k, v in data_statistics(facts)), ""]
    lines += [*(f"Note: {n}" for n in facts.notes), *([""] if facts.notes else [])]
    lines.append(f"Figures, per-label tables and example errors: {html_name}")
    return "\n".join(lines) + "\n"
