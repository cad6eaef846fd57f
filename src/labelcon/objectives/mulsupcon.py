"""Multi-label supervised contrastive loss with one anchor per (item, label) pair."""

from __future__ import annotations

import torch
from torch import Tensor

from labelcon.objectives.kernel import check_embeddings, compute_dtype, contrastive_loss
from labelcon.objectives.relations import check_labels, is_sparse, pair_products
from labelcon.objectives.supcon import join_keys


def mulsupcon(
    embeddings: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    *,
    keys: Tensor | None = None,
    key_labels: Tensor | None = None,
    tau_plus: float = 0.0,
    beta: float = 0.0,
    decoupled: bool = False,
) -> Tensor:
    """MulSupCon (Zhang & Wu, AAAI 2024, "Multi-label supervised contrastive learning"):
    every (item i, label c) with ``Y_ic = 1`` is an anchor whose positives are the other
    items holding c, ``P_ic = {j != i : Y_jc = 1}``::

        l_ic = -(1 / |P_ic|) sum_{j in P_ic} log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )

    and the loss is the mean of ``l_ic`` over anchors with a non-empty ``P_ic`` (0, still on
    the graph, when there is none). ``labels`` is a {0,1} matrix [B, C], dense or torch
    sparse COO/CSR; ``keys``/``key_labels`` add extra keys (e.g. a momentum queue) after
    the batch's own. ``tau_plus``, ``beta``, ``decoupled`` as in
    :func:`labelcon.objectives.supcon`; there each (i, c) gets its own denominator.

    Without options the anchors of one item share a denominator, so the whole loss is one
    kernel row per item with targets ``W_ij = sum_c Y_ic Y_jc / |P_ic|`` (``j != i``, terms
    with empty ``P_ic`` left out), built as ``(Y / |P|) @ Yk.T``: the row's mass is its
    number of anchors. With options each (i, c) gets its own kernel row.

    >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> y = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 1]])
    >>> round(mulsupcon(z, y, temperature=0.5).item(), 4)
    1.0418
    """
    check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, embeddings.shape[0])
    if labels.dim() != 2:
        raise ValueError(f"mulsupcon needs a {{0,1}} label matrix of shape [B, C]; got shape {list(labels.shape)}")
    all_keys, all_labels = join_keys(embeddings, labels, keys, key_labels)
    dtype = compute_dtype(embeddings, all_keys)
    index = torch.arange(embeddings.shape[0], device=embeddings.device)
    holders = _column_sums(all_labels).to(dtype)  # self included, so |P_ic| = holders_c - 1
    inverse = torch.where(holders > 1, 1.0 / (holders - 1).clamp_min(1.0), 0.0)  # 0: no anchor

    if tau_plus > 0 or beta > 0 or decoupled:
        rows, columns = _ones(labels)
        keep = holders[columns] > 1
        rows, columns = rows[keep], columns[keep]
        weights = _label_columns(all_labels, columns).to(dtype) * inverse[columns].unsqueeze(1)
        weights[torch.arange(rows.shape[0], device=weights.device), rows] = 0.0
        return contrastive_loss(
            embeddings,
            all_keys,
            weights,
            temperature,
            self_index=index,
            rows=rows,
            tau_plus=tau_plus,
            beta=beta,
            decoupled=decoupled,
        )
    weights = pair_products(_scale_columns(labels, inverse), all_labels.to(dtype))
    weights[index, index] = 0.0
    return contrastive_loss(embeddings, all_keys, weights, temperature, self_index=index)


def _scale_columns(labels: Tensor, scale: Tensor) -> Tensor:
    if is_sparse(labels):
        indices = labels.indices()
        values = labels.values() * scale[indices[1]]
        return torch.sparse_coo_tensor(indices, values, labels.shape, is_coalesced=True, check_invariants=False)
    return labels * scale


def _column_sums(labels: Tensor) -> Tensor:
    if is_sparse(labels):
        sums = torch.zeros(labels.shape[1], device=labels.device)
        return sums.index_add_(0, labels.indices()[1], labels.values())
    return labels.sum(dim=0)


def _ones(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(row, column) of every 1 in ``labels``, row-major."""
    if is_sparse(labels):
        indices = labels.indices()[:, labels.values() == 1]
        return indices[0], indices[1]
    rows, cols = labels.nonzero(as_tuple=True)
    return rows, cols


def _label_columns(labels: Tensor, columns: Tensor) -> Tensor:
    """Dense [len(columns), N]: row r is column ``columns[r]`` of ``labels`` [N, C]."""
    if is_sparse(labels):
        return labels.t().coalesce().index_select(0, columns).to_dense()
    return labels.T[columns]


def mulsupcon_moco(
    queries: Tensor,
    keys: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    *,
    queue: Tensor | None = None,
    queue_labels: Tensor | None = None,
    with_weight: bool = False,
) -> Tensor:
    """MulSupCon in its MoCo form, as the authors train it (Zhang & Wu, AAAI 2024; the
    official code's ``PretrainModel`` with the ``MulSupCon`` output): query ``q_i`` of
    item i (the trained encoder) meets the momentum encoder's key ``k_i`` of the same item
    (another view) among the batch's keys ``K = [k_1..k_B, queue]``. Every (item i,
    label c) with ``Y_ic = 1`` is an anchor whose positives are the keys holding c, its
    own key included, ``P_ic = {j in K : Y_jc = 1}``, and nothing is masked::

        l_ic = -(1 / |P_ic|) sum_{j in P_ic} log( exp(q_i . k_j / tau) / sum_{j' in K} exp(q_i . k_j' / tau) )

    The loss is the mean of ``l_ic`` over all anchors; with ``with_weight=True`` each
    anchor of item i weighs ``1 / (|Y_i| B)``, so every item counts alike whatever its
    number of labels (``sum_i sum_{c in Y_i} l_ic / (|Y_i| B)``; B counts every item of
    the batch, those without labels too, as in the official code).

    ``queries`` and ``keys`` [B, D] (keys are detached by the caller in MoCo, not here),
    ``labels`` a {0,1} matrix [B, C]; ``queue`` [Q, D] with ``queue_labels`` [Q, C] the
    keys of earlier batches (the official code adds its queue once it is full).
    Queries and keys are L2-normalised here. Items without labels have no anchors.

    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> y = torch.tensor([[1, 1], [0, 1]])
    >>> round(mulsupcon_moco(q, q, y, 0.5).item(), 4), round(mulsupcon_moco(q, q, y, 0.5, with_weight=True).item(), 4)
    (0.7936, 0.8769)
    """
    check_embeddings(queries, "queries")
    check_embeddings(keys, "keys")
    if keys.shape != queries.shape:
        raise ValueError(
            f"keys must be the batch's own keys, one per query, shape {list(queries.shape)}; got {list(keys.shape)}"
        )
    labels = check_labels(labels, queries.shape[0])
    if labels.dim() != 2:
        raise ValueError(f"mulsupcon_moco needs a {{0,1}} label matrix of shape [B, C]; got shape {list(labels.shape)}")
    if (queue is None) != (queue_labels is None):
        raise ValueError("queue and queue_labels go together: give both or neither")
    all_keys, all_labels = join_keys(keys, labels, queue, queue_labels)
    dtype = compute_dtype(queries, all_keys)
    holders = _column_sums(all_labels).to(dtype)  # |P_ic|: every key holding c, the own key included
    targets = _scale_columns(labels, 1.0 / holders.clamp_min(1.0))
    weights = pair_products(targets, all_labels.to(dtype))
    if not with_weight:
        return contrastive_loss(queries, all_keys, weights, temperature)
    counts = weights.sum(dim=1)  # |Y_i|: each anchor's row sums to 1
    weights = weights / counts.clamp_min(1.0).unsqueeze(1)
    labelled = torch.count_nonzero(counts).to(dtype)
    # the kernel averages over the labelled items; the official code divides by all B
    return contrastive_loss(queries, all_keys, weights, temperature) * (labelled / queries.shape[0])
