"""DEXML's decoupled softmax in label-text contrast, against its formula written out item by item."""

from __future__ import annotations

import math

import pytest
import torch

from labelcon.objectives import build_objective, label_contrast


def _dexml_by_hand(z: torch.Tensor, e: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """Gupta et al. (ICLR 2024): each positive against itself plus the item's negatives."""
    z, e = torch.nn.functional.normalize(z, dim=1), torch.nn.functional.normalize(e, dim=1)
    losses = []
    for i in range(z.shape[0]):
        positives = [c for c in range(e.shape[0]) if y[i, c]]
        if not positives:
            continue
        negatives = [c for c in range(e.shape[0]) if not y[i, c]]
        terms = []
        for c in positives:
            s = z[i] @ e[c] / tau
            denominator = torch.exp(s) + sum(
                (torch.exp(z[i] @ e[n] / tau) for n in negatives), torch.tensor(0.0, dtype=z.dtype)
            )
            terms.append(-(s - torch.log(denominator)))
        losses.append(torch.stack(terms).mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoupled_label_contrast_equals_the_formula_in_values_and_gradients(seed) -> None:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    e = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(6, 7, generator=g) < 0.35).long()
    y[0] = 0  # an item without labels does not count
    y[1, :] = 1  # one with every label: each positive alone in its denominator
    want = _dexml_by_hand(z, e, y, 0.2)
    got = label_contrast(z, e, y, 0.2, decoupled=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    sparse = label_contrast(z, e, y.to_sparse(), 0.2, decoupled=True)
    assert math.isclose(float(sparse.detach()), float(want.detach()), rel_tol=1e-10)
    grads = torch.autograd.grad(got, (z, e))
    want_grads = torch.autograd.grad(want, (z, e))
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_one_label_per_item_makes_the_decoupled_form_the_plain_one() -> None:
    g = torch.Generator().manual_seed(3)
    z, e = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.tensor([0, 2, 5, 1, 2]), 6)
    torch.testing.assert_close(label_contrast(z, e, y, 0.1, decoupled=True), label_contrast(z, e, y, 0.1))


def test_the_objective_takes_decoupled_as_a_parameter() -> None:
    objective = build_objective("label_contrast", decoupled=True)
    assert objective.decoupled and "decoupled=True" in repr(objective)
    z, e, y = torch.randn(4, 3), torch.randn(5, 3), torch.tensor([[1, 1, 0, 0, 0]] * 4)
    assert torch.isclose(objective(z, y, label_embeddings=e), label_contrast(z, e, y, 0.05, decoupled=True))
