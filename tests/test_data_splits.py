"""Seeded dev carve-out and few-shot sampling."""

from __future__ import annotations

from collections import Counter

import pytest

from labelcon.data import DataError, Dataset, sample_shots, train_dev_split


def skewed(n_common: int = 200) -> Dataset:
    """Many items of a common label plus 20 labels that have exactly two items each."""
    labels = [("common",)] * n_common
    for k in range(20):
        labels += [("common", f"rare{k}"), (f"rare{k}",)]
    labels += [("single",), ()]
    return Dataset([f"text {i}" for i in range(len(labels))], labels, "toy")


def test_split_sizes_partition_and_determinism():
    ds = skewed()
    train, dev = train_dev_split(ds, dev_fraction=0.2, seed=5)
    assert len(dev) == round(0.2 * len(ds)) and len(train) + len(dev) == len(ds)
    assert set(train.texts).isdisjoint(dev.texts) and set(train.texts) | set(dev.texts) == set(ds.texts)
    assert train.texts == sorted(train.texts, key=ds.texts.index)  # original order kept
    again = train_dev_split(ds, dev_fraction=0.2, seed=5)
    assert again[1].texts == dev.texts
    assert train_dev_split(ds, dev_fraction=0.2, seed=6)[1].texts != dev.texts


def test_every_label_with_two_items_stays_in_train():
    ds = skewed()
    for seed in range(10):
        train, dev = train_dev_split(ds, dev_fraction=0.5, seed=seed)
        in_train = Counter(label for labels in train.labels for label in labels)
        assert all(in_train[f"rare{k}"] >= 1 for k in range(20))
        assert len(dev) == round(0.5 * len(ds))


def test_split_edges():
    tiny = Dataset(["a", "b"], [("x",), ("x",)])
    train, dev = train_dev_split(tiny, dev_fraction=0.01)
    assert len(train) == 1 and len(dev) == 1
    with pytest.raises(DataError, match="at least 2 items"):
        train_dev_split(Dataset(["a"], [()]))
    with pytest.raises(ValueError, match="0 < dev_fraction < 1"):
        train_dev_split(tiny, dev_fraction=1.0)


def test_shots_cover_every_label_rarest_first_and_count_items_once():
    ds = skewed()
    few = sample_shots(ds, 2, seed=3)
    counts = Counter(label for labels in few.labels for label in labels)
    assert all(counts[f"rare{k}"] == 2 for k in range(20)) and counts["single"] == 1
    # the rare labels were visited first; their items already carry "common" 20 times
    assert counts["common"] == 20
    assert () not in few.labels and len(set(few.texts)) == len(few)
    assert sample_shots(ds, 2, seed=3).texts == few.texts


def test_shots_per_label_on_a_plain_multiclass_set():
    ds = Dataset([f"t{i}" for i in range(60)], [(f"c{i % 3}",) for i in range(60)])
    few = sample_shots(ds, 4, seed=0)
    assert Counter(label for (label,) in few.labels) == {"c0": 4, "c1": 4, "c2": 4}
    assert sample_shots(ds, 4, seed=1).texts != few.texts
    with pytest.raises(ValueError, match="shots >= 1"):
        sample_shots(ds, 0)
    with pytest.raises(DataError, match="labelled items"):
        sample_shots(Dataset(["a"], [()]), 1)
