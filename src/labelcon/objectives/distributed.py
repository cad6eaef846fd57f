"""Keys from every process of a ``torch.distributed`` job.

Each process computes the loss of its own anchors against the global key set: its own
batch plus ``gather_others(...)`` as extra keys. The all-gather's backward sums, over all
processes, the gradients that reach each process's slice, so with DDP's gradient
averaging (and the same number of anchors per process) the update equals the update on
the concatenated global batch::

    loss = supcon(z, y, keys=gather_others(z), key_labels=gather_others(y))

Without an initialised process group (or with one process) the batch is the global batch:
``gather_with_grad`` is the identity and ``gather_others`` returns an empty slice.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from labelcon.objectives.relations import is_sparse


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(t: Tensor) -> Tensor:
    """All processes' ``t`` concatenated along dim 0 in rank order, gradients flowing back
    to each process's own slice. Batches may differ in size between processes. Sparse
    {0,1} label matrices are gathered as coordinates (no gradient, never densified).
    Identity when ``torch.distributed`` is not initialised.

    >>> t = torch.arange(3.0)
    >>> torch.equal(gather_with_grad(t), t)
    True
    """
    return torch.cat(_gather(t)) if active() else t


def gather_others(t: Tensor) -> Tensor:
    """Like :func:`gather_with_grad` but without this process's own rows: the extra keys
    (``keys=`` / ``key_labels=``) that complete a process's batch to the global batch.

    >>> gather_others(torch.ones(2, 3)).shape
    torch.Size([0, 3])
    """
    if not active():
        return t[:0]
    parts = _gather(t)
    return torch.cat(parts[: dist.get_rank()] + parts[dist.get_rank() + 1 :])


def _gather(t: Tensor) -> list[Tensor]:
    """Every process's ``t``, in rank order."""
    if is_sparse(t):
        return _gather_sparse(t)
    sizes = _all_gather_plain(torch.tensor([t.shape[0]], device=t.device))
    longest = int(max(sizes))
    padded = torch.cat([t, t.new_zeros((longest - t.shape[0], *t.shape[1:]))])
    parts = _AllGather.apply(padded) if t.requires_grad else _all_gather_plain(padded)
    return [part[: int(n)] for part, n in zip(parts, sizes)]


def _all_gather_plain(t: Tensor) -> list[Tensor]:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return parts


class _AllGather(torch.autograd.Function):
    """Every process's ``t`` (all of one shape), in rank order; the backward gives each
    process the sum over processes of the gradients that reach its own part.

    torch's differentiable all-gathers are deprecated or private in recent releases, so the
    forward is the plain ``all_gather`` and the backward an ``all_reduce`` (every backend,
    gloo included, has both) of the stacked gradients, from which each keeps its part.
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> tuple[Tensor, ...]:
        return tuple(_all_gather_plain(t))

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:
        total = torch.stack(grads)
        dist.all_reduce(total)
        return total[dist.get_rank()]


def _gather_sparse(t: Tensor) -> list[Tensor]:
    """Sparse [n, C] matrices as (row, column, value) triples, padded to equal length."""
    coo = t.to_sparse_coo().coalesce()
    triples = torch.cat([coo.indices().T, coo.values().unsqueeze(1)], dim=1).double()
    counts = _all_gather_plain(torch.tensor([coo.shape[0]], device=t.device))
    out = []
    for part, n in zip(_gather(triples), counts):
        indices = part[:, :2].T.long()
        values = part[:, 2].to(coo.values().dtype)
        out.append(torch.sparse_coo_tensor(indices, values, (int(n), t.shape[1]), check_invariants=False).coalesce())
    return out
