"""The report's figures: matplotlib drawings returned as inline SVG text.

Each function draws one figure from plain numbers (the run's facts) and returns the
``<svg>`` element, ready to sit in an HTML page: no XML prologue, no metadata, no
namespace declarations (HTML parses inline SVG without them), so the page holds no
URL at all; text stays text (``svg.fonttype: none``), so label names can be searched;
every element id carries the figure's name, so several figures share one page.
Points of per-label plots are groups with a ``<title>``: hovering one names its label.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from html import escape
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from labelcon.report.facts import Evaluation, LabelFigures, ReportError
from labelcon.report.summary import EPOCH_METRICS, Choice, kept_by

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Labels drawn one by one (with their names) in per-label plots, at most.
MAX_NAMED = 300
BLUE, ORANGE, RED, GREY, GREEN = "#1f6fb4", "#e8830c", "#c62828", "#9e9e9e", "#2e7d32"
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "svg.fonttype": "none",
}


def _require_matplotlib() -> None:
    """matplotlib is an optional dependency (the ``report`` extra): say how to get it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError("the report draws its figures with matplotlib: pip install 'labelcon[report]'") from None


@contextmanager
def canvas(name: str, width: float, height: float, **subplots: object) -> Iterator[tuple]:
    """A figure and its axes (``Figure.subplots(**subplots)``) under the report's style;
    the caller turns it into SVG with :func:`to_svg` inside the block."""
    _require_matplotlib()
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({**STYLE, "svg.hashsalt": name}):
        fig = Figure(figsize=(width, height), layout="constrained")
        yield fig, fig.subplots(**subplots)


def to_svg(fig: Figure, name: str, titles: dict[str, str] | None = None) -> str:
    """``fig`` as an inline ``<svg>``; ``titles``: hover text for the artists of those gids."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    for gid, title in (titles or {}).items():
        text = text.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{escape(title)}</title>', 1)
    text = re.sub(r'(\bid="|href="#|url\(#)', rf"\1{name}-", text)
    # as wide as the page allows, up to the drawn width; the height follows the viewBox
    return re.sub(
        r'<svg width="([^"]*)" height="[^"]*"',
        rf'<svg style="max-width: \1" role="img" aria-label="{name}"',
        text,
        count=1,
    )


def loss(points: np.ndarray) -> str:
    """Training loss against step and against time (``[step, seconds, loss]`` rows)."""
    with canvas("loss", 6.2, 2.6, ncols=2) as (fig, axes):
        for ax, column, label in zip(axes, (0, 1), ("step", "seconds of training")):
            ax.plot(points[:, column], points[:, 2], color=BLUE, marker="o" if len(points) < 20 else None, ms=3)
            ax.set_xlabel(label)
        axes[0].set_ylabel("training loss")
        axes[0].xaxis.get_major_locator().set_params(integer=True)
        return to_svg(fig, "loss")


def dev_curves(epochs: list[dict]) -> str:
    """Dev metrics per checked epoch (those the run checked); a dotted line at the epoch the run kept."""
    select = kept_by(epochs)
    with canvas("dev", 5.2, 2.8) as (fig, ax):
        x = [e["epoch"] for e in epochs]
        for metric in (m for m in EPOCH_METRICS if any(m in e for e in epochs)):
            ax.plot(x, [e.get(metric, np.nan) for e in epochs], marker="o", ms=3, label=metric)
        best = max(epochs, key=lambda e: e.get(select, -np.inf))["epoch"]
        ax.axvline(best, color=GREY, ls=":", label=f"kept (best {select})")
        ax.set(xlabel="epoch", ylabel="dev", ylim=(0, 1.02))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="lower right")
        return to_svg(fig, "dev")


def time_bars(phases: Sequence[tuple[str, float]]) -> str:
    """Seconds per phase, longest first, with its share of the total."""
    phases = sorted(phases, key=lambda p: -p[1])
    total = sum(s for _, s in phases) or 1.0
    with canvas("time", 5.2, 0.6 + 0.3 * len(phases)) as (fig, ax):
        y = np.arange(len(phases))[::-1]
        ax.barh(y, [s for _, s in phases], color=BLUE)
        ax.set_yticks(y, [name for name, _ in phases])
        for yi, (_, s) in zip(y, phases):
            ax.text(s, yi, f" {s:.1f} s ({100 * s / total:.0f}%)", va="center", fontsize=8)
        ax.set_xlim(0, max(s for _, s in phases) * 1.35 or 1)
        ax.set_xlabel("seconds")
        ax.grid(axis="y", visible=False)
        return to_svg(fig, "time")


def shown_labels(labels: LabelFigures) -> list[int]:
    """The labels per-label plots draw: all, or the ``MAX_NAMED`` worst and most frequent."""
    if len(labels.names) <= MAX_NAMED:
        return list(range(len(labels.names)))
    frequent = np.argsort(-(labels.train if labels.train is not None else labels.support), kind="stable")
    return sorted({*labels.worst(MAX_NAMED // 2), *(int(c) for c in frequent[: MAX_NAMED // 2])})


def per_label(labels: LabelFigures, split: str) -> str:
    """F1 and AP of each label against its training items (log scale); rare labels and
    zero-shot labels (drawn at 0.5) marked; hovering a point names the label."""
    from matplotlib.ticker import LogFormatter

    counts = labels.train if labels.train is not None else labels.support
    rare, zero = labels.rare(), labels.zero_shot()
    titles = {}
    with canvas("labels", 9, 3.4, ncols=2, sharex=True) as (fig, axes):
        for ax, values, metric in zip(axes, (labels.f1, labels.ap), ("F1", "AP")):
            for c in shown_labels(labels):
                if np.isnan(values[c]):
                    continue
                style = (
                    dict(color=RED, marker="X")
                    if zero[c]
                    else dict(color=ORANGE, marker="^")
                    if rare[c]
                    else dict(color=BLUE, marker="o")
                )
                ax.scatter([max(counts[c], 0.5)], [values[c]], s=22, alpha=0.8, **style).set_gid(f"{metric}-{c}")
                titles[f"{metric}-{c}"] = (
                    f"{labels.names[c]}: F1 {labels.f1[c]:.2f}, AP {labels.ap[c]:.2f}, "
                    f"{counts[c]} {'training' if labels.train is not None else split} items, "
                    f"{labels.support[c]} {split} items"
                )
            ax.set(xscale="log", ylim=(-0.03, 1.03), ylabel=f"{split} {metric}")
            for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
                axis(LogFormatter(labelOnlyBase=False))  # 30, not 3 x 10^1
            ax.set_xlabel("training items per label" if labels.train is not None else f"{split} items per label")
        for c in labels.worst(4) if len(labels.names) <= 50 else []:  # beyond, names would pile up: hover
            axes[0].annotate(
                labels.names[c],
                (max(counts[c], 0.5), labels.f1[c]),
                fontsize=7,
                xytext=(4, 2),
                textcoords="offset points",
            )
        handles = [axes[0].scatter([], [], s=22, color=BLUE, marker="o", label="label")]
        if rare.any():
            handles.append(axes[0].scatter([], [], s=22, color=ORANGE, marker="^", label="rare"))
        if zero.any():
            handles.append(axes[0].scatter([], [], s=22, color=RED, marker="X", label="zero-shot (at 0.5)"))
        axes[1].legend(handles=handles, loc="lower right")
        return to_svg(fig, "labels", titles)


def score_distributions(labels: LabelFigures, evaluation: Evaluation, columns: list[int], uses_thresholds: bool) -> str:
    """For each label in ``columns``: the scores of its positives and negatives and its threshold."""
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    bins = np.linspace(0, 1, 26)
    with canvas("scores", 6.2, 1.9 * nrows, nrows=nrows, ncols=ncols, squeeze=False) as (fig, axes):
        for ax in axes.ravel()[len(columns) :]:
            ax.set_visible(False)
        for ax, c in zip(axes.ravel(), columns):
            gold = evaluation.y[:, c].toarray().ravel() > 0
            scores = evaluation.scores[:, c]
            ax.hist(scores[~gold], bins=bins, density=True, color=GREY, alpha=0.6, label="negatives")
            ax.hist(scores[gold], bins=bins, density=True, color=GREEN, alpha=0.6, label="positives")
            if uses_thresholds:
                ax.axvline(
                    labels.threshold[c],
                    color=RED if labels.own[c] else ORANGE,
                    ls="--",
                    label="own threshold" if labels.own[c] else "fallback threshold",
                )
            ax.set_title(f"{labels.names[c]} (F1 {labels.f1[c]:.2f}, {labels.support[c]} positives)", fontsize=9)
            ax.set_yticks([])
        axes[0, 0].legend(loc="upper center")
        fig.supxlabel("score", fontsize=9)
        return to_svg(fig, "scores")


def precision_recall(evaluation: Evaluation) -> str:
    """The micro precision-recall curve of the scores and the stage's operating point."""
    from sklearn.metrics import precision_recall_curve

    y = evaluation.y.toarray().ravel() > 0
    precision, recall, _ = precision_recall_curve(y, evaluation.scores.ravel())
    keep = np.unique(np.linspace(0, len(recall) - 1, 600).astype(int))
    decided = evaluation.decisions.ravel()
    p = (y & decided).sum() / max(decided.sum(), 1)
    r = (y & decided).sum() / max(y.sum(), 1)
    with canvas("pr", 4.6, 3.4) as (fig, ax):
        ax.plot(recall[keep], precision[keep], color=BLUE, label="one threshold for all labels")
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        ax.plot([r], [p], "*", color=RED, ms=12, label=f"operating point: P {p:.2f}, R {r:.2f}, F1 {f1:.2f}")
        ax.set(xlabel="micro recall", ylabel="micro precision", xlim=(0, 1.02), ylim=(0, 1.02))
        ax.legend(loc="lower left")
        return to_svg(fig, "pr")


def dev_choices(choices: list[Choice]) -> str:
    """Each choice's candidates by dev figure, the picked one highlighted."""
    shown = [c for c in choices if c.figures]
    with canvas(
        "choices",
        6.2,
        0.8 + 0.2 * sum(len(c.figures) + 2 for c in shown),
        nrows=len(shown),
        squeeze=False,
        gridspec_kw={"height_ratios": [len(c.figures) + 1 for c in shown]},
    ) as (fig, axes):
        for ax, choice in zip(axes[:, 0], shown):
            names = list(choice.figures)[::-1]
            values = np.nan_to_num([choice.figures[n] for n in names])
            ax.barh(names, values, color=[RED if n == choice.picked else BLUE for n in names])
            for y, v in enumerate(values):
                ax.text(v, y, f" {v:.3f}", va="center", fontsize=7)
            ax.set_xlim(0, max(values.max() * 1.15, 0.05))
            ax.set_title(choice.title, loc="left")
            ax.set_xlabel(choice.metric)
            ax.tick_params(axis="y", labelsize=7)
            ax.grid(axis="y", visible=False)
        return to_svg(fig, "choices")


def embedding_map(evaluation: Evaluation, names: list[str], top: int = 10) -> str:
    """A 2-D PCA of the items' embeddings, each coloured by its most frequent label among
    the ``top`` most frequent (grey: none of them)."""
    from sklearn.decomposition import PCA

    y = evaluation.y.tocsc()
    frequent = np.argsort(-np.diff(y.indptr), kind="stable")[:top]
    colour = np.full(y.shape[0], -1)
    for rank, c in reversed(list(enumerate(frequent))):  # the most frequent label paints last
        colour[y[:, c].toarray().ravel() > 0] = rank
    xy = PCA(n_components=2, random_state=0).fit_transform(evaluation.embeddings)
    with canvas("map", 6.2, 3.8) as (fig, ax):
        others = colour < 0
        ax.scatter(xy[others, 0], xy[others, 1], s=8, color=GREY, alpha=0.5, label="other labels or none")
        palette = [f"C{i}" for i in range(top)]
        for rank, c in enumerate(frequent):
            mine = colour == rank
            ax.scatter(xy[mine, 0], xy[mine, 1], s=10, color=palette[rank], alpha=0.8, label=names[c])
        ax.set(xlabel="first principal component", ylabel="second principal component", xticks=[], yticks=[])
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
        return to_svg(fig, "map")


def cooccurrence(names: list[str], matrix: sp.csr_matrix) -> str:
    """For the most frequent labels: how often each row's label comes with each column's,
    as a share of the row label's items (colour), with the counts."""
    counts = (matrix.T @ matrix).toarray().astype(float)
    own = np.diag(counts).copy()
    share = counts / np.maximum(own[:, None], 1)
    np.fill_diagonal(share, np.nan)
    size = 2.2 + 0.32 * len(names)
    with canvas("cooccurrence", size + 1.2, size) as (fig, ax):
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=max(np.nanmax(share), 0.01) if len(names) > 1 else 1)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="black" if i == j or share[i, j] < 0.5 * np.nanmax(share) else "white",
                )
        ax.grid(False)
        fig.colorbar(image, ax=ax, shrink=0.7, label="share of the row label's items")
        return to_svg(fig, "cooccurrence")
