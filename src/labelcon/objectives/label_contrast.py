"""Items against the embeddings of their label texts."""

from __future__ import annotations

from torch import Tensor

from labelcon.objectives.kernel import check_embeddings, contrastive_loss
from labelcon.objectives.relations import check_labels, is_sparse


def label_contrast(
    embeddings: Tensor, label_embeddings: Tensor, labels: Tensor, temperature: float = 0.05
) -> Tensor:
    """Label-text contrast: item i against the C label embeddings ``e_c`` [C, D], with its
    own labels as targets::

        loss_i = -(1/|Y_i|) sum_{c in Y_i} log( exp(s(z_i, e_c) / tau) / sum_{c'} exp(s(z_i, e_c') / tau) )

    averaged over items with at least one label (0, still on the graph, when none has).
    ``labels`` is a {0,1} matrix [B, C], dense or torch sparse. This is the multi-positive
    form of the dual-encoder objectives that match texts to label descriptions (as in
    CLIP's text-to-class zero-shot head, Radford et al. 2021).

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
    targets = targets / targets.sum(dim=1, keepdim=True).clamp_min(1.0)
    return contrastive_loss(embeddings, label_embeddings, targets, temperature)
