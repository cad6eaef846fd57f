"""Embedding throughput of the shipped encoders, in float32 and bfloat16, on a data set's texts.

    python bench/bench_encoders.py [--encoders minilm mpnet] [--dataset reuters21578]
        [--texts 256] [--max-length 256] [--repeats 3] [--data-dir DIR]

What a run spends embedding after training (the head's training set, dev, test) scales
with this: texts per second of ``Encoder.encode`` (batches of labelcon's CPU embedding batch, ``encode_batch_size``,
after one warm-up call; median of ``--repeats``) for each encoder under ``--precision
float32`` and ``bfloat16`` (autocast; labelcon's ``auto`` embeds dev, test and predictions
in float32 and the head's training set as it trains). Texts: the first ``--texts`` of the
data set's training split, truncated at ``--max-length`` tokens.
"""

from __future__ import annotations

import argparse

import torch
from data_dir import default_data_dir
from machine import machine
from timing import timed

from labelcon.data import load_split
from labelcon.encoders import build_encoder
from labelcon.encoders.base import encode_batch_size

#: The batch labelcon embeds in on a CPU.
ENCODE_BATCH = encode_batch_size(torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["minilm", "mpnet"])
    parser.add_argument("--dataset", default="reuters21578")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    args = parser.parse_args()
    texts = load_split(args.dataset, "train", data_dir=args.data_dir).texts[: args.texts]
    print(f"{machine()}; {args.dataset}: {len(texts)} texts at {args.max_length} tokens")
    print("| encoder | precision | texts/s | ratio to float32 |\n|---|---|---:|---:|")
    for name in args.encoders:
        encoder = build_encoder(name, max_length=args.max_length)
        rates = {}
        for precision in ("float32", "bfloat16"):
            encoder.precision = precision
            encoder.encode(texts[:ENCODE_BATCH], batch_size=ENCODE_BATCH)
            wall, _, _ = timed(lambda: encoder.encode(texts, batch_size=ENCODE_BATCH), args.repeats)  # noqa: B023 (called here)
            rates[precision] = len(texts) / wall
            print(
                f"| {name} | {precision} | {rates[precision]:.1f} | {rates[precision] / rates['float32']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
