"""What the tests share: small clustered multi-label items written as JSONL, fast settings
for the static encoder, and a training run interrupted at a chosen step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

TOPICS = {
    "sports": ["match", "goal", "team", "coach", "league", "score"],
    "music": ["song", "album", "band", "concert", "guitar", "lyrics"],
    "food": ["recipe", "dinner", "spicy", "bake", "flavour", "kitchen"],
    "travel": ["flight", "hotel", "beach", "passport", "luggage", "trip"],
}
FILLER = ["the", "a", "really", "today", "was", "my", "and", "with", "about", "new"]


def make_items(n: int, seed: int) -> list[dict]:
    """Texts mixing the vocabularies of their one or two topics, plus filler words."""
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    items = []
    for _ in range(n):
        labels = list(rng.choice(names, size=rng.choice([1, 2], p=[0.6, 0.4]), replace=False))
        words = [str(w) for topic in labels for w in rng.choice(TOPICS[topic], size=3)]
        words += [str(w) for w in rng.choice(FILLER, size=3)]
        rng.shuffle(words)
        items.append({"text": " ".join(words), "labels": sorted(labels)})
    return items


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


#: Fast settings for the static encoder in tests.
FAST = {"encoder": "static", "epochs": 2, "batch_size": 32, "max_length": 16, "eval_max_train": 100, "min_steps": 0}


@contextmanager
def interrupted_at(monkeypatch, step: int) -> Iterator[None]:
    """The training run in the ``with`` block is stopped by a KeyboardInterrupt in its
    ``step``-th loss computation, as a kill would stop it; the trainer is restored after."""
    from labelcon.training import Trainer

    original, calls = Trainer._loss, {"n": 0}

    def interrupted(self, items, labels):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return original(self, items, labels)

    monkeypatch.setattr(Trainer, "_loss", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(Trainer, "_loss", original)


def train_args(data: dict[str, Path], out: Path, *flags: str, test: bool = True) -> list[str]:
    """``labelcon train`` arguments for the toy data (train, dev and, with ``test``, test)
    into ``out``, then ``flags``."""
    splits = ["--train", str(data["train"]), "--dev", str(data["dev"])]
    return ["train", *splits, *(["--test", str(data["test"])] if test else []), "--out", str(out), *flags]


def fast_flags(epochs: int = FAST["epochs"]) -> list[str]:
    """:data:`FAST` (with ``epochs``) as ``labelcon train`` flags, quiet."""
    return [
        "--encoder",
        FAST["encoder"],
        "--epochs",
        str(epochs),
        "--batch-size",
        str(FAST["batch_size"]),
        "--max-length",
        str(FAST["max_length"]),
        "--min-steps",
        "0",
        "--quiet",
    ]
