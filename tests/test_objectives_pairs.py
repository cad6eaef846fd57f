"""The pair objectives against their authors' formulations: supervised SimCSE's hard
negatives, CoSENT and MulSupCon's MoCo form (float64 random batches, values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

from labelcon.objectives import build_objective, cosent, info_nce, mulsupcon_moco

from .test_objectives import assert_same


def _randn(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()


# ----------------------------------------------------------------- supervised SimCSE
def simcse_loss(z1, z2, z3, temp, hard_negative_weight):
    """Gao et al.'s ``cl_forward`` with a hard negative (num_sent == 3), as in the official
    SimCSE code: cosine / temp against every z2 and every z3, the logit of each anchor's
    own z3 raised by ``hard_negative_weight``, cross-entropy with target i."""
    cos_sim = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / temp
    z1_z3 = F.cosine_similarity(z1.unsqueeze(1), z3.unsqueeze(0), dim=-1) / temp
    n = len(z1)
    weights = torch.cat([torch.zeros(n, n, dtype=z1.dtype), hard_negative_weight * torch.eye(n, dtype=z1.dtype)], 1)
    logits = torch.cat([cos_sim, z1_z3], 1) + weights
    return F.cross_entropy(logits, torch.arange(n))


@pytest.mark.parametrize("weight", [0.0, math.log(2.0), -1.5])
def test_hard_negative_weight_matches_simcse_code(weight):
    a, p, h = _randn(6, 5, seed=0), _randn(6, 5, seed=1), _randn(6, 5, seed=2)
    assert_same(
        lambda a, p, h: info_nce(a, p, 0.05, hard_negatives=h, hard_negative_weight=weight),
        lambda a, p, h: simcse_loss(a, p, h, 0.05, weight),
        a,
        p,
        h,
    )


def test_hard_negatives_match_multiple_negatives_ranking_loss():
    """Several negative columns, as sentence-transformers' (anchor, positive, negative_1, ...)."""
    a, p = _randn(5, 4, seed=3), _randn(5, 4, seed=4)
    n1, n2 = _randn(5, 4, seed=5), _randn(5, 4, seed=6)
    mnrl = MultipleNegativesRankingLoss(None, scale=20.0)
    labels = torch.zeros(5)
    assert_same(
        lambda a, p, n1, n2: info_nce(a, p, 1 / 20.0, hard_negatives=[n1, n2]),
        lambda a, p, n1, n2: mnrl.compute_loss_from_embeddings([a, p, n1, n2], labels),
        a,
        p,
        n1,
        n2,
    )


def test_hard_negatives_with_queue_negatives_match_loop():
    a, p, h, q = _randn(4, 3, seed=7), _randn(4, 3, seed=8), _randn(4, 3, seed=9), _randn(3, 3, seed=10)

    def loop(a, p, h, q):
        losses = []
        for i in range(len(a)):
            keys = [(p[j], 0.0) for j in range(4)] + [(h[j], 0.7 if j == i else 0.0) for j in range(4)]
            keys += [(q[j], 0.0) for j in range(3)]
            terms = [F.cosine_similarity(a[i], k, dim=0) / 0.1 + b for k, b in keys]
            losses.append(torch.logsumexp(torch.stack(terms), 0) - terms[i])
        return sum(losses) / len(losses)

    assert_same(
        lambda a, p, h, q: info_nce(a, p, 0.1, negatives=q, hard_negatives=h, hard_negative_weight=0.7),
        loop,
        a,
        p,
        h,
        q,
    )


def test_hard_negative_weight_needs_hard_negatives():
    a = torch.randn(3, 4)
    with pytest.raises(ValueError, match="pass hard_negatives="):
        info_nce(a, a, hard_negative_weight=1.0)
    with pytest.raises(ValueError, match=r"hard_negatives\[0\] must hold one hard negative per anchor"):
        info_nce(a, a, hard_negatives=torch.randn(2, 4))


# ----------------------------------------------------------------- CoSENT
def cosent_loop(x, y, scores, scale):
    cos = [F.cosine_similarity(x[i], y[i], dim=0) for i in range(len(x))]
    terms = [scale * (cos[j] - cos[i]) for i in range(len(x)) for j in range(len(x)) if scores[i] > scores[j]]
    return torch.log(1 + sum((torch.exp(t) for t in terms), (x * 0).sum()))


@pytest.mark.parametrize("scores", [[0.2, 4.0, 2.5, 2.5, 5.0, 0.0, 1.0], [1.0] * 7, [3, 1, 2, 3, 1, 2, 0]])
def test_cosent_matches_sentence_transformers(scores):
    x, y = _randn(7, 6, seed=11), _randn(7, 6, seed=12)
    gold = torch.tensor(scores, dtype=torch.float64)
    st = CoSENTLoss(None)
    assert_same(lambda x, y: cosent(x, y, gold), lambda x, y: st.compute_loss_from_embeddings([x, y], gold), x, y)
    assert_same(lambda x, y: cosent(x, y, gold, scale=7.0), lambda x, y: cosent_loop(x, y, gold, 7.0), x, y)


def test_cosent_refuses_scores_of_the_wrong_shape():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="one gold score per pair"):
        cosent(x, x, torch.ones(2))


# ----------------------------------------------------------------- MulSupCon, MoCo form
def mulsupcon_official(q, k, labels, temperature, queue=None, queue_labels=None, with_weight=False):
    """The official MulSupCon code's MoCo path: normalised q and k, scores against the batch
    keys then the queue, one row per (item, label) with the keys holding that label as its
    mask, WeightedSupCon's sum of mean-over-positives losses with per-row weights."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    scores, ref = q @ k.T, labels
    if queue is not None:
        scores = torch.cat([scores, q @ F.normalize(queue, dim=1).T], 1)
        ref = torch.cat([labels, queue_labels])
    B = len(labels)
    rows, cols = torch.where(labels == 1)
    scores = scores[rows]
    one_label = torch.zeros(len(scores), labels.shape[1], dtype=labels.dtype)
    one_label[range(len(scores)), cols] = 1
    masks = (one_label @ ref.T).bool().to(scores.dtype)
    per_item = labels.sum(1).long().tolist()
    if with_weight:
        weights = [1 / (n * B) for n in per_item for _ in range(n)]
    else:
        weights = [1 / len(scores) for n in per_item for _ in range(n)]
    loss = -(torch.log(F.softmax(scores / temperature, dim=1)) * masks).sum(1) / masks.sum(1)
    return (loss * torch.tensor(weights, dtype=scores.dtype)).sum()


@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("with_queue", [False, True])
def test_mulsupcon_moco_matches_official_code(with_weight, with_queue):
    g = torch.Generator().manual_seed(13)
    labels = (torch.rand(8, 5, generator=g) < 0.4).double()
    labels[0] = 0  # an item without labels: no anchor, but counted in B
    queue_labels = (torch.rand(6, 5, generator=g) < 0.4).double()
    q, k, queue = _randn(8, 4, seed=14), _randn(8, 4, seed=15), _randn(6, 4, seed=16)
    extra = {"queue": queue, "queue_labels": queue_labels} if with_queue else {}
    assert_same(
        lambda q, k, queue: mulsupcon_moco(
            q,
            k,
            labels,
            0.2,
            with_weight=with_weight,
            **({"queue": queue, "queue_labels": queue_labels} if with_queue else {}),
        ),
        lambda q, k, queue: mulsupcon_official(
            q,
            k,
            labels,
            0.2,
            with_weight=with_weight,
            **({"queue": queue, "queue_labels": queue_labels} if with_queue else {}),
        ),
        q,
        k,
        queue,
    )
    sparse = mulsupcon_moco(q, k, labels.to_sparse(), 0.2, with_weight=with_weight, **extra)
    torch.testing.assert_close(sparse, mulsupcon_moco(q, k, labels, 0.2, with_weight=with_weight, **extra))


def test_mulsupcon_moco_module_is_the_function_with_queue_keys():
    g = torch.Generator().manual_seed(17)
    labels, queue_labels = (torch.rand(6, 4, generator=g) < 0.5).float(), (torch.rand(5, 4, generator=g) < 0.5).float()
    q, k, queue = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), torch.randn(5, 8, generator=g)
    module = build_objective("mulsupcon-moco", temperature=0.2, with_weight=True)
    assert module.needs_positives
    torch.testing.assert_close(
        module(q, labels, positives=k, keys=queue, key_labels=queue_labels),
        mulsupcon_moco(q, k, labels, 0.2, queue=queue, queue_labels=queue_labels, with_weight=True),
    )
