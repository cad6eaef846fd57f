"""The dense+sparse ranker alone on a many-label set: every label scored against a shortlist,
TF-IDF alone against TF-IDF beside the embedding, with fit time and test P@1 / P@5.

    python bench/many_label_proxy.py --out DIR --with-title --limit 8000 --min-df 3 --max-df 60
    python bench/bench_dense_sparse.py manylabel_lexical --data-dir DIR --model RUN   # embeds once
    python bench/bench_shortlist.py DIR/manylabel_lexical --model RUN [--variants 400:0,none:0,400:1]

Each variant ``SHORTLIST:SCALE`` is ``DenseSparseLinear(C=1, shortlist=SHORTLIST,
dense_scale=SCALE)`` (``none``: every label, the full one-vs-rest; scale 0: TF-IDF alone,
LibMultiLabel's linear anchor when the shortlist is ``none``), fitted on train, its Platt
scaling on dev, scored on test. The embeddings are RUN's ``embeddings.npz`` (written by
``bench_dense_sparse.py``); without ``--model``, scale-0 variants only. Labels no training
item holds rank last, as in the harness (``compare.py``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from machine import machine

from labelcon.heads.dense_sparse import DenseSparseLinear
from labelcon.metrics import evaluate


def read(folder: Path, split: str) -> tuple[list[str], list[list[str]]]:
    rows = [json.loads(line) for line in (folder / f"{split}.jsonl").open()]
    return [row["text"] for row in rows], [row["labels"] for row in rows]


def label_matrix(labels: list[list[str]], index: dict[str, int]) -> sp.csr_matrix:
    pairs = [(i, index[name]) for i, held in enumerate(labels) for name in held]
    rows, cols = zip(*pairs) if pairs else ((), ())
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(labels), len(index)))


def variant(text: str) -> tuple[int | None, float]:
    shortlist, scale = text.split(":")
    return (None if shortlist == "none" else int(shortlist)), float(scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a data folder: train/dev/test.jsonl and labels.txt")
    parser.add_argument("--model", type=Path, default=None, help="a bench_dense_sparse.py RUN (its embeddings)")
    parser.add_argument("--variants", default="400:0,none:0", help="SHORTLIST:SCALE, comma-separated")
    args = parser.parse_args()
    names = [line.strip() for line in (args.folder / "labels.txt").open() if line.strip()]
    index = {name: i for i, name in enumerate(names)}
    splits = {split: read(args.folder, split) for split in ("train", "dev", "test")}
    y = {split: label_matrix(labels, index) for split, (_, labels) in splits.items()}
    embeddings = None
    if args.model is not None:
        with np.load(args.model / "embeddings.npz") as saved:
            embeddings = {split: saved[split] for split in splits}
    unseen = np.asarray(y["train"].sum(axis=0)).ravel() == 0
    print(f"{args.folder}: {', '.join(f'{s} {len(t)}' for s, (t, _) in splits.items())}, {len(names)} labels")
    print(f"machine: {machine()}\n")
    print("| shortlist | features | P@1 | P@5 | fit (s) | calibrate + score test (s) |")
    print("|---|---|---:|---:|---:|---:|")
    for shortlist, scale in map(variant, args.variants.split(",")):
        if scale and embeddings is None:
            raise SystemExit(f"variant {shortlist}:{scale} reads embeddings: give --model RUN")
        z = embeddings or {s: np.zeros((len(t), 1), np.float32) for s, (t, _) in splits.items()}
        ranker = DenseSparseLinear(C=1.0, shortlist=shortlist, dense_scale=scale)
        started = time.perf_counter()
        ranker.fit(splits["train"][0], y["train"], z["train"])
        fitted = time.perf_counter()
        ranker.calibrate(splits["dev"][0], y["dev"], z["dev"])
        scores = ranker.sparse_scores(splits["test"][0], z["test"]).toarray()
        scored = time.perf_counter()
        scores[:, unseen] -= 1
        figures = evaluate(y["test"], scores, scores > 0.5)
        features = "TF-IDF + embedding" if scale else "TF-IDF"
        print(
            f"| {shortlist or 'none (every label)'} | {features} | {figures['precision_at_1']:.4f} | "
            f"{figures['precision_at_5']:.4f} | {fitted - started:.0f} | {scored - fitted:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
