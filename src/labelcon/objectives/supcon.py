"""Supervised contrastive loss over single- or multi-label relations."""

from __future__ import annotations

import torch
from torch import Tensor

from labelcon.objectives.kernel import check_embeddings, compute_dtype, contrastive_loss
from labelcon.objectives.relations import RELATIONS, check_labels, check_pair, is_sparse, relation_weights


def join_keys(
    embeddings: Tensor, labels: Tensor, keys: Tensor | None, key_labels: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The key set: the batch itself followed by the extra ``keys`` (with their labels)."""
    if (keys is None) != (key_labels is None):
        raise ValueError("keys and key_labels go together: give both or neither")
    if keys is None:
        return embeddings, labels
    check_embeddings(keys, "keys")
    if keys.shape[1] != embeddings.shape[1]:
        raise ValueError(f"keys must have the embeddings' dimension {embeddings.shape[1]}; got {keys.shape[1]}")
    key_labels = check_labels(key_labels, keys.shape[0], "key_labels")
    check_pair(labels, key_labels)
    if is_sparse(labels) != is_sparse(key_labels):
        labels, key_labels = (y if is_sparse(y) else y.to_sparse() for y in (labels, key_labels))
    all_labels = torch.cat([labels, key_labels])
    dtype = torch.promote_types(embeddings.dtype, keys.dtype)
    all_keys = torch.cat([embeddings.to(dtype), keys.to(dtype)])
    return all_keys, all_labels.coalesce() if is_sparse(all_labels) else all_labels


def supcon(
    embeddings: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    relation: str = "any",
    *,
    keys: Tensor | None = None,
    key_labels: Tensor | None = None,
    tau_plus: float = 0.0,
    beta: float = 0.0,
    decoupled: bool = False,
) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "Supervised contrastive learning",
    the L_out form) with relation weights ``w_ij`` between label sets::

        loss_i = - sum_{j != i} (w_ij / sum_{j' != i} w_ij') * log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )

    averaged over anchors with at least one ``w_ij > 0``; 0 (still on the graph) when no
    anchor has a positive. ``s_ij`` is the cosine similarity (embeddings are L2-normalised
    here) and self is never a positive nor in a denominator.

    ``labels``: int class ids [B] (``w_ij = 1[y_i = y_j]``, ``relation`` ignored) or a {0,1}
    matrix [B, C], dense or torch sparse COO/CSR, with ``relation``:
    ``"any"`` 1[|Y_i ∩ Y_j| > 0], ``"all"`` 1[Y_i = Y_j non-empty], ``"jaccard"``
    |Y_i ∩ Y_j| / |Y_i ∪ Y_j| (a cross-entropy against the label-overlap distribution).

    ``keys``/``key_labels``: extra keys (a momentum queue, other processes' batches) that
    join the batch's own keys. ``tau_plus``, ``beta``, ``decoupled``: debiased
    (Chuang et al. 2020), hard-negative (Robinson et al. 2021) and decoupled (Yeh et al.
    2022) denominators, see :mod:`labelcon.objectives.kernel`.

    With single-label ids and no options this equals pytorch-metric-learning's
    ``SupConLoss`` (same denominator over all non-self pairs, same mean over anchors
    with a positive), except that pml returns 0 for a batch without any negative pair.

    >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> round(supcon(z, torch.tensor([0, 0, 1, 1]), temperature=0.5).item(), 4)
    0.2965
    >>> y = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 1]])
    >>> round(supcon(z, y, temperature=0.5, relation="jaccard").item(), 4)
    0.9222
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {list(RELATIONS)}; got {relation!r}")
    check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, embeddings.shape[0])
    all_keys, all_labels = join_keys(embeddings, labels, keys, key_labels)
    weights = relation_weights(labels, all_labels, relation, compute_dtype(embeddings, all_keys))
    n = embeddings.shape[0]
    index = torch.arange(n, device=weights.device)
    weights[index, index] = 0.0
    weights.div_(weights.sum(dim=1, keepdim=True).clamp_min_(torch.finfo(weights.dtype).tiny))
    return contrastive_loss(
        embeddings,
        all_keys,
        weights,
        temperature,
        self_index=index,
        tau_plus=tau_plus,
        beta=beta,
        decoupled=decoupled,
    )
