"""The objectives against plain Python-loop implementations of their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelcon.objectives import NonFiniteEmbeddingsError, build_objective, info_nce, label_contrast, mulsupcon, supcon

torch.set_default_dtype(torch.float32)


# ----------------------------------------------------------------- reference loops
def _sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a, b) / (a.norm() * b.norm())


def _sets(labels: torch.Tensor) -> list:
    """Python label sets (or ints) from int ids [B] or a dense 0/1 matrix."""
    if labels.dim() == 1:
        return [int(y) for y in labels]
    return [set(torch.nonzero(row).flatten().tolist()) for row in labels]


def _relation(a, b, relation: str) -> float:
    if isinstance(a, int):
        return float(a == b)
    if relation == "any":
        return float(len(a & b) > 0)
    if relation == "all":
        return float(a == b and len(a) > 0)
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def ref_supcon(z, labels, tau, relation="any", keys=None, key_labels=None):
    """Khosla et al.'s L_out with relation weights, one anchor at a time."""
    keys_all = z if keys is None else torch.cat([z, keys])
    sets = _sets(labels) + ([] if key_labels is None else _sets(key_labels))
    losses = []
    for i in range(len(z)):
        others = [j for j in range(len(keys_all)) if j != i]
        w = {j: _relation(sets[i], sets[j], relation) for j in others}
        total = sum(w.values())
        if total == 0:
            continue
        denom = sum(torch.exp(_sim(z[i], keys_all[k]) / tau) for k in others)
        losses.append(-sum(w[j] / total * torch.log(torch.exp(_sim(z[i], keys_all[j]) / tau) / denom) for j in others))
    return sum(losses) / len(losses) if losses else z.sum() * 0


def ref_mulsupcon(z, labels, tau, keys=None, key_labels=None):
    keys_all = z if keys is None else torch.cat([z, keys])
    y = labels if key_labels is None else torch.cat([labels, key_labels])
    losses = []
    for i in range(len(z)):
        denom = sum(torch.exp(_sim(z[i], keys_all[k]) / tau) for k in range(len(keys_all)) if k != i)
        for c in range(labels.shape[1]):
            if labels[i, c] != 1:
                continue
            positives = [j for j in range(len(keys_all)) if j != i and y[j, c] == 1]
            if positives:
                losses.append(
                    -sum(torch.log(torch.exp(_sim(z[i], keys_all[j]) / tau) / denom) for j in positives)
                    / len(positives)
                )
    return sum(losses) / len(losses) if losses else z.sum() * 0


def ref_info_nce(a, p, tau):
    losses = []
    for i in range(len(a)):
        denom = sum(torch.exp(_sim(a[i], p[j]) / tau) for j in range(len(p)))
        losses.append(-torch.log(torch.exp(_sim(a[i], p[i]) / tau) / denom))
    return sum(losses) / len(losses)


def ref_label_contrast(z, e, labels, tau):
    losses = []
    for i in range(len(z)):
        mine = [c for c in range(len(e)) if labels[i, c] == 1]
        if not mine:
            continue
        denom = sum(torch.exp(_sim(z[i], e[c]) / tau) for c in range(len(e)))
        losses.append(-sum(torch.log(torch.exp(_sim(z[i], e[c]) / tau) / denom) for c in mine) / len(mine))
    return sum(losses) / len(losses) if losses else z.sum() * 0


# ----------------------------------------------------------------- helpers
def _embeddings(n, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()


def _multilabels(n, c=4, p=0.4, seed=1, empty_rows=(0,)):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, c, generator=g) < p).float()
    for r in empty_rows:
        y[r] = 0
    return y


def _value_and_grad(fn, *tensors):
    loss = fn(*tensors)
    grads = torch.autograd.grad(loss, [t for t in tensors if t.requires_grad], allow_unused=True)
    return loss.detach(), [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, tensors)]


def assert_same(fn, ref, *tensors, atol=1e-9):
    value, grads = _value_and_grad(fn, *tensors)
    ref_value, ref_grads = _value_and_grad(ref, *tensors)
    torch.testing.assert_close(value, ref_value.to(value.dtype), atol=atol, rtol=atol)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r.to(g.dtype), atol=atol, rtol=atol)


# ----------------------------------------------------------------- supcon
def test_supcon_single_label_matches_loop():
    z, y = _embeddings(9), torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1])  # class 3 has no positive
    assert_same(lambda z: supcon(z, y, 0.3), lambda z: ref_supcon(z, y, 0.3), z)


@pytest.mark.parametrize("relation", ["any", "all", "jaccard"])
def test_supcon_multi_label_matches_loop(relation):
    z, y = _embeddings(10), _multilabels(10, empty_rows=(0, 3))
    y[5] = y[6]  # an exact duplicate set for "all"
    assert_same(lambda z: supcon(z, y, 0.2, relation), lambda z: ref_supcon(z, y, 0.2, relation), z)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.int32, torch.float16])
def test_supcon_accepts_label_dtypes(dtype):
    z, y = _embeddings(8), _multilabels(8)
    torch.testing.assert_close(supcon(z, y.to(dtype), 0.1, "jaccard"), supcon(z, y, 0.1, "jaccard"))


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("relation", ["any", "all", "jaccard"])
def test_sparse_labels_equal_dense(layout, relation):
    z, y = _embeddings(12), _multilabels(12, c=6, empty_rows=(2,))
    sparse = y.to_sparse() if layout == "coo" else y.to_sparse_csr()
    assert_same(lambda z: supcon(z, sparse, 0.1, relation), lambda z: supcon(z, y, 0.1, relation), z)
    assert_same(lambda z: mulsupcon(z, sparse, 0.1), lambda z: mulsupcon(z, y, 0.1), z)
    assert_same(lambda z: mulsupcon(z, sparse, 0.1, beta=0.5), lambda z: mulsupcon(z, y, 0.1, beta=0.5), z)


def test_sparse_labels_are_never_densified(monkeypatch):
    """A label space of ten million: no dense matrix with C columns may appear."""
    n, c = 64, 10_000_000
    g = torch.Generator().manual_seed(0)
    columns = torch.randint(0, 20, (n, 3), generator=g) * 500_000
    indices = torch.stack([torch.arange(n).repeat_interleave(3), columns.flatten()])
    y = torch.sparse_coo_tensor(indices, torch.ones(3 * n), (n, c), check_invariants=True).coalesce()
    y = torch.sparse_coo_tensor(y.indices(), torch.ones(y._nnz()), (n, c), check_invariants=True).to_sparse_csr()
    shapes = []
    to_dense = torch.Tensor.to_dense

    def recording_to_dense(self, *args, **kwargs):
        shapes.append(self.shape)
        return to_dense(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to_dense", recording_to_dense)
    z = _embeddings(n, dtype=torch.float32)
    for loss in (supcon(z, y, 0.1, "jaccard"), mulsupcon(z, y, 0.1), mulsupcon(z, y, 0.1, beta=0.5)):
        assert torch.isfinite(loss)
    assert shapes and all(c not in shape for shape in shapes)


@pytest.mark.parametrize("relation", ["any", "all", "jaccard"])
def test_supcon_queue_keys_match_loop(relation):
    z, k = _embeddings(6, seed=0), _embeddings(5, seed=1)
    y, yk = _multilabels(6, seed=2), _multilabels(5, seed=3, empty_rows=())
    assert_same(
        lambda z, k: supcon(z, y, 0.2, relation, keys=k, key_labels=yk),
        lambda z, k: ref_supcon(z, y, 0.2, relation, keys=k, key_labels=yk),
        z,
        k,
    )
    assert_same(  # sparse queue labels with dense batch labels
        lambda z, k: supcon(z, y, 0.2, "jaccard", keys=k, key_labels=yk.to_sparse()),
        lambda z, k: ref_supcon(z, y, 0.2, "jaccard", keys=k, key_labels=yk),
        z,
        k,
    )
    ids, key_ids = torch.tensor([0, 1, 2, 0, 1, 5]), torch.tensor([2, 2, 1, 7, 0])
    assert_same(
        lambda z, k: supcon(z, ids, 0.2, keys=k, key_labels=key_ids),
        lambda z, k: ref_supcon(z, ids, 0.2, keys=k, key_labels=key_ids),
        z,
        k,
    )


def test_no_positive_anywhere_returns_connected_zero():
    z = _embeddings(4)
    cases = [
        lambda: supcon(z, torch.arange(4)),
        lambda: supcon(z, torch.zeros(4, 3)),
        lambda: supcon(z, torch.eye(4), relation="all"),
        lambda: mulsupcon(z, torch.eye(4)),
        lambda: mulsupcon(z, torch.eye(4), tau_plus=0.1, decoupled=True),
        lambda: label_contrast(z, _embeddings(3, seed=5), torch.zeros(4, 3)),
        lambda: supcon(z[:1], torch.tensor([0])),
    ]
    for case in cases:
        loss = case()
        assert loss.item() == 0.0 and loss.requires_grad
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.equal(grad, torch.zeros_like(z))


def test_permutation_invariance():
    z, y = _embeddings(10), _multilabels(10)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    for fn in (
        lambda z, y: supcon(z, y, 0.1, "jaccard"),
        lambda z, y: mulsupcon(z, y, 0.1),
        lambda z, y: supcon(z, y, 0.1, "any", tau_plus=0.1, beta=0.5),
    ):
        torch.testing.assert_close(fn(z, y), fn(z[perm], y[perm]))


def test_duplicated_items_match_loop():
    z, y = _embeddings(5), _multilabels(5, empty_rows=())
    z2, y2 = torch.cat([z, z[:2]]), torch.cat([y, y[:2]])
    assert_same(
        lambda z: supcon(torch.cat([z, z[:2]]), y2, 0.1, "jaccard"),
        lambda z: ref_supcon(torch.cat([z, z[:2]]), y2, 0.1, "jaccard"),
        z,
    )
    assert_same(
        lambda z: mulsupcon(torch.cat([z, z[:2]]), y2, 0.1), lambda z: ref_mulsupcon(torch.cat([z, z[:2]]), y2, 0.1), z
    )
    assert torch.isfinite(supcon(z2, y2, 0.01, "all"))


# ----------------------------------------------------------------- mulsupcon
def test_mulsupcon_matches_loop():
    z, y = _embeddings(9), _multilabels(9, c=5, empty_rows=(1,))
    y[:, 4] = 0
    y[7, 4] = 1  # a label held by one item: its anchor has no positive
    assert_same(lambda z: mulsupcon(z, y, 0.2), lambda z: ref_mulsupcon(z, y, 0.2), z)


def test_mulsupcon_queue_keys_match_loop():
    z, k = _embeddings(6), _embeddings(4, seed=7)
    y, yk = _multilabels(6, seed=2), _multilabels(4, seed=8, empty_rows=())
    assert_same(
        lambda z, k: mulsupcon(z, y, 0.2, keys=k, key_labels=yk),
        lambda z, k: ref_mulsupcon(z, y, 0.2, keys=k, key_labels=yk),
        z,
        k,
    )
    assert_same(
        lambda z, k: mulsupcon(z, y.to_sparse(), 0.2, keys=k, key_labels=yk.to_sparse_csr()),
        lambda z, k: ref_mulsupcon(z, y, 0.2, keys=k, key_labels=yk),
        z,
        k,
    )


def test_mulsupcon_single_label_equals_supcon():
    z, ids = _embeddings(8), torch.tensor([0, 1, 0, 2, 1, 0, 3, 2])
    torch.testing.assert_close(mulsupcon(z, F.one_hot(ids)), supcon(z, ids))


# ----------------------------------------------------------------- info_nce, label_contrast
def test_info_nce_matches_loop():
    a, p = _embeddings(6, seed=1), _embeddings(6, seed=2)
    assert_same(lambda a, p: info_nce(a, p, 0.05), lambda a, p: ref_info_nce(a, p, 0.05), a, p)
    assert_same(
        lambda a, p: info_nce(a, p, 0.05, symmetric=True),
        lambda a, p: 0.5 * (ref_info_nce(a, p, 0.05) + ref_info_nce(p, a, 0.05)),
        a,
        p,
    )


def test_info_nce_extra_negatives():
    a, p, n = _embeddings(4, seed=1), _embeddings(4, seed=2), _embeddings(3, seed=3)

    def ref(a, p, n):
        keys = torch.cat([p, n])
        return (
            sum(
                -torch.log(torch.exp(_sim(a[i], p[i]) / 0.1) / sum(torch.exp(_sim(a[i], k) / 0.1) for k in keys))
                for i in range(4)
            )
            / 4
        )

    assert_same(lambda a, p, n: info_nce(a, p, 0.1, negatives=n), ref, a, p, n)


def test_label_contrast_matches_loop():
    z, e, y = _embeddings(7), _embeddings(5, seed=4), _multilabels(7, c=5, empty_rows=(2, 4))
    assert_same(lambda z, e: label_contrast(z, e, y, 0.05), lambda z, e: ref_label_contrast(z, e, y, 0.05), z, e)
    assert_same(
        lambda z, e: label_contrast(z, e, y.to_sparse_csr(), 0.05), lambda z, e: ref_label_contrast(z, e, y, 0.05), z, e
    )


# ----------------------------------------------------------------- numerics
ALL = {
    "supcon-ids": lambda z, y, t: supcon(z, y.argmax(1), t),
    "supcon-any": lambda z, y, t: supcon(z, y, t, "any"),
    "supcon-jaccard": lambda z, y, t: supcon(z, y, t, "jaccard"),
    "supcon-debiased-hard": lambda z, y, t: supcon(z, y, t, "jaccard", tau_plus=0.1, beta=1.0),
    "supcon-decoupled": lambda z, y, t: supcon(z, y, t, "any", decoupled=True),
    "mulsupcon": lambda z, y, t: mulsupcon(z, y, t),
    "mulsupcon-options": lambda z, y, t: mulsupcon(z, y, t, tau_plus=0.2, beta=0.5, decoupled=True),
    "info_nce": lambda z, y, t: info_nce(z, z.flip(1), t, symmetric=True),
    "label_contrast": lambda z, y, t: label_contrast(z, z[:3].flip(0), y[:, :3], t),
}


@pytest.mark.parametrize("name", list(ALL))
def test_tiny_temperature_is_finite(name):
    z, y = _embeddings(16, d=8, dtype=torch.float32), _multilabels(16, c=5)
    loss = ALL[name](z, y, 0.01)
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert loss > 0 or "options" in name or "decoupled" in name  # DCL's loss may be negative


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(ALL))
def test_half_precision_inputs_are_upcast(name, dtype):
    z32, y = _embeddings(16, d=8, dtype=torch.float32), _multilabels(16, c=5)
    z = z32.detach().to(dtype).requires_grad_()
    loss = ALL[name](z, y, 0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ALL[name](z.float(), y, 0.1))
    (grad,) = torch.autograd.grad(loss, z)
    assert grad.dtype == dtype and torch.isfinite(grad.float()).all()


def test_mixed_precision_keys():
    z, k = _embeddings(6, dtype=torch.float32), _embeddings(4, seed=9, dtype=torch.float32)
    y, yk = _multilabels(6), _multilabels(4, seed=3, empty_rows=())
    expected = supcon(z, y, 0.1, "jaccard", keys=k, key_labels=yk)
    mixed = supcon(z.detach().half(), y, 0.1, "jaccard", keys=k, key_labels=yk)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, expected, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(
        info_nce(z.half(), z.flip(0), negatives=k), info_nce(z, z.flip(0), negatives=k), atol=2e-3, rtol=2e-3
    )


def test_float32_matches_float64_reference():
    z, y = _embeddings(10, dtype=torch.float32), _multilabels(10)
    assert_same(
        lambda z: supcon(z, y, 0.05, "jaccard"), lambda z: ref_supcon(z.double(), y, 0.05, "jaccard"), z, atol=1e-5
    )


# ----------------------------------------------------------------- kernel options vs the papers
def _two_views(n=6, d=5):
    """SimCLR-style batch: 2n embeddings, item i's other view is its only positive."""
    return _embeddings(2 * n, d=d, seed=11), torch.arange(n).repeat(2)


def _paper_terms(z, tau):
    """Per anchor of a two-view batch: exp(pos) and the exp(neg) list, as in the papers' code."""
    n = len(z) // 2
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        pos = torch.exp(_sim(z[i], z[partner]) / tau)
        neg = [torch.exp(_sim(z[i], z[k]) / tau) for k in range(2 * n) if k not in (i, partner)]
        yield pos, neg


def test_debiased_matches_chuang_et_al():
    """Chuang et al. 2020, eq. in Sec. 4: Ng = max((-tau+ N pos + sum neg) / (1 - tau+), N e^{-1/t})."""
    z, ids = _two_views()
    tau, tau_plus = 0.5, 0.1

    def paper(z):
        losses = []
        for pos, neg in _paper_terms(z, tau):
            big_n = len(neg)
            ng = (-tau_plus * big_n * pos + sum(neg)) / (1 - tau_plus)
            ng = torch.clamp(ng, min=big_n * math.e ** (-1 / tau))
            losses.append(-torch.log(pos / (pos + ng)))
        return sum(losses) / len(losses)

    assert_same(lambda z: supcon(z, ids, tau, tau_plus=tau_plus), paper, z)
    assert torch.isfinite(supcon(z, ids, 0.5, tau_plus=0.99))


def test_clamp_of_debiased_estimate_is_active_when_it_should():
    z, ids = _two_views()
    tau, tau_plus = 1.0, 0.9

    def paper(z):
        losses = []
        for pos, neg in _paper_terms(z, tau):
            big_n = len(neg)
            ng = torch.clamp((-tau_plus * big_n * pos + sum(neg)) / (1 - tau_plus), min=big_n * math.e ** (-1 / tau))
            losses.append(-torch.log(pos / (pos + ng)))
        return sum(losses) / len(losses)

    assert_same(lambda z: supcon(z, ids, tau, tau_plus=tau_plus), paper, z)


def test_hard_negatives_match_robinson_et_al():
    """Robinson et al. 2021: imp = exp(beta * s/t); reweight = sum(imp * neg) / mean(imp), then debiased."""
    z, ids = _two_views()
    tau, tau_plus, beta = 0.5, 0.1, 1.0

    def paper(z, tau_plus):
        losses = []
        for pos, neg in _paper_terms(z, tau):
            neg = torch.stack(neg)
            big_n = len(neg)
            imp = (beta * neg.log()).exp()
            reweight = (imp * neg).sum() / imp.mean()
            ng = torch.clamp((-tau_plus * big_n * pos + reweight) / (1 - tau_plus), min=big_n * math.e ** (-1 / tau))
            losses.append(-torch.log(pos / (pos + ng)))
        return sum(losses) / len(losses)

    assert_same(lambda z: supcon(z, ids, tau, tau_plus=tau_plus, beta=beta), lambda z: paper(z, tau_plus), z)
    assert_same(lambda z: supcon(z, ids, tau, beta=beta), lambda z: paper(z, 0.0), z)


def test_decoupled_matches_yeh_et_al():
    """Yeh et al. 2022, DCL: -s_pos/t + log sum_{neg} exp(s/t), the positive out of the denominator."""
    z, ids = _two_views()

    def paper(z):
        losses = [-torch.log(pos) + torch.log(sum(neg)) for pos, neg in _paper_terms(z, 0.3)]
        return sum(losses) / len(losses)

    assert_same(lambda z: supcon(z, ids, 0.3, decoupled=True), paper, z)


def ref_options(z, labels, tau, relation, tau_plus, beta, decoupled, per_label=False):
    """The documented multi-positive generalisation, one anchor unit at a time: negatives are
    the non-self keys with zero weight, p is the weight-averaged exp(positive)."""
    sets = _sets(labels)
    units = []
    for i in range(len(z)):
        if per_label:
            for c in sorted(sets[i]):
                units.append((i, {j: float(c in sets[j]) for j in range(len(z)) if j != i}))
        else:
            units.append((i, {j: _relation(sets[i], sets[j], relation) for j in range(len(z)) if j != i}))
    losses = []
    for i, w in units:
        total = sum(w.values())
        neg = [torch.exp(_sim(z[i], z[j]) / tau) for j in w if w[j] == 0]
        if total == 0 or (decoupled and not neg):
            continue
        e = {j: torch.exp(_sim(z[i], z[j]) / tau) for j in w}
        if neg and (beta > 0 or tau_plus > 0):
            big_n = len(neg)
            imp = [x**beta for x in neg]
            reweight = big_n * sum(m * x for m, x in zip(imp, neg)) / sum(imp)
            p = sum(w[j] * e[j] for j in w) / total
            ng = torch.clamp((reweight - tau_plus * big_n * p) / (1 - tau_plus), min=big_n * math.exp(-1 / tau))
        else:
            ng = sum(neg) if neg else 0.0
        denom = ng if decoupled else sum(e[j] for j in w if w[j] > 0) + ng
        losses.append(-sum(w[j] / total * torch.log(e[j] / denom) for j in w if w[j] > 0))
    return sum(losses) / len(losses) if losses else z.sum() * 0


OPTIONS = [(0.1, 0.0, False), (0.0, 0.7, False), (0.2, 0.5, True), (0.0, 0.0, True)]


def _option_labels():
    y = _multilabels(9, c=4, empty_rows=(4,))
    y[:, 0] = 1  # one label everyone holds: some anchors have no negative
    y[4] = 0
    return y


@pytest.mark.parametrize("relation", ["any", "jaccard"])
@pytest.mark.parametrize("tau_plus,beta,decoupled", OPTIONS)
def test_options_multi_positive_match_loop(tau_plus, beta, decoupled, relation):
    z, y = _embeddings(9), _option_labels()
    assert_same(
        lambda z: supcon(z, y, 0.3, relation, tau_plus=tau_plus, beta=beta, decoupled=decoupled),
        lambda z: ref_options(z, y, 0.3, relation, tau_plus, beta, decoupled),
        z,
    )


@pytest.mark.parametrize("tau_plus,beta,decoupled", OPTIONS)
def test_options_per_label_anchors_match_loop(tau_plus, beta, decoupled):
    z, y = _embeddings(9), _option_labels()
    assert_same(
        lambda z: mulsupcon(z, y, 0.3, tau_plus=tau_plus, beta=beta, decoupled=decoupled),
        lambda z: ref_options(z, y, 0.3, None, tau_plus, beta, decoupled, per_label=True),
        z,
    )


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call,message",
    [
        (lambda z: supcon(z, torch.zeros(4, 3), relation="some"), "relation must be one of"),
        (lambda z: supcon(z, torch.zeros(5, 3)), "one row per item"),
        (lambda z: supcon(z, torch.full((4, 3), 2.0)), "only 0 and 1"),
        (lambda z: supcon(z, torch.tensor([0.0, 1, 0, 1])), "integer class ids"),
        (lambda z: supcon(z, torch.zeros(4, 3, 2)), "shape [B]"),
        (lambda z: supcon(z, torch.arange(4), temperature=0.0), "temperature must be"),
        (lambda z: supcon(z, torch.arange(4), temperature=-1), "got -1"),
        (lambda z: supcon(z, torch.arange(4), keys=z), "keys and key_labels"),
        (lambda z: supcon(z, torch.zeros(4, 3), keys=z, key_labels=torch.zeros(4, 2)), "label count"),
        (lambda z: supcon(z, torch.arange(4), tau_plus=1.0), "tau_plus"),
        (lambda z: supcon(z, torch.arange(4), beta=-1.0), "beta"),
        (lambda z: mulsupcon(z, torch.arange(4)), "label matrix"),
        (lambda z: mulsupcon(z, torch.full((4, 3), 0.5).to_sparse()), "only 0 and 1"),
        (lambda z: info_nce(z, z[:3]), "same shape"),
        (lambda z: label_contrast(z, z[:2], torch.zeros(4, 3)), "C = 2"),
        (lambda z: supcon(z[0], torch.arange(4)), "shape [n, D]"),
        (lambda z: supcon(z, torch.arange(4), keys=z[:, :2], key_labels=torch.arange(4)), "dimension 5; got 2"),
    ],
)
def test_bad_arguments_say_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(_embeddings(4))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "call",
    [
        lambda z: supcon(z, torch.arange(4)),
        lambda z: supcon(z[:2], torch.arange(2), keys=z[2:], key_labels=torch.arange(2)),
        lambda z: mulsupcon(z, torch.eye(4)),
        lambda z: info_nce(z[:2], z[2:]),
        lambda z: label_contrast(z[:2], z[2:], torch.eye(2)),
        lambda z: build_objective("supcon-any", tau_plus=0.1)(z, torch.eye(4)),
    ],
)
def test_embeddings_that_are_not_finite_are_refused(call, bad):
    z = _embeddings(4).detach()
    z[3, 1] = bad  # in the keys, the positives or the label embeddings, depending on the call
    with pytest.raises(NonFiniteEmbeddingsError, match="NaN or inf"):
        call(z)


@pytest.mark.parametrize("temperature", [np.float32(0.1), np.float64(0.1), torch.tensor(0.1), np.int64(1), 1])
def test_temperature_takes_any_real_number_and_0d_tensors(temperature):
    z, y = _embeddings(6), torch.tensor([0, 0, 1, 1, 2, 2])
    want = supcon(z, y, float(temperature))
    torch.testing.assert_close(supcon(z, y, temperature), want)
    objective = build_objective("supcon-jaccard", temperature=temperature)
    assert objective.temperature == float(temperature)
    torch.testing.assert_close(objective(z, y), want)


@pytest.mark.parametrize(
    "temperature",
    [
        0,
        -0.1,
        np.float32(0.0),
        np.float32(-1),
        torch.tensor(-0.1),
        math.nan,
        True,
        "0.1",
        torch.tensor([0.1]),
        torch.tensor(0.1, requires_grad=True),
    ],
)
def test_temperature_that_is_not_a_positive_number_is_refused(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        build_objective("supcon-jaccard", temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        supcon(_embeddings(4), torch.arange(4), temperature)


# ----------------------------------------------------------------- docs
def test_wide_dense_labels_take_the_sparse_route(monkeypatch):
    from labelcon.objectives import relations

    z, y = _embeddings(12), _multilabels(12, c=600, p=0.01, empty_rows=())
    y[:6, 7] = 1
    sparse_route = [supcon(z, y, 0.1, relation) for relation in ("any", "all", "jaccard")]
    assert_same(lambda z: mulsupcon(z, y, 0.1), lambda z: ref_mulsupcon(z, y, 0.1), z)
    monkeypatch.setattr(relations, "SPARSE_WIDTH", 10_000)
    dense_route = [supcon(z, y, 0.1, relation) for relation in ("any", "all", "jaccard")]
    torch.testing.assert_close(dense_route, sparse_route)


def test_trusted_inputs_skips_the_value_checks_only_inside_its_block():
    from labelcon.objectives.checks import trusted_inputs

    z = torch.randn(4, 8)
    bad_labels = torch.tensor([[2.0, 0], [0, 1], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="must hold only 0 and 1; got values such as \\[2.0\\]"):
        supcon(z, bad_labels)
    with pytest.raises(NonFiniteEmbeddingsError):
        supcon(z.index_fill(0, torch.tensor([1]), math.nan), bad_labels.clamp(max=1))
    with trusted_inputs():
        assert torch.isfinite(supcon(z, bad_labels))  # the caller vouched for its labels
        assert torch.isnan(supcon(z.index_fill(0, torch.tensor([1]), math.nan), bad_labels.clamp(max=1)))
        with pytest.raises(ValueError, match="one row per item"):  # checks that read no values still run
            supcon(z, bad_labels[:3])
    with pytest.raises(ValueError, match="must hold only 0 and 1"):
        supcon(z, bad_labels)
