"""Items against the embeddings of their label texts."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from labelcon.objectives.kernel import (
    MASKED,
    check_embeddings,
    check_temperature,
    compute_dtype,
    contrastive_loss,
    normalise,
)
from labelcon.objectives.relations import check_labels, is_sparse


def label_contrast(
    embeddings: Tensor, label_embeddings: Tensor, labels: Tensor, temperature: float = 0.05, decoupled: bool = False
) -> Tensor:
    """Label-text contrast: item i against the C label embeddings ``e_c`` [C, D], with its
    own labels as targets::

        loss_i = -(1/|Y_i|) sum_{c in Y_i} log( exp(s(z_i, e_c) / tau) / sum_{c'} exp(s(z_i, e_c') / tau) )

    averaged over items with at least one label (0, still on the graph, when none has).
    ``labels`` is a {0,1} matrix [B, C], dense or torch sparse. This is the multi-positive
    form of the dual-encoder objectives that match texts to label descriptions (as in
    CLIP's text-to-class zero-shot head, Radford et al. 2021).

    ``decoupled=True`` is DEXML's decoupled softmax (Gupta et al., "Dual-Encoders for
    Extreme Multi-Label Classification", ICLR 2024): each positive competes with the
    item's negatives only, its other positives removed from its denominator, so items
    with many labels are not pushed to spread their probability over them::

        loss_i = -(1/|Y_i|) sum_{c in Y_i} log( exp(s_ic / tau)
                                                / (exp(s_ic / tau) + sum_{c' not in Y_i} exp(s_ic' / tau)) )

    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> e = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.0]])
    >>> round(label_contrast(z, e, torch.tensor([[1, 0, 0], [1, 1, 0]]), temperature=0.5).item(), 4)
    0.6653
    """
    check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, embeddings.shape[0])
    if labels.dim() != 2 or labels.shape[1] != label_embeddings.shape[0]:
        raise ValueError(
            f"labels must be a {{0,1}} matrix [B, C] with C = {label_embeddings.shape[0]} label embeddings; "
            f"got shape {list(labels.shape)}"
        )
    targets = labels.to_dense() if is_sparse(labels) else labels
    if decoupled:
        return _decoupled_label_contrast(embeddings, label_embeddings, targets, temperature)
    targets = targets / targets.sum(dim=1, keepdim=True).clamp_min(1.0)
    return contrastive_loss(embeddings, label_embeddings, targets, temperature)


def _decoupled_label_contrast(
    embeddings: Tensor, label_embeddings: Tensor, targets: Tensor, temperature: float
) -> Tensor:
    """The ``decoupled`` loss of :func:`label_contrast` on dense {0,1} ``targets`` [B, C]."""
    dtype = compute_dtype(embeddings, label_embeddings)
    z, e = normalise(embeddings, dtype, "embeddings"), normalise(label_embeddings, dtype, "label_embeddings")
    logits = z @ e.T / check_temperature(temperature)
    positive = targets.to(torch.bool)
    negatives = torch.logsumexp(logits.masked_fill(positive, MASKED), dim=1, keepdim=True)
    per_positive = torch.logaddexp(logits, negatives) - logits  # -log p of each positive against the negatives
    held = positive.sum(dim=1)
    per_item = (per_positive * positive).sum(dim=1) / held.clamp_min(1)
    labelled = (held > 0).to(per_item.dtype)
    return (per_item * labelled).sum() / labelled.sum().clamp_min(1.0)


def sample_label_columns(labels: Tensor, negatives: int, rng: np.random.Generator) -> Tensor | None:
    """The label set S of a sampled-softmax step as sorted column ids [K]: every label that
    a row of ``labels`` [B, C] holds (stored entries when sparse), plus ``negatives`` of
    the other labels drawn uniformly without replacement from ``rng``. None when S would be
    every label, that is when C <= |held| + ``negatives``.

    >>> y = torch.tensor([[0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]])
    >>> columns = sample_label_columns(y, 2, np.random.default_rng(0))
    >>> len(columns), {1, 3} <= set(columns.tolist())
    (4, True)
    >>> sample_label_columns(y, 4, np.random.default_rng(0)) is None
    True
    """
    if is_sparse(labels):
        held = labels.to_sparse_coo().coalesce().indices()[1].unique()
    else:
        held = (labels != 0).any(dim=0).nonzero().squeeze(1)
    if labels.shape[1] <= held.numel() + negatives:
        return None
    held = held.cpu().numpy()
    rank = rng.choice(labels.shape[1] - len(held), size=negatives, replace=False)
    # the r-th label not held is r plus the number of held labels at or before it
    others = rank + np.searchsorted(held - np.arange(len(held)), rank, side="right")
    return torch.from_numpy(np.union1d(held, others)).to(labels.device)


def select_label_columns(labels: Tensor, columns: Tensor) -> Tensor:
    """``labels[:, columns]`` for sorted ``columns`` that include every held label (as from
    :func:`sample_label_columns`). Sparse labels stay sparse (COO, their column ids
    renumbered), so no dense [B, C] matrix is made.

    >>> y = torch.tensor([[0.0, 1, 0, 1], [1, 0, 0, 0]])
    >>> select_label_columns(y.to_sparse_csr(), torch.tensor([0, 1, 3])).to_dense()
    tensor([[0., 1., 1.],
            [1., 0., 0.]])
    """
    if not is_sparse(labels):
        return labels.index_select(1, columns)
    coo = labels.to_sparse_coo().coalesce()
    rows, cols = coo.indices()
    indices = torch.stack([rows, torch.searchsorted(columns, cols)])  # order kept: still coalesced
    shape = (labels.shape[0], columns.numel())
    return torch.sparse_coo_tensor(indices, coo.values(), shape, is_coalesced=True, check_invariants=False)
