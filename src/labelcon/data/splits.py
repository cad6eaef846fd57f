"""Seeded carve-outs: a dev set from train, and few-shot subsets.

:func:`train_dev_split` (used when no dev file is given) walks a permutation from
``numpy.random.default_rng(seed)`` and moves items to dev until it holds
``round(dev_fraction * n)`` of them (at least 1, and at least 1 left for train). An item
is passed over when moving it would take the last training example of a label that
has >= 2 items, so every such label stays in train. Labels with a single item can land
in dev (``Labelcon.fit`` keeps them among the model's labels, with no training
positives). Only if the permutation runs out of movable items (tiny data sets with many
labels) are passed-over items moved after all, in permutation order.

:func:`sample_shots` keeps about ``shots`` examples per label, greedily as in the
SetFit / few-shot literature, extended to label sets: labels are visited from the
rarest to the most frequent (ties by name); for each, items carrying it are taken in a
seeded random order until the label has ``shots`` examples among the items taken so
far. An item counts once, for all its labels, so frequent labels that co-occur with
rare ones can end up with more than ``shots``; every label gets ``min(shots, freq)``
at least. Items without labels are never taken.

Both return items in their original order.

>>> from labelcon.data import Dataset
>>> ds = Dataset([f"t{i}" for i in range(10)], [("a",)] * 5 + [("b",)] * 4 + [("a", "b")])
>>> train, dev = train_dev_split(ds, dev_fraction=0.2, seed=0)
>>> len(train), len(dev)
(8, 2)
>>> few = sample_shots(ds, 2, seed=0)
>>> sum("a" in s for s in few.labels) >= 2 and sum("b" in s for s in few.labels) >= 2
True
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import chain

import numpy as np

from labelcon.data.dataset import Dataset
from labelcon.data.records import DataError


def train_dev_split(dataset: Dataset, dev_fraction: float = 0.1, seed: int = 13) -> tuple[Dataset, Dataset]:
    """``(train, dev)``: a seeded carve-out of ``dataset`` (see the module docstring)."""
    n = len(dataset)
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"expected 0 < dev_fraction < 1, got {dev_fraction!r}")
    if n < 2:
        raise DataError(f"{dataset.source or 'dataset'}: expected at least 2 items to carve out a dev set, got {n}")
    n_dev = min(n - 1, max(1, round(n * dev_fraction)))
    in_train = Counter(chain.from_iterable(dataset.labels))
    splittable = {label for label, count in in_train.items() if count >= 2}
    dev: list[int] = []
    passed: list[int] = []
    for i in np.random.default_rng(seed).permutation(n).tolist():
        if len(dev) == n_dev:
            break
        labels = dataset.labels[i]
        if all(in_train[label] > 1 for label in labels if label in splittable):
            dev.append(i)
            in_train.subtract(labels)
        else:
            passed.append(i)
    dev += passed[: n_dev - len(dev)]
    chosen = set(dev)
    return dataset.subset(i for i in range(n) if i not in chosen), dataset.subset(sorted(chosen))


def sample_shots(dataset: Dataset, shots: int, seed: int = 13) -> Dataset:
    """About ``shots`` items per label, greedily, rarest label first (see the module docstring)."""
    if shots < 1:
        raise ValueError(f"expected shots >= 1, got {shots!r}")
    carriers: dict[str, list[int]] = defaultdict(list)
    for i in np.random.default_rng(seed).permutation(len(dataset)).tolist():
        for label in dataset.labels[i]:
            carriers[label].append(i)
    have: Counter = Counter()
    taken: set[int] = set()
    for label in sorted(carriers, key=lambda name: (len(carriers[name]), name)):
        for i in carriers[label]:
            if have[label] >= shots:
                break
            if i not in taken:
                taken.add(i)
                have.update(dataset.labels[i])
    if not taken:
        raise DataError(f"{dataset.source or 'dataset'}: expected labelled items to sample shots from, got none")
    return dataset.subset(sorted(taken))
