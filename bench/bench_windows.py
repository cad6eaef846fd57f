"""Embedding time against window count: MiniLM embeds the same long texts with
``windows="first"`` (truncated, as before windows) and with ``"mean"`` at several
``max_windows`` caps, at the embedding length labelcon uses for long texts (256 tokens).

    python bench/bench_windows.py --texts 300

The texts are the longest ``--texts`` of Reuters-21578's train split (the regime windows
are for); the report gives the windows read per text, seconds, texts per second and the
time against ``first``. Medians of ``--repeats`` passes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from data_dir import default_data_dir
from machine import machine

from labelcon.encoders import build_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--caps", default="1,2,4,8")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    path = default_data_dir() / "reuters21578" / "train.jsonl"
    texts = sorted((json.loads(line)["text"] for line in path.open(encoding="utf-8")), key=len)[-args.texts :]
    encoder = build_encoder("minilm", max_length=args.max_length).eval()
    print("| windows | max_windows | windows per text | seconds | texts/s | time vs first |")
    print("|---|---:|---:|---:|---:|---:|")
    base = None
    for rule, cap in [("first", 1)] + [("mean", int(c)) for c in args.caps.split(",")]:
        encoder.windows, encoder.max_windows = rule, cap
        per_text = len(encoder.window_spans(texts)) / len(texts)
        times = []
        for _ in range(args.repeats):
            tic = time.perf_counter()
            encoder.encode(texts)
            times.append(time.perf_counter() - tic)
        seconds = statistics.median(times)
        base = base or seconds
        print(
            f"| {rule} | {cap} | {per_text:.2f} | {seconds:.1f} | {len(texts) / seconds:.1f} | {seconds / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
