"""What the target metric changes: one encoder's embeddings, the prediction stage fitted
once per ``target_metric`` (head, lexical weight and decision rule all chosen on dev by
it), each scored on test.

    python bench/bench_target_metric.py emotion11 --data-dir /tmp/proxy          # frozen MiniLM
    python bench/bench_target_metric.py goemotions --model runs/go               # a trained run's encoder

Train, dev and test are embedded once (the encoder as trained, or MiniLM untrained
without ``--model``); only the stage differs between the rows. Prints one row per metric:
test macro-F1 and micro-F1, the head, the lexical weight and the decision rule chosen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from data_dir import default_data_dir
from machine import machine

from labelcon import Labelcon
from labelcon.data import LabelSpace, read_dataset, train_dev_split
from labelcon.encoders import build_encoder
from labelcon.heads.decisions import rule_name
from labelcon.prediction import Features, PredictionStage, StageSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--model", type=Path, default=None, help="a labelcon run directory (default: MiniLM untrained)")
    parser.add_argument("--metrics", default="macro,micro,samples")
    args = parser.parse_args()
    folder = args.data_dir / args.dataset
    train = read_dataset(folder / "train.jsonl")
    if (folder / "dev.jsonl").exists():
        dev = read_dataset(folder / "dev.jsonl")
    else:
        train, dev = train_dev_split(train, 0.1, 13)
    test = read_dataset(folder / "test.jsonl")
    labels = LabelSpace.from_label_sets(train.labels, labels_file=folder / "labels.txt")
    if args.model is not None:
        encoder = Labelcon.load(args.model).encoder_
    else:
        encoder = build_encoder("minilm", train_texts=train.texts, max_length=128, seed=13)
    tic = time.perf_counter()
    x = {name: encoder.encode(data.texts) for name, data in (("train", train), ("dev", dev), ("test", test))}
    print(f"{machine()}; embedded {sum(map(len, x.values()))} texts in {time.perf_counter() - tic:.0f} s")
    y = {
        name: data.label_matrix(labels, ignore_unknown=True)[0]
        for name, data in (("train", train), ("dev", dev), ("test", test))
    }
    print("| target | test macro-F1 | test micro-F1 | head | lexical | rule |\n|---|---:|---:|---|---:|---|")
    for metric in args.metrics.split(","):
        stage = PredictionStage.fit(
            labels,
            Features(x["train"], train.texts),
            y["train"],
            Features(x["dev"], dev.texts),
            y["dev"],
            StageSettings(target_metric=metric),
            at_least_one=all(train.labels),
        )
        result = stage.evaluate(Features(x["test"], test.texts), y["test"])
        head = stage.head.get_params().get("members", stage.head.name)
        print(
            f"| {metric} | {result['macro_f1']:.4f} | {result['micro_f1']:.4f} | {head} | "
            f"{stage.lexical_weight:g} | {rule_name(stage.thresholds)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
