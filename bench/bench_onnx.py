"""ONNX export speed and quality: a run's torch path against its ONNX exports (float32 and
int8) and sentence-transformers' own ONNX backend, printed as a markdown table.

    python bench/bench_onnx.py RUN [--dataset goemotions] [--texts 500] [--repeats 3]
                               [--data-dir DIR] [--json FILE]

RUN: a labelcon run directory with a text encoder, e.g. the demo run (``labelcon demo
--out runs/demo``, MiniLM) or a GoEmotions run. Texts: a seeded sample of ``--texts``
items of the data set's test split. The run is exported (into a temporary folder) with
``labelcon.export.export`` as ``onnx``, ``onnx --quantize int8`` and
``sentence-transformers``. Per path:

- embed: seconds to embed the texts (batches of labelcon's ``ENCODE_BATCH``; median of
  ``--repeats``, wall and process CPU), after one warm-up call;
- max |diff|: the largest difference of a normalised embedding from the torch path's;
- same labels: the share of texts whose predicted label set equals the torch path's, and
  macro-F1 / micro-F1 of the predictions on these texts (labelcon paths);
- ``labelcon predict DIR --input texts.txt`` end to end in a fresh process (load, embed,
  decide, print): wall seconds, median of ``--repeats`` (bar: the float32 ONNX export
  gives the same label sets as the run in less time);
- the encoder's size on disk.

Paths: ``torch`` (``Labelcon.load(RUN)``, embedding as the run does: float32 under
``precision: auto``, bfloat16 autocast under ``precision: bfloat16``), the same model
embedding in the other precision where this CPU computes bfloat16 (``torch bfloat16`` or
``torch float32``: what the precision costs and changes), ``onnx fp32`` and ``onnx int8``
(``Labelcon.load(export)``: ONNX Runtime), and
``SentenceTransformer(export, backend="onnx")`` (embeddings only; it needs
``pip install "optimum[onnxruntime]"``, otherwise the row says why it is missing). Every
path uses its library's default threads (all cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from data_dir import default_data_dir
from machine import machine
from timing import timed

from labelcon import Labelcon
from labelcon.data import load_split
from labelcon.device import precision_for
from labelcon.encoders import TransformerEncoder
from labelcon.export import export
from labelcon.modeldir import resolve
from labelcon.training.monitor import ENCODE_BATCH

SEED = 13


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def measure(name: str, embed, texts: list[str], reference: np.ndarray | None, repeats: int) -> dict:
    embed(texts[:8])  # warm-up: first-call allocations and lazy initialisation
    wall, cpu, vectors = timed(lambda: embed(texts), repeats)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    diff = None if reference is None else float(np.abs(vectors - reference).max())
    return {
        "path": name,
        "embed_wall": round(wall, 3),
        "embed_cpu": round(cpu, 3),
        "max_diff": diff,
        "vectors": vectors,
    }


def labelled(row: dict, model: Labelcon, data, torch_sets: list[list[str]] | None) -> dict:
    sets = model.predict(data.texts)
    metrics = model.evaluate(data, ignore_unknown_labels=True)
    same = None if torch_sets is None else float(np.mean([a == b for a, b in zip(sets, torch_sets, strict=True)]))
    row.update(same_labels=same, macro_f1=round(metrics["macro_f1"], 4), micro_f1=round(metrics["micro_f1"], 4))
    return sets


def predict_seconds(directory: Path, texts_file: Path, repeats: int) -> float:
    command = [sys.executable, "-m", "labelcon", "predict", str(directory), "--input", str(texts_file)]
    return round(timed(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL), repeats)[0], 2)


def report(result: dict) -> str:
    lines = [
        f"## ONNX export: {result['run']} on {result['texts']} {result['dataset']} test texts",
        "",
        f"{result['machine']}; {result['date']}; load average {result['load'][0]:.2f} -> {result['load'][1]:.2f}",
        "",
        "| path | embed s wall / CPU | max abs diff | same labels | macro-F1 | micro-F1 "
        "| `labelcon predict` s | size MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if "skipped" in row:
            lines.append(f"| {row['path']} | skipped: {row['skipped']} | | | | | | |")
            continue
        cells = [
            f"{row['embed_wall']:.3f} / {row['embed_cpu']:.3f}",
            _cell(row.get("max_diff"), ".1e"),
            _cell(row.get("same_labels"), ".3f"),
            _cell(row.get("macro_f1"), ".4f"),
            _cell(row.get("micro_f1"), ".4f"),
            _cell(row.get("predict_seconds"), ".2f"),
            _cell(row.get("size_mb"), ".1f"),
        ]
        lines.append(f"| {row['path']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a labelcon run directory (text encoder)")
    parser.add_argument("--dataset", default="goemotions")
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    test = load_split(args.dataset, "test", args.data_dir)
    data = test.subset(
        np.sort(np.random.default_rng(SEED).choice(len(test), min(args.texts, len(test)), replace=False))
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        work = Path(tmp)
        texts_file = work / "texts.txt"
        texts_file.write_text("".join(text.replace("\n", " ") + "\n" for text in data.texts), encoding="utf-8")
        exports = {
            name: export(args.run, work / name, fmt, quantize=q)
            for name, fmt, q in [
                ("onnx fp32", "onnx", None),
                ("onnx int8", "onnx", "int8"),
                ("st", "sentence-transformers", None),
            ]
        }
        original = Labelcon.load(args.run)

        def embed(model: Labelcon):
            return lambda texts: model.encode(texts, normalize=False)

        torch_row = measure("torch", embed(original), data.texts, None, args.repeats)
        reference = torch_row["vectors"]
        torch_sets = labelled(torch_row, original, data, None)
        torch_row.update(
            predict_seconds=predict_seconds(args.run, texts_file, args.repeats),
            size_mb=folder_mb(resolve(args.run)[0] / "encoder"),
        )
        rows.append(torch_row)
        encoder = original.encoder_
        if isinstance(encoder, TransformerEncoder) and precision_for("auto", torch.device("cpu")).autocast:
            other = "float32" if precision_for(encoder.precision, torch.device("cpu")).embed_autocast else "bfloat16"
            encoder.precision = other
            row = measure(f"torch {other}", embed(original), data.texts, reference, args.repeats)
            labelled(row, original, data, torch_sets)
            rows.append(row)
        for name in ("onnx fp32", "onnx int8"):
            model = Labelcon.load(exports[name])
            row = measure(name, embed(model), data.texts, reference, args.repeats)
            labelled(row, model, data, torch_sets)
            row.update(
                predict_seconds=predict_seconds(exports[name], texts_file, args.repeats),
                size_mb=folder_mb(exports[name] / "onnx"),
            )
            rows.append(row)
        try:
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(str(exports["st"]), backend="onnx", device="cpu")
            rows.append(
                measure(
                    'SentenceTransformer(backend="onnx")',
                    lambda texts: st.encode(texts, batch_size=ENCODE_BATCH),
                    data.texts,
                    reference,
                    args.repeats,
                )
            )
        except Exception as error:  # noqa: BLE001 (optimum missing, or its export failing: the row says which)
            rows.append(
                {
                    "path": 'SentenceTransformer(backend="onnx")',
                    "skipped": f"{type(error).__name__}: {str(error)[:120]}",
                }
            )
    for row in rows:
        row.pop("vectors", None)
    result = {
        "run": str(args.run),
        "dataset": args.dataset,
        "texts": len(data),
        "rows": rows,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "load": (load_start, os.getloadavg()[0]),
    }
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
