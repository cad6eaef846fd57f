"""Label-aware batches: every item with a possible positive gets one in its batch.

An item "has a possible positive" when one of its labels is carried by at least one
other item. Each epoch is planned from ``numpy.random.default_rng([seed, epoch])``:

1. **Label pairs** (a ``label_fraction`` share of the slots): labels are drawn with
   probability proportional to ``freq ** label_power`` (0.5 by default: smoothed toward
   uniform, so rare labels are seen far more often than their frequency gives), and for
   each drawn label two distinct items carrying it.
2. **Coverage pass**: a shuffled pass over all items. Each item not yet placed this epoch
   becomes an anchor and is paired with a partner sharing one of its labels; the label is
   drawn among the anchor's shareable labels with weight ``freq ** (label_power - 1)``,
   again favouring rare labels, the partner uniformly among the other items carrying it.
   Items without a possible positive are paired with each other.
3. The pairs are shuffled and cut into batches, a pair never split across batches or
   ranks, so the two members of a pair always share a batch. With an odd ``batch_size``
   each batch gets one extra item carrying the label of its first labelled pair. Unless
   ``drop_last``, the last global batch is topped up with pairs drawn again from the
   epoch, so all batches are full and every item appears at least once per epoch.

An item can occur twice in one batch (rarely: as anchor and as someone's partner).

Distributed use mirrors :class:`torch.utils.data.DistributedSampler`: every rank plans
the same global batches of ``batch_size * num_replicas`` items and takes its own slice
of ``batch_size``; all ranks get the same number of batches; call :meth:`set_epoch`
before each epoch. The plan (and so ``len``) is cached per epoch.

Cost: O(N + nnz) numpy work plus one Python pass over the items (about 0.5 s for
2 * 10^5 items and 10^5 labels); memory O(N + nnz); never a dense N x C array.

>>> import scipy.sparse as sp
>>> y = sp.csr_matrix([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1], [0, 0]])
>>> sampler = LabelAwareBatchSampler(y, batch_size=4, seed=0)
>>> batches = list(sampler)
>>> len(batches) == len(sampler) and all(len(b) == 4 for b in batches)
True
>>> sorted(set(i for b in batches for i in b))
[0, 1, 2, 3, 4, 5]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from torch.utils.data import Sampler


class LabelAwareBatchSampler(Sampler[list[int]]):
    """Batches of item indices in which items find positives and rare labels are seen."""

    def __init__(
        self,
        labels: sp.spmatrix,
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        label_fraction: float = 0.25,
        label_power: float = 0.5,
    ):
        if batch_size < 2:
            raise ValueError(f"expected batch_size >= 2 (a batch needs room for a positive pair), got {batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"expected 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        if not 0.0 <= label_fraction < 1.0:
            raise ValueError(f"expected 0 <= label_fraction < 1, got {label_fraction}")
        y = sp.csr_matrix(labels, copy=True)
        y.sum_duplicates()
        y.eliminate_zeros()
        if y.shape[0] < 2:
            raise ValueError(f"expected at least 2 items to batch, got {y.shape[0]}")
        self.labels = y
        self._columns = y.tocsc()
        self._freq = np.diff(self._columns.indptr)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.label_fraction = label_fraction
        self.label_power = label_power
        self.epoch = 0
        self._plan: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use the plan of ``epoch`` (deterministic given ``seed`` and ``epoch``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            yield batch.tolist()

    # ------------------------------------------------------------------ planning
    def _batches(self) -> np.ndarray:
        """This rank's batches for the current epoch, [n_batches, batch_size]."""
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._plan_epoch(np.random.default_rng([self.seed, self.epoch])))
        return self._plan[1]

    def _plan_epoch(self, rng: np.random.Generator) -> np.ndarray:
        n = self.labels.shape[0]
        pairs, pair_labels = self._label_pairs(rng, round(self.label_fraction * n / 2))
        anchor_pairs, anchor_labels, loners = self._coverage_pairs(rng, pairs)
        pairs = np.concatenate([pairs, anchor_pairs])
        pair_labels = np.concatenate([pair_labels, anchor_labels])
        order = rng.permutation(len(pairs))
        pairs, pair_labels = pairs[order], pair_labels[order]

        per_batch = self.batch_size // 2 * self.num_replicas
        n_batches, rest = divmod(len(pairs), per_batch)
        if rest and not self.drop_last:
            extra = rng.integers(len(pairs), size=per_batch - rest)
            pairs, pair_labels = (
                np.concatenate([pairs, pairs[extra]]),
                np.concatenate([pair_labels, pair_labels[extra]]),
            )
            n_batches += 1
        pairs = pairs[: n_batches * per_batch].reshape(n_batches, self.num_replicas, -1, 2)[:, self.rank]
        pair_labels = pair_labels[: n_batches * per_batch].reshape(n_batches, self.num_replicas, -1)[:, self.rank]
        batches = pairs.reshape(n_batches, -1)
        if self.batch_size % 2:
            first_labelled = (pair_labels >= 0).argmax(axis=1)
            shared = pair_labels[np.arange(n_batches), first_labelled]
            batches = np.concatenate([batches, self._carriers(rng, shared, loners)[:, None]], axis=1)
        return batches

    def _label_pairs(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` pairs of distinct items sharing a label drawn by ``freq ** label_power``."""
        shareable = np.flatnonzero(self._freq >= 2)
        if count == 0 or len(shareable) == 0:
            return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
        weights = self._freq[shareable].astype(np.float64) ** self.label_power
        labels = rng.choice(shareable, size=count, p=weights / weights.sum())
        freq, start = self._freq[labels], self._columns.indptr[labels]
        first = (rng.random(count) * freq).astype(np.int64)
        second = (rng.random(count) * (freq - 1)).astype(np.int64)
        second += second >= first
        rows = self._columns.indices
        return np.stack([rows[start + first], rows[start + second]], axis=1).astype(np.int64), labels

    def _partners(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """For every item, a random other item sharing a label (-1 if none) and that label.

        The label is chosen among the item's labels with freq >= 2 with weight
        ``freq ** (label_power - 1)``, by an exponential race: the smallest
        ``Exp(1) / weight`` per row wins.
        """
        y, n = self.labels, self.labels.shape[0]
        freq = self._freq[y.indices]
        weight = np.where(freq >= 2, freq.astype(np.float64) ** (self.label_power - 1.0), 0.0)
        with np.errstate(divide="ignore"):
            race = rng.exponential(size=len(weight)) / weight
        row_of = np.repeat(np.arange(n), np.diff(y.indptr))
        best = np.full(n, np.inf)
        np.minimum.at(best, row_of, race)
        winners = np.flatnonzero((race == best[row_of]) & np.isfinite(race))
        winner_rows = row_of[winners]
        first = np.ones(len(winners), dtype=bool)
        first[1:] = winner_rows[1:] != winner_rows[:-1]
        winners = winners[first]  # ties: one per row
        items, labels = row_of[winners], y.indices[winners].astype(np.int64)
        freq, start = self._freq[labels], self._columns.indptr[labels]
        pick = (rng.random(len(items)) * (freq - 1)).astype(np.int64)
        partner = self._columns.indices[start + pick].astype(np.int64)
        clash = partner == items  # the anchor itself: take the column's last entry instead
        partner[clash] = self._columns.indices[start[clash] + freq[clash] - 1]
        partners, partner_labels = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        partners[items], partner_labels[items] = partner, labels
        return partners, partner_labels

    def _coverage_pairs(
        self, rng: np.random.Generator, placed_pairs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs that place every item not yet in ``placed_pairs``, as anchors of a shuffled
        pass; their labels (-1: a pair of items without possible positives); those items."""
        n = self.labels.shape[0]
        partners, partner_labels = self._partners(rng)
        placed = np.zeros(n, dtype=bool)
        placed[placed_pairs.ravel()] = True
        seen = bytearray(placed.tobytes())
        partner_list = partners.tolist()
        anchors: list[int] = []
        loners: list[int] = []
        for item in rng.permutation(n).tolist():
            if seen[item]:
                continue
            seen[item] = 1
            mate = partner_list[item]
            if mate < 0:
                loners.append(item)
            else:
                anchors.append(item)
                seen[mate] = 1
        anchor, loner = np.asarray(anchors, dtype=np.int64), np.asarray(loners, dtype=np.int64)
        padded = np.concatenate([loner, rng.choice(loner, size=len(loner) % 2)])  # another loner, not a random item
        loner_pairs = padded.reshape(-1, 2)
        pairs = np.concatenate([np.stack([anchor, partners[anchor]], axis=1), loner_pairs])
        labels = np.concatenate([partner_labels[anchor], np.full(len(loner_pairs), -1, dtype=np.int64)])
        return pairs, labels, loner

    def _carriers(self, rng: np.random.Generator, labels: np.ndarray, loners: np.ndarray) -> np.ndarray:
        """A random item carrying each label; where the label is -1 (a batch of loners only) a random loner."""
        out = np.zeros(len(labels), dtype=np.int64)
        has = labels >= 0
        if not has.all():
            out[~has] = rng.choice(loners, size=int((~has).sum()))
        freq, start = self._freq[labels[has]], self._columns.indptr[labels[has]]
        out[has] = self._columns.indices[start + (rng.random(int(has.sum())) * freq).astype(np.int64)]
        return out


class PairBatchSampler(Sampler[list[int]]):
    """Shuffled batches of record indices for text pairs and tuples (no labels to plan
    around): each epoch a permutation from ``numpy.random.default_rng([seed, epoch])``,
    cut into global batches of ``batch_size * num_replicas`` of which each rank takes its
    slice; the last, partial global batch is dropped (a batch of in-batch negatives
    should be full), unless it is the only one. :meth:`batch_at` gives the k-th batch of
    an endless sequence of epochs, for pairs trained beside labelled batches.

    >>> sampler = PairBatchSampler(10, batch_size=4, seed=0)
    >>> len(sampler), [len(batch) for batch in sampler]
    (2, [4, 4])
    >>> sampler.batch_at(2) == next(iter(PairBatchSampler(10, 4, seed=0, epoch=1)))
    True
    """

    def __init__(
        self, n_records: int, batch_size: int, *, seed: int = 0, num_replicas: int = 1, rank: int = 0, epoch: int = 0
    ) -> None:
        if n_records < 2 or batch_size < 2:
            raise ValueError(f"expected at least 2 records and batch_size >= 2, got {n_records} and {batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"expected 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        self.n_records, self.seed, self.num_replicas, self.rank, self.epoch = n_records, seed, num_replicas, rank, epoch
        self.batch_size = min(batch_size, n_records // num_replicas)
        if self.batch_size < 2:
            raise ValueError(f"{n_records} records cannot give each of {num_replicas} processes a batch of 2")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_records // (self.batch_size * self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._epoch(self.epoch)

    def batch_at(self, k: int) -> list[int]:
        """Batch ``k % len(self)`` of epoch ``k // len(self)``."""
        epoch, index = divmod(k, len(self))
        return self._epoch(epoch)[index]

    def _epoch(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_records)
        width = self.batch_size * self.num_replicas
        rows = order[: len(self) * width].reshape(len(self), self.num_replicas, self.batch_size)[:, self.rank]
        return rows.tolist()
