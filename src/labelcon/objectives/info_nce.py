"""InfoNCE / NT-Xent with in-batch negatives (SimCSE, CLIP)."""

from __future__ import annotations

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
) -> Tensor:
    """InfoNCE with in-batch negatives (SimCSE, Gao et al. 2021; CLIP, Radford et al.
    2021): anchor i against every positive j, the target being j = i::

        loss = -(1/B) sum_i log( exp(s(a_i, p_i) / tau) / sum_j exp(s(a_i, p_j) / tau) )

    ``symmetric=True`` averages it with the same loss from positives to anchors (CLIP).
    ``negatives`` [M, D] (e.g. a momentum queue, ESimCSE) join the denominator of the
    anchor-to-positive direction only.

    >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    >>> round(info_nce(a, p, temperature=0.5).item(), 4)
    0.1577
    """
    check_embeddings(anchors, "anchors")
    check_embeddings(positives, "positives")
    if anchors.shape != positives.shape:
        raise ValueError(
            f"anchors and positives must be paired, of the same shape; got {list(anchors.shape)} "
            f"and {list(positives.shape)}"
        )
    n = anchors.shape[0]
    if negatives is None:
        keys = positives
    else:
        check_embeddings(negatives, "negatives")
        dtype = torch.promote_types(positives.dtype, negatives.dtype)
        keys = torch.cat([positives.to(dtype), negatives.to(dtype)])
    targets = torch.eye(n, keys.shape[0], device=anchors.device)
    loss = contrastive_loss(anchors, keys, targets, temperature)
    if not symmetric:
        return loss
    return 0.5 * (loss + contrastive_loss(positives, anchors, targets[:, :n], temperature))
