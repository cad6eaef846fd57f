"""A FIFO memory of past keys (MoCo, He et al. 2020; ESimCSE, Wu et al. 2022) and the
momentum update of a key encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from labelcon.objectives.relations import check_labels, is_sparse


class MomentumQueue:
    """A ring buffer of the last ``size`` keys [dim], detached, with their labels, held on
    ``device`` (where the keys come from; :meth:`load_state_dict` brings saved ones there).

    Labels are optional (ESimCSE-style negatives need none) and, once given, required on
    every enqueue. They are stored as given: int class ids [n], a dense {0,1} matrix
    [n, C] (kept as bool), or a sparse {0,1} matrix kept as coordinates so a large label
    space never becomes dense. ``keys`` and ``labels`` return the filled part, row r of one
    matching row r of the other (ring order, not arrival order; the objectives do not care).

    >>> q = MomentumQueue(size=3, dim=2)
    >>> q.enqueue(torch.ones(2, 2), torch.tensor([[1, 0], [0, 1]]))
    >>> q.enqueue(torch.zeros(2, 2), torch.tensor([[1, 1], [0, 0]]))
    >>> len(q), q.keys[:, 0].tolist(), q.labels.int().tolist()
    (3, [0.0, 1.0, 0.0], [[0, 0], [0, 1], [1, 1]])
    """

    def __init__(self, size: int, dim: int, device: str | torch.device = "cpu") -> None:
        if size < 1 or dim < 1:
            raise ValueError(f"size and dim must be >= 1; got size={size}, dim={dim}")
        self.size, self.dim = size, dim
        self.device = torch.device(device)
        self._keys = torch.zeros(size, dim, device=self.device)
        self._labels: Tensor | None = None  # [size] ids or [size, C] bool
        self._coords: Tensor | None = None  # sparse labels: [2, nnz] (slot, label)
        self._kind: str | None = None  # None (no labels yet), "ids", "dense", "sparse" or "none"
        self._n_labels = 0
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def keys(self) -> Tensor:
        return self._keys[: self._count]

    @property
    def labels(self) -> Tensor | None:
        if self._coords is not None:
            values = torch.ones(self._coords.shape[1], device=self._coords.device)
            shape = (self._count, self._n_labels)
            return torch.sparse_coo_tensor(self._coords, values, shape, check_invariants=False).coalesce()
        return None if self._labels is None else self._labels[: self._count]

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor | None = None) -> None:
        """Append ``keys`` [n, dim] (and their ``labels``), dropping the oldest beyond size."""
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape [n, {self.dim}]; got {list(keys.shape)}")
        if labels is not None:
            labels = check_labels(labels, keys.shape[0])
        self._check_kind(labels)
        keys = keys.detach()[-self.size :]
        n = keys.shape[0]
        slots = (self._next + torch.arange(n)) % self.size
        self._keys = self._keys.to(device=keys.device, dtype=torch.promote_types(self._keys.dtype, keys.dtype))
        self._keys[slots.to(keys.device)] = keys
        if labels is not None:
            self._store_labels(labels, slots, n)
        self._next = (self._next + n) % self.size
        self._count = min(self._count + n, self.size)

    def state_dict(self) -> dict[str, Any]:
        """The queue as tensors and plain values (for checkpoints read with ``weights_only``).

        >>> q = MomentumQueue(size=3, dim=2)
        >>> q.enqueue(torch.ones(2, 2), torch.tensor([1, 0]))
        >>> r = MomentumQueue(size=3, dim=2)
        >>> r.load_state_dict(q.state_dict())
        >>> len(r), r.labels.tolist()
        (2, [1, 0])
        """
        return {
            "size": self.size,
            "dim": self.dim,
            "keys": self._keys,
            "labels": self._labels,
            "coords": self._coords,
            "kind": self._kind,
            "n_labels": self._n_labels,
            "next": self._next,
            "count": self._count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave, into a queue of the same size and dim, on
        this queue's device (the saved tensors may come from another)."""
        if (state["size"], state["dim"]) != (self.size, self.dim):
            raise ValueError(
                f"the saved queue has size={state['size']} and dim={state['dim']}; "
                f"this one has size={self.size} and dim={self.dim}"
            )
        self._keys, self._labels, self._coords = (
            None if state[name] is None else state[name].to(self.device) for name in ("keys", "labels", "coords")
        )
        self._kind, self._n_labels = state["kind"], state["n_labels"]
        self._next, self._count = state["next"], state["count"]

    def _check_kind(self, labels: Tensor | None) -> None:
        """Every enqueue gives the same kind of labels (or none, always)."""
        kind = "none" if labels is None else "ids" if labels.dim() == 1 else "sparse" if is_sparse(labels) else "dense"
        if self._kind is not None and kind != self._kind:
            raise ValueError(
                f"labels must be of one kind on every enqueue: the queue holds {self._kind}, this batch gives {kind}"
            )
        width = labels.shape[1] if labels is not None and labels.dim() == 2 else 0
        if self._kind is not None and width != self._n_labels:
            raise ValueError(f"labels must keep the same label count {self._n_labels}; got {width}")
        self._kind, self._n_labels = kind, width

    def _store_labels(self, labels: Tensor, slots: Tensor, n: int) -> None:
        labels = labels[-n:] if not is_sparse(labels) else _last_rows(labels, n)
        if is_sparse(labels):
            ones = labels.indices()[:, labels.values() == 1]
            new = torch.stack([slots.to(ones.device)[ones[0]], ones[1]])
            if self._coords is None:
                self._coords = new
            else:
                kept = ~torch.isin(self._coords[0], slots.to(self._coords.device))
                self._coords = torch.cat([self._coords[:, kept], new], dim=1)
            return
        if self._labels is None:
            shape = (self.size,) if labels.dim() == 1 else (self.size, self._n_labels)
            dtype = torch.long if labels.dim() == 1 else torch.bool
            self._labels = torch.zeros(shape, dtype=dtype, device=labels.device)
        self._labels[slots.to(labels.device)] = labels.to(self._labels.dtype)


def _last_rows(labels: Tensor, n: int) -> Tensor:
    """The last ``n`` rows of a coalesced sparse COO matrix."""
    start = labels.shape[0] - n
    keep = labels.indices()[0] >= start
    indices = labels.indices()[:, keep] - torch.tensor([[start], [0]], device=labels.device)
    shape = (n, labels.shape[1])
    return torch.sparse_coo_tensor(indices, labels.values()[keep], shape, check_invariants=False).coalesce()


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float) -> None:
    """MoCo's key-encoder update (He et al. 2020): ``target <- m * target + (1 - m) * online``
    for every parameter the online model trains; buffers (e.g. batch-norm statistics) are
    copied. Parameters it does not train (``requires_grad`` False: frozen layers, see
    ``train_layers``) are left alone: the target is a copy, so they agree already, and a
    frozen layer then stays bit-identical instead of drifting by rounding every step.

    >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> momentum_update(a, b, m=0.0)
    >>> torch.equal(a.weight, b.weight)
    True
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum m must be in [0, 1]; got {m!r}")
    online_params, target_params = dict(online.named_parameters()), dict(target.named_parameters())
    if online_params.keys() != target_params.keys():
        raise ValueError("online and target must have the same parameters (the target is a copy of the online model)")
    for name, param in target_params.items():
        if online_params[name].requires_grad:
            param.mul_(m).add_(online_params[name].detach(), alpha=1.0 - m)
    online_buffers = dict(online.named_buffers())
    for name, buffer in target.named_buffers():
        buffer.copy_(online_buffers[name])
