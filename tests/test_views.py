"""Text views: deterministic given the generator, never empty, each doing what its paper describes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from labelcon.views import VIEWS, make_view

TEXTS = [
    "one",
    "two words",
    "the quick brown fox jumps over the lazy dog",
    "  spaced   out\ttext \n here ",
    "a a a a",
    " ".join(f"w{i}" for i in range(60)),
]
SETTINGS = [
    ("dropout", {}),
    ("word_deletion", {}),
    ("word_deletion", {"p": 0.99}),
    ("word_repetition", {}),
    ("word_repetition", {"dup_rate": 0.9}),
    ("span_crop", {}),
    ("span_crop", {"alpha": 0.5, "beta": 5.0}),
]


@pytest.mark.parametrize("name, params", SETTINGS)
def test_views_are_deterministic_and_never_empty(name, params):
    view = make_view(name, **params)
    for seed in range(40):
        for text in TEXTS:
            out = view(text, np.random.default_rng(seed))
            assert out.strip(), (name, params, seed, text)
            assert out == view(text, np.random.default_rng(seed))
    for blank in ["", "   "]:
        assert view(blank, np.random.default_rng(0)) == blank


def test_views_vary_with_the_generator():
    text = TEXTS[2]
    for name in ["word_deletion", "word_repetition", "span_crop"]:
        rng = np.random.default_rng(0)
        assert len({make_view(name)(text, rng) for _ in range(30)}) > 1, name


def test_dropout_view_is_the_text_itself():
    assert make_view("dropout")("  Keep  me ", np.random.default_rng(0)) == "  Keep  me "


def test_word_deletion_keeps_an_ordered_subset():
    words = TEXTS[2].split()
    rng = np.random.default_rng(3)
    for _ in range(50):
        out = make_view("word_deletion", p=0.3)(TEXTS[2], rng).split()
        it = iter(words)
        assert all(word in it for word in out)  # subsequence
    assert make_view("word_deletion", p=0.0)(TEXTS[3], rng) == "spaced out text here"
    kept = [len(make_view("word_deletion", p=0.5)(TEXTS[5], rng).split()) for _ in range(200)]
    assert 25 < np.mean(kept) < 35


def test_word_repetition_doubles_some_words_in_place():
    words = TEXTS[5].split()  # all distinct
    rng = np.random.default_rng(4)
    bound = max(2, int(0.32 * len(words)))
    for _ in range(50):
        out = make_view("word_repetition")(TEXTS[5], rng).split()
        assert [w for i, w in enumerate(out) if i == 0 or out[i - 1] != w] == words  # doubled in place
        counts = [out.count(word) for word in words]
        assert set(counts) <= {1, 2} and sum(c == 2 for c in counts) <= bound


def test_span_crop_is_a_contiguous_span():
    words = TEXTS[5].split()
    rng = np.random.default_rng(5)
    lengths = []
    for _ in range(100):
        out = make_view("span_crop")(TEXTS[5], rng).split()
        start = words.index(out[0])
        assert words[start : start + len(out)] == out
        lengths.append(len(out))
    assert 0.55 < np.mean(lengths) / len(words) < 0.8  # Beta(4, 2) has mean 2/3


def test_views_pickle_for_worker_processes():
    view = make_view("word_deletion", p=0.2)
    copy = pickle.loads(pickle.dumps(view))
    assert copy("a b c d", np.random.default_rng(0)) == view("a b c d", np.random.default_rng(0))


def test_bad_names_and_parameters():
    with pytest.raises(ValueError, match="unknown view 'shuffle'.*dropout"):
        make_view("shuffle")
    with pytest.raises(TypeError, match=r"view 'word_deletion' takes parameters \['p'\], got unexpected \['q'\]"):
        make_view("word_deletion", q=0.1)
    with pytest.raises(TypeError, match="none"):
        make_view("dropout", p=0.1)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        make_view("word_deletion", p=1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        make_view("span_crop", alpha=0)
    assert set(VIEWS) == {"dropout", "word_deletion", "word_repetition", "span_crop"}
