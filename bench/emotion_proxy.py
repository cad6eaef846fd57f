"""A proxy of short-text emotion sets (SemEval-2018 E-c tweets: 11 emotions, about 7,000
training, 900 dev and 3,300 test items) built from the shared GoEmotions Reddit comments.

    python bench/emotion_proxy.py --out /tmp/proxy        # writes /tmp/proxy/emotion11/
    python bench/compare.py emotion11 --data-dir /tmp/proxy --systems labelcon,tfidf

Eleven GoEmotions emotions stand in for E-c's eleven: anger, disgust, fear, joy, love,
optimism, sadness and surprise as they are; curiosity for anticipation, disappointment for
pessimism, approval for trust. An item keeps the labels it has among them; items with
none are left out (E-c tweets almost all carry one). Train, dev and test are seeded
samples of GoEmotions' own splits, of E-c's sizes (test: the 1,926 items of GoEmotions'
test that hold one of the eleven, fewer than E-c's 3,259). GoEmotions items carry fewer labels than
E-c's (the script prints labels per item), so F1 sits lower than on E-c.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from data_dir import default_data_dir

LABELS = (
    "anger",
    "curiosity",
    "disgust",
    "fear",
    "joy",
    "love",
    "optimism",
    "disappointment",
    "sadness",
    "surprise",
    "approval",
)
SIZES = {"train": 7000, "dev": 900, "test": 3300}  # at most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, required=True, help="folder to write emotion11/ into")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    out = args.out / "emotion11"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for split, size in SIZES.items():
        items = []
        with open(args.data_dir / "goemotions" / f"{split}.jsonl", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                labels = [label for label in record["labels"] if label in LABELS]
                if labels:
                    items.append({"text": record["text"], "labels": labels})
        rng.shuffle(items)
        items = items[:size]
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in items)
        counts = Counter(label for item in items for label in item["labels"])
        per_item = sum(len(item["labels"]) for item in items) / len(items)
        print(f"{split}: {len(items)} items, {per_item:.2f} labels per item, rarest {counts.most_common()[-1]}")
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
