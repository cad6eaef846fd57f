"""The run report: written by `labelcon train`, rebuilt by `labelcon report`, runs side by side,
self-contained (no URL, no script), and rendered by headless Chromium without console errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from labelcon.cli import main
from tests.helpers import FAST, TOPICS, fast_flags, make_items, write_jsonl

SECTIONS = ("summary", "training", "labels", "decisions", "space", "errors", "run")
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def _chess(n: int) -> list[dict]:
    return [{"text": f"chess gambit checkmate board {i}", "labels": ["chess"]} for i in range(n)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The toy topics, a rare label (chess: 3 training items) and a zero-shot one (knitting:
    in the label list and in test, never in training)."""
    root = tmp_path_factory.mktemp("report-data")
    knitting = [{"text": "knitting wool scarf needles", "labels": ["knitting"]}] * 2
    (root / "labels.txt").write_text("\n".join([*sorted(TOPICS), "chess", "knitting"]) + "\n")
    return {
        "train": write_jsonl(root / "train.jsonl", make_items(160, 0) + _chess(3)),
        "dev": write_jsonl(root / "dev.jsonl", make_items(60, 1) + _chess(2)),
        "test": write_jsonl(root / "test.jsonl", make_items(60, 2) + _chess(2) + knitting),
        "labels": root / "labels.txt",
    }


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report-run") / "run"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--train",
            str(data["train"]),
            "--dev",
            str(data["dev"]),
            "--test",
            str(data["test"]),
            "--labels-file",
            str(data["labels"]),
            "--out",
            str(out),
            *fast_flags(),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def _check_page(html: str, figures: int = 4) -> None:
    """A self-contained page: no URL, script, stylesheet link or external image; ``figures`` SVGs at least."""
    assert not re.search(r"https?://|<script|<link|<img|<iframe|@import", html, flags=re.I)
    assert html.count("<figure") >= figures and html.count("<svg") >= figures


def test_train_writes_the_report_with_every_section(run) -> None:
    html = (run / "report.html").read_text(encoding="utf-8")
    _check_page(html, figures=8)
    for key in SECTIONS:
        assert f'<section id="{key}">' in html
    for name in ("loss", "dev", "time", "labels", "choices", "pr", "scores", "map", "cooccurrence"):
        assert f'id="figure-{name}"' in html
    for label in [*TOPICS, "chess", "knitting"]:  # every label named by a hover title in the per-label plot
        assert re.search(rf"<title>{label}: F1 [\d.]+, AP", html), label
    assert "rare" in html and "zero-shot (at 0.5)" in html
    assert "training steps" in html and "dev checks" in html and "head choice" in html  # where the time went
    assert "Machine and libraries" in html and "torch" in html and "Settings" in html
    markdown = (run / "report.md").read_text(encoding="utf-8")
    assert "## Metrics" in markdown and "## Worst labels on test" in markdown and "| macro_f1 |" in markdown


def test_the_stage_and_the_history_record_where_the_time_went(run) -> None:
    folder = run / json.loads((run / "labelcon.json").read_text())["model"]
    timings = json.loads((folder / "prediction.json").read_text())["timings"]
    assert set(timings) == {"embedding train and dev", "head choice", "lexical vote", "thresholds and decision rule"}
    history = json.loads((run / "history.json").read_text())
    assert all(record["losses"] and record["dev_seconds"] >= 0 for record in history)


def test_report_rebuilds_the_run_report_and_draws_the_labels_asked_for(run) -> None:
    (run / "report.html").unlink()
    result = CliRunner().invoke(main, ["report", str(run), "--label", "chess", "--label", "knitting"])
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text(encoding="utf-8")
    _check_page(html)
    assert "chess (F1" in html and "knitting (F1" in html and "the labels asked for" in html
    result = CliRunner().invoke(main, ["report", str(run), "--label", "opera"])
    assert result.exit_code == 2 and "'opera' is not a label" in result.output


def test_runs_side_by_side_with_per_label_changes_on_the_same_test_items(run, tmp_path) -> None:
    twin, other = tmp_path / "twin", tmp_path / "other"
    shutil.copytree(run, twin)
    shutil.copytree(run, other)
    lines = (other / "predictions_test.jsonl").read_text().splitlines()
    (other / "predictions_test.jsonl").write_text("\n".join(lines[:40]) + "\n")  # other test items
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(main, ["report", str(run), str(twin), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    _check_page(html)
    assert "Per-label changes" in html and "same 64 test items" in html and "<title>chess: F1" in html
    assert "F1 change" in out.with_suffix(".md").read_text()
    result = CliRunner().invoke(main, ["report", str(run), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "different items" in out.read_text() and "Per-label changes" not in out.read_text()
    assert CliRunner().invoke(main, ["report", str(run), str(twin)]).exit_code == 2  # several runs need --out


def test_a_failing_report_warns_in_one_line_and_keeps_the_run(data, tmp_path, monkeypatch) -> None:
    import labelcon.report

    def fail(*args, **kwargs):
        raise RuntimeError("drawing failed\nsecond line")

    monkeypatch.setattr(labelcon.report, "write_report", fail)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--train",
            str(data["train"]),
            "--test",
            str(data["test"]),
            "--labels-file",
            str(data["labels"]),
            "--head",
            "knn",
            "--out",
            str(out),
            *fast_flags(epochs=1),
        ],
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "drawing failed" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:") and "second line" not in result.output
    assert (out / "labelcon.json").is_file() and "test" in json.loads((out / "metrics.json").read_text())
    assert not (out / "report.html").exists()


def test_a_run_trained_without_labels_gets_a_training_report(data, tmp_path) -> None:
    from labelcon import Labelcon

    texts = [item["text"] for item in make_items(80, 3)]
    Labelcon(**{**FAST, "objective": "simcse", "epochs": 1}).fit(
        (texts, [[]] * len(texts)), out_dir=tmp_path / "run", show_progress=False
    )
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")  # fit(out_dir=...) wrote it
    _check_page(html, figures=2)
    assert 'id="figure-loss"' in html and "without labels" in html and 'id="figure-labels"' not in html


def test_figures_are_inline_svg_with_named_points_and_no_namespace_urls() -> None:
    from labelcon.report.figures import canvas, to_svg

    with canvas("demo", 3, 2) as (fig, ax):
        ax.scatter([1], [2]).set_gid("point-0")
        svg = to_svg(fig, "demo", {"point-0": "a <label>"})
    assert svg.startswith("<svg") and "http" not in svg and "<metadata" not in svg
    assert '<g id="demo-point-0"><title>a &lt;label&gt;</title>' in svg
    assert all(ref.startswith("#demo-") for ref in re.findall(r'href="(#[^"]*)"', svg))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_headless_chromium_renders_the_report_without_console_errors(run, tmp_path) -> None:
    script = ROOT / "bench" / "render_report.sh"
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [str(script), str(run / "report.html"), str(shot)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert shot.stat().st_size > 10_000
    broken = tmp_path / "broken.html"  # the check does fail on a page that logs an error
    broken.write_text(run.joinpath("report.html").read_text() + "<script>missing()</script>")
    done = subprocess.run(
        [str(script), str(broken), str(tmp_path / "b.png")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1 and "Uncaught ReferenceError" in done.stderr
