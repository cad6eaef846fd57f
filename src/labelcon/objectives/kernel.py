"""The one contrastive kernel behind every objective.

Given anchors ``z`` [B, D] and keys ``k`` [N, D] (both L2-normalised here), logits
``l_ij = z_i . k_j / tau`` with each anchor's own key masked out, and non-negative target
weights ``W`` [R, N] (one row per *anchor unit*; row ``r`` belongs to anchor ``rows[r]``,
or to anchor ``r`` when ``rows`` is None):

    loss = sum_r sum_j W_rj * (log D_r - l_rj)  /  sum_rj W_rj

where ``D_r = sum_{k != self} exp(l_rk)``. A row whose weights sum to 1 is one anchor
unit; a row may carry a larger mass (several units sharing the same denominator, as in
the fast path of MulSupCon). Rows with all-zero weights do not count. When no row has
weight, the loss is 0, still connected to the graph.

Three options change only the denominator. Let ``P_r = {j : W_rj > 0}`` (positives),
``N_r`` the other non-self keys (negatives), ``n_r = |N_r|``, ``p_r = sum_j W_rj e^{l_rj}
/ sum_j W_rj`` the positive term under the target distribution (the plain mean for 0/1
targets), and ``t`` the temperature:

- hard negatives (Robinson et al. 2021, "Contrastive learning with hard negative
  samples", ``beta``): the negative sum becomes ``R_r = n_r * sum_{N_r} e^{(1+beta) l} /
  sum_{N_r} e^{beta l}`` (importance weights ``e^{beta l}``, normalised to mean 1);
- debiased (Chuang et al. 2020, "Debiased contrastive learning", ``tau_plus``): the
  negative sum becomes ``Ng_r = max((R_r - tau_plus * n_r * p_r) / (1 - tau_plus),
  n_r * e^{-1/t})`` with ``R_r`` the plain or reweighted negative sum; the clamp applies
  whenever ``beta > 0`` or ``tau_plus > 0``, as in both papers' code;
- decoupled (Yeh et al. 2022, "Decoupled contrastive learning", ``decoupled=True``):
  the positives leave the denominator, ``D_r = Ng_r`` instead of ``sum_{P_r} e^{l} + Ng_r``.
  A decoupled row without negatives has no denominator and does not count.

With options, each row must be one anchor unit (its own positive set).

A fixed ``bias`` [R, N] is added to the logits before the softmax, ``l_rj + b_rj``: a
key with bias ``b`` counts ``e^b`` times in the denominator (SimCSE's
``hard_negative_weight`` on each anchor's own hard negative, see
:func:`labelcon.objectives.info_nce`).
Everything is computed in float32 (float64 inputs stay float64) and in log space, so
the loss is finite for temperatures down to 0.01 and beyond.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from labelcon.objectives.checks import values_checked

#: Stand-in for -inf on masked logits: exp() of it is 0, yet 0 * MASKED stays 0 and its
#: gradients stay finite. Far below any real logit (|l| <= 1 / temperature).
MASKED = -1e30


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float32, or float64 when any input is float64 (half precision is upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


class NonFiniteEmbeddingsError(ValueError):
    """Embeddings holding NaN or inf values, of which every loss would be NaN."""


def check_embeddings(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = f"dtype={x.dtype}, shape={list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor of shape [n, D]; got {got}")


def normalise(x: Tensor, dtype: torch.dtype, name: str) -> Tensor:
    """``x`` as an L2-normalised [n, D] matrix of ``dtype``; NaN or inf in ``x`` raises
    :class:`NonFiniteEmbeddingsError` (not checked inside
    :func:`labelcon.objectives.checks.trusted_inputs`, where a NaN loss shows it)."""
    check_embeddings(x, name)
    if values_checked() and not torch.isfinite(x).all():
        raise NonFiniteEmbeddingsError(
            f"{name} hold NaN or inf values, so the loss would be NaN (a diverged model, or inputs that are not finite)"
        )
    return F.normalize(x.to(dtype), dim=1)


def check_temperature(temperature: float | Tensor) -> float:
    """``temperature`` as a float: any real number (numpy scalars included) or a 0-d
    tensor, finite and > 0.

    >>> import numpy as np
    >>> check_temperature(np.float32(0.5)), check_temperature(torch.tensor(2))
    (0.5, 2.0)
    """
    if isinstance(temperature, Tensor) and temperature.dim() == 0 and not temperature.requires_grad:
        temperature = temperature.item()
    number = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if not (number and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    return float(temperature)


def check_options(tau_plus: float, beta: float) -> None:
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus (class prior of false negatives) must be in [0, 1); got {tau_plus!r}")
    if not (math.isfinite(beta) and beta >= 0.0):
        raise ValueError(f"beta (hard-negative concentration) must be a finite number >= 0; got {beta!r}")


def contrastive_loss(
    anchors: Tensor,
    keys: Tensor,
    weights: Tensor,
    temperature: float,
    *,
    self_index: Tensor | None = None,
    rows: Tensor | None = None,
    tau_plus: float = 0.0,
    beta: float = 0.0,
    decoupled: bool = False,
    bias: Tensor | None = None,
) -> Tensor:
    """The kernel described in the module docstring.

    ``anchors`` [B, D] and ``keys`` [N, D] are normalised here (one matrix product for the
    logits). ``weights`` [R, N] holds the targets; it must be zero on self pairs.
    ``self_index`` [B] is the self-mask: the key column that is anchor ``i`` itself
    (excluded from every denominator), or None when no key is an anchor. ``rows`` [R] maps
    weight rows to anchors (None: row r is anchor r).

    >>> z = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    >>> w = torch.tensor([[0., 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    >>> loss = contrastive_loss(z, z, w, 0.1, self_index=torch.arange(4))
    >>> bool(loss > 0)
    True
    """
    temperature = check_temperature(temperature)
    check_options(tau_plus, beta)
    dtype = compute_dtype(anchors, keys)
    z = normalise(anchors, dtype, "anchors")
    k = z if keys is anchors else normalise(keys, dtype, "keys")
    if z.shape[1] != k.shape[1]:
        raise ValueError(f"anchors and keys must have the same dimension; got {z.shape[1]} and {k.shape[1]}")
    weights = weights.to(dtype)
    n_rows = z.shape[0] if rows is None else rows.shape[0]
    if weights.shape != (n_rows, k.shape[0]):
        raise ValueError(f"weights must have shape [{n_rows}, {k.shape[0]}]; got {list(weights.shape)}")
    if bias is not None:
        if bias.shape != weights.shape:
            raise ValueError(f"bias must have the weights' shape {list(weights.shape)}; got {list(bias.shape)}")
        bias = bias.to(dtype)

    self_columns = None if self_index is None else self_index if rows is None else self_index[rows]
    anchor_rows = z if rows is None else z.index_select(0, rows)
    if not (tau_plus > 0 or beta > 0 or decoupled):
        mass = weights.sum(dim=1)
        # the batch against itself: symmetric logits (a bias may not be symmetric)
        shared = keys is anchors and rows is None and bias is None
        summed = _FusedContrast.apply(
            anchor_rows, None if shared else k, weights, mass, self_columns, 1 / temperature, bias
        )
        return _mean_over_mass(summed, mass.sum())

    logits = anchor_rows @ (k.T / temperature)
    if bias is not None:
        logits = logits + bias
    if self_columns is not None:
        logits[torch.arange(logits.shape[0], device=z.device), self_columns] = MASKED
    log_denominator, usable = _option_denominator(logits, weights, self_columns, temperature, tau_plus, beta, decoupled)
    weights = weights * usable.unsqueeze(1)
    mass = weights.sum(dim=1)
    summed = torch.dot(mass, log_denominator) - torch.dot(weights.flatten(), logits.flatten())
    return _mean_over_mass(summed, mass.sum())


def _mean_over_mass(summed: Tensor, total: Tensor) -> Tensor:
    """``summed / total``, the loss per anchor unit; without any weight (``total`` 0, so
    every term of ``summed`` is 0 times a finite number) it is 0.0 (not -0.0), still on
    the graph with zero gradients. No branch on ``total``, so nothing waits for its value."""
    return summed / torch.where(total > 0, total, torch.ones_like(total)) + 0.0


class _FusedContrast(torch.autograd.Function):
    """``sum_r mass_r * logsumexp(l_r) - sum_rj W_rj l_rj`` with ``l = z @ k.T * scale``
    (plus ``bias`` when given; self masked), computed in place in one [R, N] buffer that ends up holding
    ``exp(l - max)``; the backward is ``G = mass_r * softmax(l_r) - W_r`` times matrix
    products. With ``k=None`` the keys are the anchors themselves and the two products of
    the backward collapse into one: ``dL/dz = (G + G.T) @ z * scale``. This keeps the plain
    objectives at about the cost of a bare ``z @ z.T`` forward and backward."""

    @staticmethod
    def forward(
        ctx,
        z: Tensor,
        k: Tensor | None,
        weights: Tensor,
        mass: Tensor,
        self_columns: Tensor | None,
        scale: float,
        bias: Tensor | None,
    ) -> Tensor:
        logits = (z * scale) @ (z if k is None else k).T
        if bias is not None:
            logits.add_(bias)
        if self_columns is not None:
            # A finite fill: exp() gives 0 in the denominator and 0 * fill stays 0 in the targets.
            logits[torch.arange(z.shape[0], device=z.device), self_columns] = MASKED
        attract = torch.dot(weights.flatten(), logits.flatten())
        top = logits.amax(dim=1)
        exps = logits.sub_(top.unsqueeze(1)).exp_()
        norm = exps.sum(dim=1)
        ctx.save_for_backward(z, k, weights, mass, exps, norm)
        ctx.scale = scale
        return torch.dot(mass, top + norm.log()) - attract

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        z, k, weights, mass, exps, norm = ctx.saved_tensors
        coefficient = mass * (grad * ctx.scale) / norm
        g = exps.mul(coefficient.unsqueeze(1)).addcmul_(weights, grad * -ctx.scale)
        if k is None:  # a transposed copy and an add cost less than a second product
            return g.T.contiguous().add_(g) @ z, None, None, None, None, None, None
        grad_z = g @ k if ctx.needs_input_grad[0] else None
        grad_k = g.T @ z if ctx.needs_input_grad[1] else None
        return grad_z, grad_k, None, None, None, None, None


def _masked_logsumexp(x: Tensor, mask: Tensor) -> Tensor:
    """Row-wise log-sum-exp over ``mask``; about ``MASKED`` for empty rows (finite, so no
    NaN reaches the gradient; callers drop those rows)."""
    return torch.logsumexp(x.masked_fill(~mask, MASKED), dim=1)


def _option_denominator(
    logits: Tensor,
    weights: Tensor,
    self_columns: Tensor | None,
    temperature: float,
    tau_plus: float,
    beta: float,
    decoupled: bool,
) -> tuple[Tensor, Tensor]:
    """log D_r under the debiased / hard-negative / decoupled options, and 1.0 for rows
    that have a denominator at all (0.0 for decoupled rows without negatives)."""
    positive = weights > 0
    negative = ~positive
    if self_columns is not None:
        negative[torch.arange(negative.shape[0], device=negative.device), self_columns] = False
    n_neg = negative.sum(dim=1)
    has_neg = n_neg > 0
    log_n = torch.log(n_neg.clamp_min(1).to(logits.dtype))

    if beta > 0:
        importance = _masked_logsumexp(beta * logits, negative)
        log_neg = log_n + _masked_logsumexp((1 + beta) * logits, negative) - importance
    else:
        log_neg = _masked_logsumexp(logits, negative)
    if tau_plus > 0:
        mass = weights.sum(dim=1).clamp_min(torch.finfo(logits.dtype).tiny)
        log_w = torch.log(weights.clamp_min(torch.finfo(logits.dtype).tiny))
        log_pos_mean = _masked_logsumexp(logits + log_w, positive) - torch.log(mass)
        # log((R - tau_plus * n * p) / (1 - tau_plus)); -inf where the estimate is <= 0
        gap = math.log(tau_plus) + log_n + log_pos_mean - log_neg
        safe_gap = gap.clamp(max=-1e-30)
        log_neg = torch.where(gap < 0, log_neg + torch.log(-torch.expm1(safe_gap)), -math.inf)
        log_neg = log_neg - math.log1p(-tau_plus)
    if beta > 0 or tau_plus > 0:
        log_neg = torch.maximum(log_neg, log_n - 1.0 / temperature)

    if decoupled:
        return log_neg, has_neg.to(logits.dtype)
    log_pos = _masked_logsumexp(logits, positive)
    both = torch.logaddexp(log_pos, log_neg)
    return torch.where(has_neg, both, log_pos), torch.ones_like(log_n)
