"""The long-document proxy: label evidence beyond the first window (issue 27).

    python bench/long_proxy.py                     # front/default, late/first, late/default
    python bench/long_proxy.py --runs late:max,late:mean:all --train 1000
    # score pooling over windows chosen on dev, and the lexical vote off (it reads the whole text):
    python bench/long_proxy.py --runs late:default --score-pooling auto --lexical 0
    # the small run of BENCHMARKS.md (windows of 128 tokens, so it fits a loaded CPU):
    python bench/long_proxy.py --train 300 --test 200 --epochs 2 --evidence-words 60 \
        --filler-words 110 --max-length 64 --encode-max-length 128 --runs front:default,late:first

The evidence is a short Reuters-21578 article (at most ``--evidence-words`` words, with its
topics as labels); the rest of each text is filler: Wikipedia sentences (``wiki1m``, which
name no topic) of ``--filler-words`` words, so every text is longer than the encoder's
window. In the ``front`` copy the article comes first and the filler after it, inside the
first window; in the ``late`` copy the filler comes first and the article after it, past
the first window (at the defaults, 220 words of filler are about 290 word pieces against
windows of 256 tokens; 110 words, about 145, against ``--encode-max-length 128``). Train,
dev and test items and their filler are seeded draws; dev is carved out of Reuters' train
(ModApte has no dev); the label space is Reuters' ``labels.txt``.

Each run is ``condition:windows[:window_training]`` and trains labelcon with every other
setting at its default (``--max-length`` and ``--encode-max-length`` aside), for a fixed
``--epochs`` (no time budget, so the figures do not depend on the machine's load);
``default`` leaves ``windows`` at ``auto``. ``--score-pooling`` and ``--lexical`` set those
settings for every run (default: labelcon's, ``embedding`` and ``auto``). The report gives test micro- and macro-F1 per
run, and the **recovery** of each late run: its micro-F1 over that of the ``front`` run
with the same windows setting (or the first front run).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from data_dir import default_data_dir
from machine import machine

from labelcon import Labelcon


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def make_splits(data: Path, args: argparse.Namespace) -> dict[str, dict[str, list[dict]]]:
    """``{"front": {"train": ..., "dev": ..., "test": ...}, "late": {...}}``: the same
    articles and filler, the article first or last."""
    rng = random.Random(args.seed)
    short = [
        r
        for r in read(data / "reuters21578" / "train.jsonl")
        if r["labels"] and len(r["text"].split()) <= args.evidence_words
    ]
    test = [
        r
        for r in read(data / "reuters21578" / "test.jsonl")
        if r["labels"] and len(r["text"].split()) <= args.evidence_words
    ]
    rng.shuffle(short)
    rng.shuffle(test)
    n_dev = args.train // 5
    parts = {"train": short[: args.train], "dev": short[args.train : args.train + n_dev], "test": test[: args.test]}
    sentences = [s.strip() for s in (data / "wiki1m" / "train.txt").open(encoding="utf-8") if s.strip()]

    def filler() -> str:
        words: list[str] = []
        while len(words) < args.filler_words:
            words += rng.choice(sentences).split()
        return " ".join(words[: args.filler_words])

    out: dict[str, dict[str, list[dict]]] = {"front": {}, "late": {}}
    for split, items in parts.items():
        pads = [filler() for _ in items]
        out["front"][split] = [{"text": f"{r['text']}\n{pad}", "labels": r["labels"]} for r, pad in zip(items, pads)]
        out["late"][split] = [{"text": f"{pad}\n{r['text']}", "labels": r["labels"]} for r, pad in zip(items, pads)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--runs", default="front:default,late:first,late:default")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=800)
    parser.add_argument("--evidence-words", type=int, default=90)
    parser.add_argument("--filler-words", type=int, default=220)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", default="auto", help="training length (auto: labelcon's)")
    parser.add_argument("--encode-max-length", default="auto", help="embedding length: the window (auto: labelcon's)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--score-pooling",
        default="embedding",
        choices=["auto", "embedding", "max", "mean"],
        help="labelcon's score_pooling",
    )
    parser.add_argument("--lexical", default="auto", help="labelcon's lexical weight (0: off; auto: chosen on dev)")
    args = parser.parse_args()
    print(machine())
    splits = make_splits(args.data_dir, args)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for condition, sets in splits.items():
            for split, items in sets.items():
                path = Path(tmp) / f"{condition}-{split}.jsonl"
                path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
        for run in args.runs.split(","):
            condition, windows, *training = run.split(":")
            settings = {
                "windows": "auto" if windows == "default" else windows,
                "score_pooling": args.score_pooling,
                "lexical": args.lexical if args.lexical == "auto" else float(args.lexical),
            }
            if training:
                settings["window_training"] = training[0]
            labels_file = str(args.data_dir / "reuters21578" / "labels.txt")
            lengths = {
                name: value if value == "auto" else int(value)
                for name, value in (("max_length", args.max_length), ("encode_max_length", args.encode_max_length))
            }
            model = Labelcon(
                epochs=args.epochs, max_time_minutes=0, seed=args.seed, labels_file=labels_file, **lengths, **settings
            )
            tic = time.monotonic()
            model.fit(
                str(Path(tmp) / f"{condition}-train.jsonl"),
                dev=str(Path(tmp) / f"{condition}-dev.jsonl"),
                show_progress=False,
            )
            metrics = model.evaluate(str(Path(tmp) / f"{condition}-test.jsonl"))
            results[run] = {
                "micro_f1": metrics["micro_f1"],
                "macro_f1": metrics["macro_f1"],
                "windows": model.encoder_.windows,
                "score_pooling": model.stage_.score_pooling,
                "lexical_weight": model.stage_.lexical_weight,
                "dev score pooling": {
                    name: round(value, 4)
                    for name, value in model.stage_.selection.items()
                    if name.startswith("scores ")
                },
                "minutes": (time.monotonic() - tic) / 60,
            }
            print(run, json.dumps(results[run]), flush=True)
    fronts = {run.split(":", 1)[1]: r for run, r in results.items() if run.startswith("front:")}
    print("\n| run | windows used | test micro-F1 | test macro-F1 | recovery (micro) | minutes |")
    print("|---|---|---:|---:|---:|---:|")
    for run, r in results.items():
        front = fronts.get(run.split(":", 1)[1]) or next(iter(fronts.values()), None)
        recovery = f"{r['micro_f1'] / front['micro_f1']:.1%}" if front and run.startswith("late:") else ""
        print(
            f"| {run} | {r['windows']} | {r['micro_f1']:.3f} | {r['macro_f1']:.3f} | {recovery} | {r['minutes']:.1f} |"
        )


if __name__ == "__main__":
    main()
