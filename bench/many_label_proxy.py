"""A many-label proxy built from the shared arXiv abstracts: thousands of labels, a long tail,
and labels that occur only in dev and test, the regime of extreme classification
(EURLex-57K: 45,000 / 6,000 / 6,000 documents, 4,271 concepts, about 5 a document).

    python bench/many_label_proxy.py --out /tmp/proxy       # writes /tmp/proxy/manylabel/
    python bench/compare.py manylabel --data-dir /tmp/proxy --systems labelcon,tfidf
    python bench/many_label_proxy.py --out /tmp/proxy --with-title   # writes /tmp/proxy/manylabel_lexical/
    python bench/compare.py manylabel_lexical --data-dir /tmp/proxy --systems labelcon,linear

Each paper keeps its arXiv categories and gains **concept labels**: the terms of its title
(words and two-word phrases, lower-cased, stop words out) that the titles of the whole
corpus use at least ``--min-df`` and at most ``--max-df`` times, up to ``--per-item`` of
them, rarest first. The text is the abstract alone, so a label is never a copy of a field
of the text; its words often occur in the abstract, as a concept's words often occur in
the document it indexes. ``labels.txt`` lists every label of every split (what
``--labels-file`` gives a user), so concepts met only in dev or test are part of the label
space and count as misses unless a head can score them; ``--new-share`` of the concepts
are held out of train as if introduced after it (EURLex-57K's zero-shot concepts). A seeded ``--limit`` of training
items shrinks the proxy for quick runs; dev and test shrink in proportion.

``--with-title`` keeps the title in the text (``manylabel_lexical/``): every concept's words
are then in its text, as the labels of a strong-lexical set are largely readable from its
words (on the hidden set of short legal texts, TF-IDF + one-vs-rest linear reaches P@1 0.919,
labelcon's defaults 0.911). Without it the concepts must be guessed from the abstract, a
regime where the TF-IDF anchor is weak (P@1 0.369, BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path

from data_dir import default_data_dir
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

WORD = re.compile(r"[a-z][a-z0-9-]+")


def title_terms(title: str) -> list[str]:
    """Words and adjacent word pairs of a title, without stop words."""
    words = [w for w in WORD.findall(title.lower()) if w not in ENGLISH_STOP_WORDS and len(w) > 2]
    return list(dict.fromkeys(words + [f"{a} {b}" for a, b in zip(words, words[1:])]))


def split_title(text: str) -> tuple[str, str]:
    """The title and the abstract of an arXiv item (the title is its first line or sentence)."""
    head, sep, rest = text.partition("\n")
    if not sep:
        head, sep, rest = text.partition(". ")
    return head.strip(), rest.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, required=True, help="folder to write manylabel/ into")
    parser.add_argument("--min-df", type=int, default=12)
    parser.add_argument("--max-df", type=int, default=300)
    parser.add_argument("--per-item", type=int, default=4)
    parser.add_argument(
        "--new-share",
        type=float,
        default=0.03,
        help="share of concepts introduced after training: kept out of train, zero-shot in dev/test",
    )
    parser.add_argument(
        "--with-title",
        action="store_true",
        help="text = title + abstract (the strong-lexical proxy, written to manylabel_lexical/)",
    )
    parser.add_argument("--limit", type=int, default=None, help="training items to keep (seeded)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    splits = {}
    for name in ("train", "dev", "test"):
        with open(args.data_dir / "arxiv_abstracts" / f"{name}.jsonl", encoding="utf-8") as handle:
            splits[name] = [json.loads(line) for line in handle if line.strip()]
    if args.limit:
        rng = random.Random(args.seed)
        share = args.limit / len(splits["train"])
        splits = {
            name: rng.sample(items, min(len(items), round(len(items) * share)) if name != "train" else args.limit)
            for name, items in splits.items()
        }
    parsed = {name: [(split_title(item["text"]), item["labels"]) for item in items] for name, items in splits.items()}
    df = Counter(term for items in parsed.values() for (title, _), _ in items for term in title_terms(title))
    concepts = {term for term, count in df.items() if args.min_df <= count <= args.max_df}
    new = set(random.Random(args.seed).sample(sorted(concepts), round(args.new_share * len(concepts))))

    out = args.out / ("manylabel_lexical" if args.with_title else "manylabel")
    out.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    stats = {}
    for name, items in parsed.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for (title, abstract), categories in items:
                terms = sorted((t for t in title_terms(title) if t in concepts), key=lambda t: (df[t], t))
                kept = [t for t in terms if name != "train" or t not in new][: args.per_item]
                labels = list(categories) + [f"concept: {t}" for t in kept]
                names.update(labels)
                text = f"{title}\n{abstract}".strip() if args.with_title else abstract or title
                handle.write(json.dumps({"text": text, "labels": labels}, ensure_ascii=False) + "\n")
        stats[name] = len(items)
    train_labels = {
        label for line in open(out / "train.jsonl", encoding="utf-8") for label in json.loads(line)["labels"]
    }
    (out / "labels.txt").write_text("".join(f"{label}\n" for label in sorted(names)), encoding="utf-8")
    print(json.dumps({**stats, "labels": len(names), "only_in_dev_or_test": len(names - train_labels)}))


if __name__ == "__main__":
    main()
