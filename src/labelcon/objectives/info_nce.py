"""InfoNCE / NT-Xent with in-batch negatives (SimCSE, CLIP), and hard negatives."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from labelcon.objectives.kernel import check_embeddings, contrastive_loss


def info_nce(
    anchors: Tensor,
    positives: Tensor,
    temperature: float = 0.05,
    symmetric: bool = False,
    *,
    negatives: Tensor | None = None,
    hard_negatives: Tensor | Sequence[Tensor] | None = None,
    hard_negative_weight: float = 0.0,
) -> Tensor:
    """InfoNCE with in-batch negatives (SimCSE, Gao et al. 2021; CLIP, Radford et al.
    2021): anchor i against every positive j, the target being j = i::

        loss = -(1/B) sum_i log( exp(s(a_i, p_i) / tau) / sum_j exp(s(a_i, p_j) / tau) )

    ``symmetric=True`` averages it with the same loss from positives to anchors (CLIP).
    ``negatives`` [M, D] (e.g. a momentum queue, ESimCSE) join the denominator of the
    anchor-to-positive direction only.

    ``hard_negatives``: one [B, D] tensor, or a sequence of them, row i of each being a
    hard negative of anchor i (supervised SimCSE's contradiction; the negative columns of
    sentence-transformers' MultipleNegativesRankingLoss). Every anchor meets every
    hard negative of the batch in its denominator, and its own ones count with the weight
    ``alpha = exp(hard_negative_weight)`` (Gao et al. 2021, eq. 5 with
    ``alpha^{1[i=j]}``)::

        loss_i = -log( e^{s(a_i, p_i)/tau}
                       / ( sum_j e^{s(a_i, p_j)/tau} + sum_{m, j} alpha^{1[i=j]} e^{s(a_i, h^m_j)/tau} ) )

    ``hard_negative_weight`` is the value of the official SimCSE code's
    ``--hard_negative_weight``: added to the logit ``s / tau`` of the own hard negative,
    so it is ``log alpha`` (0, the default there too, weighs all keys alike). It needs
    ``hard_negatives``; the symmetric direction (positives to anchors) does not see them.

    >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    >>> round(info_nce(a, p, temperature=0.5).item(), 4)
    0.1577
    >>> h = torch.tensor([[0.5, 0.5], [0.6, 0.4]])
    >>> round(info_nce(a, p, temperature=0.5, hard_negatives=h, hard_negative_weight=math.log(2)).item(), 4)
    1.0239
    """
    check_embeddings(anchors, "anchors")
    check_embeddings(positives, "positives")
    if anchors.shape != positives.shape:
        raise ValueError(
            f"anchors and positives must be paired, of the same shape; got {list(anchors.shape)} "
            f"and {list(positives.shape)}"
        )
    if not math.isfinite(hard_negative_weight):
        raise ValueError(f"hard_negative_weight must be a finite number; got {hard_negative_weight!r}")
    n = anchors.shape[0]
    columns = _hard_negative_columns(hard_negatives, anchors.shape)
    if hard_negative_weight and not columns:
        raise ValueError("hard_negative_weight weighs each anchor's own hard negatives; pass hard_negatives= too")
    if negatives is not None:
        check_embeddings(negatives, "negatives")
    parts = [positives, *columns] + ([] if negatives is None else [negatives])
    dtype = parts[0].dtype
    for part in parts[1:]:
        dtype = torch.promote_types(dtype, part.dtype)
    keys = positives if len(parts) == 1 else torch.cat([part.to(dtype) for part in parts])
    targets = torch.eye(n, keys.shape[0], device=anchors.device)
    bias = None
    if hard_negative_weight:
        bias = torch.zeros(n, keys.shape[0], device=anchors.device)
        own = torch.arange(n, device=anchors.device)
        for m in range(len(columns)):
            bias[own, (m + 1) * n + own] = hard_negative_weight
    loss = contrastive_loss(anchors, keys, targets, temperature, bias=bias)
    if not symmetric:
        return loss
    return 0.5 * (loss + contrastive_loss(positives, anchors, targets[:, :n], temperature))


def _hard_negative_columns(hard_negatives: Tensor | Sequence[Tensor] | None, shape: torch.Size) -> list[Tensor]:
    """``hard_negatives`` as a list of [B, D] tensors, each checked against the anchors' shape."""
    if hard_negatives is None:
        return []
    columns = [hard_negatives] if isinstance(hard_negatives, Tensor) else list(hard_negatives)
    for m, column in enumerate(columns):
        check_embeddings(column, f"hard_negatives[{m}]")
        if column.shape != shape:
            raise ValueError(
                f"hard_negatives[{m}] must hold one hard negative per anchor, shape {list(shape)}; "
                f"got {list(column.shape)}"
            )
    return columns
