"""Text-level second views for SimCSE-style training: ``view(text, rng) -> text``.

A view is a function of the text and a ``numpy.random.Generator``, so it is
deterministic given the generator's state (and resumable with it). Every view returns
non-empty text for non-empty input; text without words (blank) comes back unchanged.
Words are split on whitespace and joined with single spaces.

- ``"dropout"``: the text itself; the encoder's dropout makes the two views differ
  (SimCSE, Gao et al. 2021, "Simple Contrastive Learning of Sentence Embeddings").
- ``"word_deletion"``: drop each word with probability ``p`` (at least one word stays);
  the deletion augmentation SimCSE compares against and ConSERT's token cutoff at word
  level (Yan et al. 2021).
- ``"word_repetition"``: repeat a random subset of words in place (ESimCSE, Wu et al. 2022,
  "ESimCSE: Enhanced Sample Building Method for Contrastive Learning of Unsupervised
  Sentence Embedding"): ``k ~ U{0, max(2, int(dup_rate * n))}`` words, each said twice.
  ESimCSE repeats subword tokens; this works on words so it is encoder-independent.
- ``"span_crop"``: a contiguous span whose length is a ``Beta(alpha, beta)`` fraction of the
  words (DeCLUTR, Giorgi et al. 2021, "DeCLUTR: Deep Contrastive Learning for
  Unsupervised Textual Representations", which samples span lengths from a beta law).

>>> import numpy as np
>>> view = make_view("word_deletion", p=0.5)
>>> view("the quick brown fox jumps", np.random.default_rng(0))
'the jumps'
>>> make_view("dropout")("unchanged", np.random.default_rng(0))
'unchanged'
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

View = Callable[[str, np.random.Generator], str]


def identity(text: str, rng: np.random.Generator) -> str:
    """The SimCSE view: the text as it is."""
    return text


def word_deletion(text: str, rng: np.random.Generator, p: float = 0.1) -> str:
    """Drop each word with probability ``p``; if all would go, keep one at random."""
    words = text.split()
    if not words:
        return text
    keep = rng.random(len(words)) >= p
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return " ".join(word for word, kept in zip(words, keep, strict=True) if kept)


def word_repetition(text: str, rng: np.random.Generator, dup_rate: float = 0.32) -> str:
    """Say ``k ~ U{0, max(2, int(dup_rate * n))}`` random words twice (ESimCSE)."""
    words = text.split()
    if not words:
        return text
    count = min(len(words), int(rng.integers(0, max(2, int(dup_rate * len(words))) + 1)))
    repeated = set(rng.choice(len(words), size=count, replace=False).tolist())
    return " ".join(" ".join([word] * (2 if i in repeated else 1)) for i, word in enumerate(words))


def span_crop(text: str, rng: np.random.Generator, alpha: float = 4.0, beta: float = 2.0) -> str:
    """Keep a contiguous span of ``ceil(Beta(alpha, beta) * n)`` words (at least one) at a random start."""
    words = text.split()
    if not words:
        return text
    length = max(1, int(np.ceil(rng.beta(alpha, beta) * len(words))))
    start = int(rng.integers(0, len(words) - length + 1))
    return " ".join(words[start : start + length])


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


VIEWS: dict[str, tuple[Callable[..., str], dict[str, Callable[[str, float], None]]]] = {
    "dropout": (identity, {}),
    "word_deletion": (word_deletion, {"p": _check_probability}),
    "word_repetition": (word_repetition, {"dup_rate": _check_probability}),
    "span_crop": (span_crop, {"alpha": _check_positive, "beta": _check_positive}),
}
"""View functions by name, with a validator for each of their parameters."""


def make_view(name: str, **params: Any) -> View:
    """The view called ``name`` with ``params`` bound; picklable (a ``functools.partial``).

    >>> import numpy as np
    >>> make_view("span_crop")("one two three four five six", np.random.default_rng(1))
    'one two three four five'
    """
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; choose one of {sorted(VIEWS)}")
    function, checks = VIEWS[name]
    unknown = sorted(set(params) - set(checks))
    if unknown:
        raise TypeError(f"view {name!r} takes parameters {sorted(checks) or 'none'}, got unexpected {unknown}")
    for key, value in params.items():
        checks[key](key, value)
    return partial(function, **params) if params else function
