"""Objective modules and registry, the momentum queue, and agreement with
pytorch-metric-learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from labelcon.objectives import (
    OBJECTIVES,
    InfoNCELoss,
    LabelContrastLoss,
    MomentumQueue,
    MulSupConLoss,
    SupConLoss,
    build_objective,
    info_nce,
    label_contrast,
    momentum_update,
    mulsupcon,
    supcon,
)
from labelcon.objectives.label_contrast import sample_label_columns


def _batch(n=8, d=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, requires_grad=True)
    y = (torch.rand(n, c, generator=g) < 0.4).float()
    return z, y


# ----------------------------------------------------------------- registry and modules
def test_registry_names():
    assert OBJECTIVES == [
        "supcon",
        "supcon-any",
        "supcon-all",
        "supcon-jaccard",
        "mulsupcon",
        "mulsupcon-moco",
        "simcse",
        "info_nce",
        "label_contrast",
    ]


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_runs_with_one_call_signature(name):
    objective = build_objective(name, temperature=0.1)
    assert isinstance(objective, nn.Module)
    z, y = _batch()
    extra = {}
    if objective.needs_positives:
        extra["positives"] = z + 0.1
    if objective.needs_label_embeddings:
        extra["label_embeddings"] = torch.randn(5, 6)
    loss = objective(z, y, **extra)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(z.grad).all()


def test_capability_flags():
    assert InfoNCELoss.needs_positives and not InfoNCELoss.needs_label_embeddings
    assert LabelContrastLoss.needs_label_embeddings and not LabelContrastLoss.needs_positives
    assert not SupConLoss.needs_positives and not MulSupConLoss.needs_positives


def test_build_objective_parameters():
    assert build_objective("supcon").relation == "jaccard"
    assert build_objective("supcon", relation="all").relation == "all"
    assert build_objective("supcon-any").relation == "any"
    z, y = _batch()
    built = build_objective("mulsupcon", temperature=0.2, tau_plus=0.1, beta=0.5)
    torch.testing.assert_close(built(z, y), mulsupcon(z, y, 0.2, tau_plus=0.1, beta=0.5))
    simcse = build_objective("simcse", temperature=0.05, symmetric=True)
    torch.testing.assert_close(simcse(z, positives=z.flip(0)), info_nce(z, z.flip(0), 0.05, True))


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("supcon-cosine", {}, "expected one of .*'supcon-jaccard'"),
        ("supcon-any", {"relation": "all"}, "fixes"),
        ("simcse", {"relation": "any"}, "bad parameters"),
        ("supcon", {"relation": "most"}, "relation must be one of"),
        ("supcon", {"temperature": 0}, "temperature"),
        ("mulsupcon", {"tau_plus": 1.5}, "tau_plus"),
    ],
)
def test_build_objective_errors(name, params, message):
    with pytest.raises(ValueError, match=message):
        build_objective(name, **params)


def test_second_view_joins_the_batch():
    z, y = _batch()
    view = z.detach() + 0.05 * torch.randn_like(z)
    expected = supcon(torch.cat([z, view]), torch.cat([y, y]), 0.1, "jaccard")
    torch.testing.assert_close(SupConLoss()(z, y, positives=view), expected)
    sparse = MulSupConLoss()(z, y.to_sparse_csr(), positives=view)
    torch.testing.assert_close(sparse, mulsupcon(torch.cat([z, view]), torch.cat([y, y]), 0.1))


def test_modules_pass_keys_through():
    z, y = _batch()
    keys, key_labels = _batch(n=5, seed=3)
    torch.testing.assert_close(
        SupConLoss(relation="any")(z, y, keys=keys, key_labels=key_labels),
        supcon(z, y, 0.1, "any", keys=keys, key_labels=key_labels),
    )
    torch.testing.assert_close(InfoNCELoss()(z, positives=z.flip(0), keys=keys), info_nce(z, z.flip(0), negatives=keys))
    e = torch.randn(5, 6)
    torch.testing.assert_close(LabelContrastLoss()(z, y, label_embeddings=e), label_contrast(z, e, y))


def test_modules_say_what_is_missing():
    z, y = _batch()
    with pytest.raises(ValueError, match="needs labels"):
        SupConLoss()(z)
    with pytest.raises(ValueError, match="needs positives"):
        InfoNCELoss()(z, y)
    with pytest.raises(ValueError, match="label_embeddings"):
        LabelContrastLoss()(z, y)
    with pytest.raises(ValueError, match="second view"):
        SupConLoss()(z, y, positives=z[:3])


# ----------------------------------------------------------------- sampled label negatives
def _wide_batch(n=16, c=2_000, seed=0):
    """A batch holding a few of many labels: ``z`` [n, 6], labels [n, c], label embeddings [c, 6]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(n, c)
    y[torch.arange(n).repeat_interleave(2), torch.randint(0, c, (2 * n,), generator=g)] = 1.0
    return torch.randn(n, 6, generator=g, requires_grad=True), y, torch.randn(c, 6, generator=g)


def test_label_contrast_takes_every_label_when_the_space_is_small():
    y = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0]])  # 3 of 6 labels held
    for objective in (LabelContrastLoss(label_negatives=3), LabelContrastLoss(label_negatives=None)):
        ids, targets = objective.sample_labels(y, np.random.default_rng(0))
        assert ids is None and targets is y
    ids, targets = LabelContrastLoss(label_negatives=2).sample_labels(y.to_sparse_csr(), np.random.default_rng(0))
    assert len(ids) == 5 and ids[:3].tolist() == [0, 1, 2] and targets.shape == (2, 5)


@pytest.mark.parametrize("sparse", [False, True])
def test_sampled_label_set_holds_the_batch_labels_and_k_others(sparse):
    z, y, e = _wide_batch()
    held = set(y.nonzero()[:, 1].tolist())
    labels = y.to_sparse_csr() if sparse else y
    ids, targets = LabelContrastLoss(label_negatives=64).sample_labels(labels, np.random.default_rng(1))
    assert ids.tolist() == sorted(set(ids.tolist())) and held <= set(ids.tolist())
    assert len(ids) == len(held) + 64
    assert targets.layout == (torch.sparse_coo if sparse else torch.strided)
    torch.testing.assert_close(targets.to_dense(), y[:, ids])
    # the sampled softmax: the full loss with the denominator over S only, so never above it
    sampled = LabelContrastLoss()(z, targets, label_embeddings=e[ids])
    torch.testing.assert_close(sampled, label_contrast(z, e[ids], y[:, ids]))
    assert sampled < label_contrast(z, e, y)


def test_sampled_label_negatives_are_uniform_and_reproducible():
    _, y, _ = _wide_batch(c=300)
    held = set(y.nonzero()[:, 1].tolist())

    def draw(seed):
        return sample_label_columns(y, 10, np.random.default_rng(seed)).tolist()

    assert draw(7) == draw(7) and draw(7) != draw(8)
    counts = np.bincount([c for seed in range(2_000) for c in draw(seed) if c not in held], minlength=300)
    others = np.setdiff1d(np.arange(300), sorted(held))
    assert counts[sorted(held)].sum() == 0 and counts.sum() == 2_000 * 10
    expected = 2_000 * 10 / len(others)  # about 75 draws per label not held
    assert abs(counts[others] - expected).max() < 6 * np.sqrt(expected)


def test_label_negatives_must_be_a_count():
    with pytest.raises(ValueError, match="label_negatives"):
        build_objective("label_contrast", label_negatives=-1)
    assert build_objective("label_contrast", label_negatives=8).label_negatives == 8


# ----------------------------------------------------------------- momentum queue
def test_queue_is_fifo_with_aligned_labels():
    q = MomentumQueue(size=5, dim=2)
    assert len(q) == 0 and q.keys.shape == (0, 2) and q.labels is None
    for start, n in [(0, 3), (3, 4)]:
        keys = torch.arange(start, start + n).float().unsqueeze(1).repeat(1, 2)
        q.enqueue(keys.requires_grad_(), torch.arange(start, start + n))
    assert len(q) == 5 and not q.keys.requires_grad
    assert sorted(q.keys[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert q.labels.tolist() == q.keys[:, 0].long().tolist()
    q.enqueue(torch.arange(10, 17).float().unsqueeze(1).repeat(1, 2), torch.arange(10, 17))  # more than size
    assert sorted(q.labels.tolist()) == [12, 13, 14, 15, 16]


@pytest.mark.parametrize("sparse", [False, True])
def test_queue_multi_label_rows_follow_their_keys(sparse):
    q = MomentumQueue(size=4, dim=3)
    g = torch.Generator().manual_seed(0)
    all_keys, all_labels = torch.randn(9, 3, generator=g), (torch.rand(9, 6, generator=g) < 0.4).float()
    for lo, hi in [(0, 3), (3, 5), (5, 9)]:
        labels = all_labels[lo:hi]
        q.enqueue(all_keys[lo:hi], labels.to_sparse_csr() if sparse else labels)
    stored = q.labels.to_dense() if sparse else q.labels
    assert q.labels.layout == (torch.sparse_coo if sparse else torch.strided)
    for key, row in zip(q.keys, stored, strict=True):
        index = int(torch.nonzero((all_keys == key).all(dim=1))[0])
        assert 5 <= index < 9 and torch.equal(row.float(), all_labels[index])
    z, y = _batch(d=3, c=6)
    torch.testing.assert_close(
        supcon(z, y, 0.1, "jaccard", keys=q.keys, key_labels=q.labels),
        supcon(z, y, 0.1, "jaccard", keys=q.keys, key_labels=stored.float()),
    )


def test_queue_without_labels_serves_as_negatives():
    q = MomentumQueue(size=6, dim=4)
    q.enqueue(torch.randn(4, 4))
    assert q.labels is None
    z = torch.randn(3, 4)
    assert torch.isfinite(info_nce(z, z + 0.1, negatives=q.keys))


def test_queue_errors():
    q = MomentumQueue(size=4, dim=2)
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        q.enqueue(torch.zeros(3, 5))
    q.enqueue(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="one kind"):
        q.enqueue(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="one kind"):
        q.enqueue(torch.zeros(2, 2), torch.zeros(2, 3).to_sparse())
    with pytest.raises(ValueError, match="label count 3"):
        q.enqueue(torch.zeros(2, 2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="size and dim"):
        MomentumQueue(0, 2)


def test_momentum_update():
    online, target = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        online.weight.fill_(2.0)
        target.weight.fill_(1.0)
        online.running_mean.fill_(5.0)
    momentum_update(online, target, m=0.75)
    torch.testing.assert_close(target.weight, torch.full((3,), 1.25))
    torch.testing.assert_close(target.running_mean, torch.full((3,), 5.0))
    assert not target.weight.grad_fn
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        momentum_update(online, target, m=1.5)
    with pytest.raises(ValueError, match="same parameters"):
        momentum_update(nn.Linear(2, 2), nn.Linear(2, 2, bias=False), m=0.5)


# ----------------------------------------------------------------- pytorch-metric-learning
def test_single_label_supcon_equals_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 16, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (64,), generator=g)
    y[0] = 99  # an anchor without positive: both leave it out of the mean
    ours, theirs = supcon(z, y, 0.1), losses.SupConLoss(temperature=0.1)(z, y)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    (g_ours,), (g_theirs,) = torch.autograd.grad(ours, z), torch.autograd.grad(theirs, z)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-5, rtol=1e-4)


def test_auto_objective_tells_a_few_shot_set_from_a_long_tail() -> None:
    from labelcon.objectives import resolve_objective

    long_tail = np.maximum(1, (2000 / np.arange(1, 4001)).astype(int))  # 4,000 labels, median label ~1 item
    assert resolve_objective("auto", long_tail, n_items=45_000) == "supcon-jaccard"
    assert resolve_objective("auto", np.full(28, 8), n_items=224) == "label_contrast"
    assert resolve_objective("auto", np.full(28, 400), n_items=43_000, shots=8) == "label_contrast"
    assert resolve_objective("auto", np.full(28, 50), n_items=1_400, shots=50) == "supcon-jaccard"
    assert resolve_objective("mulsupcon", np.full(28, 8), n_items=224) == "mulsupcon"
