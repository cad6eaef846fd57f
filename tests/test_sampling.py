"""LabelAwareBatchSampler: positives in every batch, rare labels seen, coverage, ranks, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from labelcon.sampling import LabelAwareBatchSampler


def zipf_labels(n_items: int, n_labels: int, seed: int, max_labels: int = 3, unlabelled: float = 0.02) -> sp.csr_matrix:
    """Skewed multi-label toy data: 1..max_labels labels per item drawn ~ 1/rank."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_labels + 1)
    counts = rng.integers(1, max_labels + 1, size=n_items) * (rng.random(n_items) >= unlabelled)
    cols = rng.choice(n_labels, size=int(counts.sum()), p=p / p.sum())
    indptr = np.concatenate([[0], np.cumsum(counts)])
    y = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(n_items, n_labels))
    y.sum_duplicates()
    y.data[:] = 1
    return y


def positive_rate(y: sp.csr_matrix, batches) -> float:
    """Share of (batch, distinct item) with a possible positive that has one in its batch."""
    possible = np.asarray((y[:, np.flatnonzero(y.getnnz(axis=0) >= 2)]).getnnz(axis=1) > 0)
    hits = total = 0
    for batch in batches:
        items = np.unique(batch)
        block = y[items]
        shared = np.asarray(block.sum(axis=0)).ravel() >= 2
        has = block[:, np.flatnonzero(shared)].getnnz(axis=1) > 0
        hits += int((has & possible[items]).sum())
        total += int(possible[items].sum())
    return hits / total


def random_batches(n: int, size: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + size] for i in range(0, n - size + 1, size)]


def test_every_possible_positive_is_in_the_batch_unlike_random_batches():
    y = zipf_labels(3000, 1500, seed=0)
    ours = positive_rate(y, LabelAwareBatchSampler(y, 32, seed=1))
    baseline = positive_rate(y, random_batches(3000, 32, seed=1))
    assert ours == 1.0
    assert baseline < 0.75


def test_rare_labels_form_positive_pairs_far_more_often():
    y = zipf_labels(3000, 300, seed=0)
    freq = y.getnnz(axis=0)
    rare = np.flatnonzero((freq >= 2) & (freq <= 4))
    assert len(rare) > 20

    def pair_count(batches) -> int:
        return sum(int((y[np.unique(b)][:, rare].getnnz(axis=0) >= 2).sum()) for b in batches)

    ours = pair_count(LabelAwareBatchSampler(y, 32, seed=1))
    baseline = pair_count(random_batches(3000, 32, seed=1))
    assert ours > 5 * max(baseline, 1)


@pytest.mark.parametrize("batch_size", [8, 9])
def test_each_epoch_covers_every_item_with_full_batches(batch_size):
    y = zipf_labels(500, 40, seed=2, unlabelled=0.2)
    sampler = LabelAwareBatchSampler(y, batch_size, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(len(b) == batch_size and all(isinstance(i, int) for i in b) for b in batches)
        assert sorted({i for b in batches for i in b}) == list(range(500))
        # a pair gives each slot at most one repeat; the plan stays close to one pass
        assert len(batches) * batch_size < 2 * 500
    assert positive_rate(y, sampler) == 1.0


def test_deterministic_given_seed_and_epoch():
    y = zipf_labels(400, 30, seed=3)
    a, b = LabelAwareBatchSampler(y, 16, seed=7), LabelAwareBatchSampler(y, 16, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(LabelAwareBatchSampler(y, 16, seed=8)) != first


def test_ranks_take_disjoint_slices_of_the_same_global_batches():
    y = zipf_labels(1000, 60, seed=4)
    ranks = [LabelAwareBatchSampler(y, 8, seed=5, num_replicas=3, rank=r) for r in range(3)]
    for sampler in ranks:
        sampler.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    assert len({len(batches) for batches in per_rank}) == 1 and len(per_rank[0]) == len(ranks[0])
    whole = LabelAwareBatchSampler(y, 24, seed=5)
    whole.set_epoch(2)
    for step, global_batch in enumerate(whole):
        assert per_rank[0][step] + per_rank[1][step] + per_rank[2][step] == global_batch
    assert {i for batches in per_rank for b in batches for i in b} == set(range(1000))
    assert all(positive_rate(y, batches) == 1.0 for batches in per_rank)  # positives stay on the anchor's rank


def test_drop_last_unlabelled_data_and_argument_checks():
    y = sp.csr_matrix((101, 0), dtype=np.float32)
    kept = LabelAwareBatchSampler(y, 10, seed=0)
    assert {i for b in kept for i in b} == set(range(101))
    dropped = LabelAwareBatchSampler(y, 10, seed=0, drop_last=True)
    assert len(dropped) == 10 and all(len(b) == 10 for b in dropped)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        LabelAwareBatchSampler(y, 1)
    with pytest.raises(ValueError, match="0 <= rank < num_replicas"):
        LabelAwareBatchSampler(y, 4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="at least 2 items"):
        LabelAwareBatchSampler(sp.csr_matrix((1, 3)), 4)


def test_full_epoch_at_1e5_labels_and_2e5_items_is_fast():
    y = zipf_labels(200_000, 100_000, seed=6)
    start = time.perf_counter()
    sampler = LabelAwareBatchSampler(y, 64, seed=0)
    batches = list(sampler)
    elapsed = time.perf_counter() - start
    seen = np.zeros(200_000, dtype=bool)
    seen[np.concatenate([np.asarray(b) for b in batches])] = True
    assert seen.all()
    assert elapsed < 5.0, f"one epoch of index generation took {elapsed:.2f} s"
