"""HTML and Markdown pieces shared by the run report and the comparison page: one
self-contained page (inline CSS and SVG, no script, no URL), tables, figures, sections."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

CSS = """
:root { --ink: #1d2430; --soft: #5b6575; --line: #dde2ea; --band: #f5f7fa; --accent: #1f6fb4; --bad: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); }
header { padding: 18px 28px 8px; border-bottom: 1px solid var(--line); background: var(--band); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; color: var(--soft); }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; margin-top: 8px; }
nav a { color: var(--accent); text-decoration: none; }
main { max-width: 1440px; margin: 0 auto; padding: 8px 28px 40px; }
section { margin-top: 22px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 3px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 18px; align-items: start; }
figure { margin: 0; padding: 10px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figure svg { width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--soft); font-size: 12.5px; margin-top: 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; background: #fff; }
.card b { display: block; font-size: 20px; }
.card span { color: var(--soft); font-size: 12px; }
.notes { border-left: 4px solid #e8830c; background: #fff8ef; padding: 6px 12px; margin: 10px 0; }
.notes p { margin: 3px 0; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--band); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: var(--bad); }
.example { font-size: 12.5px; max-width: 520px; }
.example small { color: var(--soft); }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
.scroll { max-height: 520px; overflow: auto; border: 1px solid var(--line); }
"""


class Raw(str):
    """Text that is already HTML (not escaped in a table cell)."""


def cell(value: object) -> str:
    """A table cell: numbers right-aligned (floats to 3 decimals), text escaped."""
    if isinstance(value, float):
        return f'<td class="num">{"–" if value != value else f"{value:.3f}"}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{value if isinstance(value, Raw) else escape(str(value))}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table of ``rows`` under ``headers`` (cells as :func:`cell` makes them)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(svg: str, caption: str, name: str) -> str:
    """An inline SVG with its caption, as ``<figure id="figure-NAME">``."""
    return f'<figure id="figure-{name}">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Headline numbers as cards: ``(label, value)`` pairs."""
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in items)
        + "</div>"
    )


def notes(lines: Sequence[str]) -> str:
    """A highlighted box of ``lines`` (nothing when there are none)."""
    return f'<div class="notes">{"".join(f"<p>{escape(line)}</p>" for line in lines)}</div>' if lines else ""


def page(title: str, lines: Sequence[str], sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole page: a header (``title``, ``lines`` under it, a link per section) and the
    ``(id, heading, html)`` sections."""
    nav = "".join(f'<a href="#{key}">{escape(heading)}</a>' for key, heading, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{escape(heading)}</h2>{html}</section>' for key, heading, html in sections)
    sub = "".join(f"<p>{escape(line)}</p>" for line in lines)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body><header><h1>{escape(title)}</h1>{sub}<nav>{nav}</nav></header>\n"
        f"<main>{body}</main></body></html>\n"
    )


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (floats to 3 decimals, NaN as a dash)."""

    def text(value: object) -> str:
        if isinstance(value, float):
            return "–" if value != value else f"{value:.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(text(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
