"""Pairwise target weights between items from their labels.

Labels come as int class ids of shape [B] (single-label) or as a {0,1} matrix [B, C]
(multi-label): dense bool/int/float, or a torch sparse COO/CSR tensor for large C.
Intersections are one matrix product ``Y @ Yk.T`` (sparse x sparse for sparse labels, so
no dense B x C is ever built) and set sizes are row sums.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from labelcon.objectives.checks import values_checked

RELATIONS = ("any", "all", "jaccard")


def is_sparse(labels: Tensor) -> bool:
    return labels.layout in (torch.sparse_coo, torch.sparse_csr)


def check_labels(labels: Tensor, n_items: int, name: str = "labels") -> Tensor:
    """Validate ``labels`` for ``n_items`` items and return them in a computable form:
    int64 [B] for class ids, float32 [B, C] (dense, or sparse COO coalesced) for 0/1 sets."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(labels).__name__}")  # noqa: TRY004
    if labels.dim() not in (1, 2):
        raise ValueError(
            f"{name} must be int class ids of shape [B] or a {{0,1}} matrix of shape [B, C]; "
            f"got shape {list(labels.shape)}"
        )
    if labels.shape[0] != n_items:
        raise ValueError(f"{name} must have one row per item ({n_items}); got {labels.shape[0]} rows")
    if labels.dim() == 1:
        if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
            raise ValueError(f"single-label {name} of shape [B] must be integer class ids; got dtype {labels.dtype}")
        return labels.long()
    if is_sparse(labels):
        coo = labels.to_sparse_coo().coalesce()
        values = coo.values()
        _check_binary(values, name)
        return coo.to(torch.float32)
    _check_binary(labels, name)
    return labels.float()


def _check_binary(values: Tensor, name: str) -> None:
    """All values in {0, 1}: within [0, 1] and summing to their count of non-zeros
    (two reductions, no temporary of the labels' size). Skipped inside
    :func:`labelcon.objectives.checks.trusted_inputs`."""
    if values.dtype == torch.bool or values.numel() == 0 or not values_checked():
        return
    if not values.is_complex():
        low, high = torch.aminmax(values)
        if low >= 0 and high <= 1 and values.sum(dtype=torch.float64) == torch.count_nonzero(values):
            return
    bad = values[(values != 0) & (values != 1)][:3].tolist() if not values.is_complex() else "complex"
    raise ValueError(f"multi-label {name} must hold only 0 and 1; got values such as {bad}")


def check_pair(labels: Tensor, key_labels: Tensor) -> None:
    """Anchor and key labels must be of the same kind (and the same label count)."""
    if labels.dim() != key_labels.dim() or (labels.dim() == 2 and labels.shape[1] != key_labels.shape[1]):
        raise ValueError(
            f"key_labels must match labels in kind and label count: labels {list(labels.shape)}, "
            f"key_labels {list(key_labels.shape)}"
        )


def set_sizes(labels: Tensor) -> Tensor:
    """|Y_i| as a float32 vector."""
    if is_sparse(labels):
        sizes = torch.zeros(labels.shape[0], device=labels.device)
        return sizes.index_add_(0, labels.indices()[0], labels.values())
    return labels.sum(dim=1)


#: Dense label matrices wider than this, and sparser than SPARSE_DENSITY, are multiplied
#: as sparse matrices: B * N * C dense work would dwarf the logits' B * N * D.
SPARSE_WIDTH = 512
SPARSE_DENSITY = 0.05


def pair_products(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b.T`` as a dense [B, N] matrix; sparse x sparse when either side is sparse
    (or both are wide and sparse in fact), so a sparse [B, C] operand is never
    densified. With 0/1 rows: |Y_i ∩ Yk_j|."""
    dense = not (is_sparse(a) or is_sparse(b))
    if dense and (a.shape[1] <= SPARSE_WIDTH or max(_density(a), _density(b)) > SPARSE_DENSITY):
        return a @ b.T
    a, b = (x if is_sparse(x) else x.to_sparse() for x in (a, b))
    with warnings.catch_warnings():  # torch routes COO products through CSR, "beta" support
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse.mm(a, b.t().coalesce()).to_dense()


def _density(x: Tensor) -> float:
    return float(torch.count_nonzero(x)) / max(x.numel(), 1)


def relation_weights(labels: Tensor, key_labels: Tensor, relation: str, dtype: torch.dtype = torch.float32) -> Tensor:
    """Target weights W [B, N] of ``dtype`` (self pairs not yet removed).

    Single-label ids: ``W_ij = 1[y_i = y_j]``. Multi-label sets, by ``relation``:
    ``"any"`` 1[|Y_i ∩ Y_j| > 0]; ``"all"`` 1[Y_i = Y_j, Y_i non-empty];
    ``"jaccard"`` |Y_i ∩ Y_j| / |Y_i ∪ Y_j| (0 when both are empty).

    >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
    >>> relation_weights(y.float(), y.float(), "jaccard")
    tensor([[1.0000, 0.5000, 0.0000],
            [0.5000, 1.0000, 0.0000],
            [0.0000, 0.0000, 1.0000]])
    """
    if labels.dim() == 1:  # ids renumbered 0..K-1, exact in float: a fast float == float
        _, ids = torch.unique(torch.cat([labels, key_labels]), return_inverse=True)
        ids = ids.to(dtype)
        out = torch.empty(labels.shape[0], key_labels.shape[0], dtype=dtype, device=labels.device)
        return torch.eq(ids[: labels.shape[0]].unsqueeze(1), ids[labels.shape[0] :].unsqueeze(0), out=out)
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {list(RELATIONS)}; got {relation!r}")
    # Counts are small integers, exact in float32; every step below works in place.
    inter = pair_products(labels, key_labels).to(dtype)
    if relation == "any":
        return inter.clamp_(max=1.0)
    size, key_size = set_sizes(labels).to(dtype).unsqueeze(1), set_sizes(key_labels).to(dtype).unsqueeze(0)
    if relation == "all":  # |Y_i| + |Y_j| - 2 |Y_i ∩ Y_j| = |Y_i Δ Y_j| = 0, Y_i non-empty
        difference = inter.mul_(-2.0).add_(size).add_(key_size)
        return difference.neg_().add_(1.0).clamp_(min=0.0).mul_(size > 0)
    union = torch.add(size, key_size).sub_(inter)
    return inter.div_(union.clamp_min_(1.0))
