"""CoSENT: a ranking loss over the cosine similarities of scored pairs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from labelcon.objectives.kernel import check_embeddings, compute_dtype, normalise


def cosent(first: Tensor, second: Tensor, scores: Tensor, scale: float = 20.0) -> Tensor:
    """CoSENT (Su 2022, "CoSENT: a more efficient sentence vector scheme than
    Sentence-BERT"; the ranking loss of AnglE, Li & Li 2023, without its angle term)
    on pairs ``(first_i, second_i)`` with gold ``scores_i``: every two pairs whose gold
    scores are ordered, ``y_i > y_j``, should have their cosines ordered the same way::

        loss = log( 1 + sum_{(i, j) : y_i > y_j} exp( scale * (cos_j - cos_i) ) )

    with ``cos_i = cos(first_i, second_i)`` and ``scale = 1 / temperature`` (20 in the
    paper and in sentence-transformers). Pairs with equal scores are not compared; a batch
    with no ordered pair gives log 1 = 0, still connected to the graph. This is
    sentence-transformers' ``CoSENTLoss`` with its default ``pairwise_cos_sim``.

    CoSENT ranks pairs against pairs, not keys against an anchor, so it is not a form of
    the contrastive kernel: one log-sum-exp over the ordered pairs of the batch (plus the
    constant 1), computed here as a [B, B] matrix.

    >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> round(cosent(a, b, torch.tensor([1.0, 0.0])).item(), 6), round(cosent(a, b, torch.tensor([0.0, 1.0])).item(), 4)
    (0.0, 20.0)
    """
    check_embeddings(first, "first")
    check_embeddings(second, "second")
    if first.shape != second.shape:
        raise ValueError(
            f"first and second must be paired, of the same shape; got {list(first.shape)} and {list(second.shape)}"
        )
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != first.shape[0]:
        got = list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a tensor [B] with one gold score per pair (B = {first.shape[0]}); got {got}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale (1 / temperature) must be a finite number > 0; got {scale!r}")
    dtype = compute_dtype(first, second)
    cosines = (normalise(first, dtype, "first") * normalise(second, dtype, "second")).sum(dim=1) * scale
    ordered = scores.unsqueeze(1) > scores.unsqueeze(0)  # [i, j]: y_i > y_j
    differences = (cosines.unsqueeze(0) - cosines.unsqueeze(1))[ordered]  # cos_j - cos_i
    return torch.logsumexp(F.pad(differences, (1, 0)), dim=0)
