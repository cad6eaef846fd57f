"""Fine-tune a transformer's top layers only, the frozen layers' output cached per text.

Why: on a CPU a training step of a larger encoder (mpnet: 12 layers) costs a forward and
a backward pass through every layer, so a time budget sees few steps. With
``train_layers=k`` (``--train-layers k``) the embeddings and the layers below the top
``k`` are frozen; their output for a text never changes, so it is computed once, kept,
and each later step runs the top ``k`` layers (forward and backward) alone.

What this module gives :class:`~labelcon.encoders.TransformerEncoder`:

- :func:`freeze`: every weight of the Hugging Face model but the top ``k`` layers stops
  requiring gradients (the optimizer and DDP skip them): the embeddings, the lower
  layers, the pooler (labelcon pools the token states itself) and weights that the
  lower layers read too (MPNet's relative position bias), so the cached outputs stay right;
- :func:`lower_part` and :func:`top_part`: the model cut below and above the top ``k``
  layers. Both are shallow copies that share the model's modules and call the model's own
  ``forward``, so the attention mask is built as the installed transformers builds it
  (sdpa or eager); the top part takes the frozen output as ``inputs_embeds``. Models laid
  out as ``embeddings`` + ``encoder.layer`` (BERT, RoBERTa, MPNet, ...) are supported;
- :class:`LayerCache`: the frozen output per text, kept on the device that computed it
  (where the training step runs: no copy to the host and back), within a bound.

>>> cache = LayerCache(limit_mb=0)
>>> rows = cache.rows(["a", "b"], tag=64, compute=lambda texts: [torch.ones(2, 4) for _ in texts])
>>> [tuple(row.shape) for row in rows], len(cache)
([(2, 4), (2, 4)], 0)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

#: The batch key (from ``tokenize`` in train mode) of the frozen layers' output, ``[B, L, hidden]``.
STATES = "frozen_states"
#: The dtype the cache keeps the frozen output in: half the memory of float32, relative error ~5e-4.
CACHE_DTYPE = torch.float16


def layers_of(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer layers of a Hugging Face model laid out as ``embeddings`` + ``encoder.layer``."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not hasattr(model, "embeddings"):
        raise ValueError(
            f"train_layers (--train-layers) needs a model made of embeddings and encoder.layer (BERT, RoBERTa, "
            f"MPNet, ...); {type(model).__name__} is not"
        )
    return layers


def freeze(model: torch.nn.Module, train_layers: int) -> None:
    """Stop gradients for every weight of ``model`` but those of its top ``train_layers`` layers."""
    model.requires_grad_(False)
    layers_of(model)[-train_layers:].requires_grad_(True)


class _Given(torch.nn.Module):
    """Embeddings that hand on the ``inputs_embeds`` they are given: the cached frozen output."""

    def forward(self, inputs_embeds: torch.Tensor, **_: Any) -> torch.Tensor:
        return inputs_embeds


def _with_modules(module: torch.nn.Module, **replaced: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of ``module`` sharing its weights and submodules but for ``replaced``."""
    clone = copy.copy(module)
    clone._modules = {**module._modules, **replaced}
    return clone


def lower_part(model: torch.nn.Module, train_layers: int) -> torch.nn.Module:
    """``model`` without its top ``train_layers`` layers; called like the model, its
    ``last_hidden_state`` is the frozen layers' output."""
    layers = layers_of(model)
    lower = torch.nn.ModuleList(layers[: len(layers) - train_layers])
    return _with_modules(model, encoder=_with_modules(model.encoder, layer=lower))


def top_part(model: torch.nn.Module, train_layers: int) -> torch.nn.Module:
    """The top ``train_layers`` layers of ``model``, called with ``inputs_embeds`` (the
    frozen layers' output) and ``attention_mask``."""
    top = torch.nn.ModuleList(layers_of(model)[-train_layers:])
    return _with_modules(model, embeddings=_Given(), encoder=_with_modules(model.encoder, layer=top))


class LayerCache:
    """The frozen layers' output per text (``[tokens, hidden]``, unpadded, in
    :data:`CACHE_DTYPE`), on the device that computed it (the encoder's: a GPU's memory
    when the encoder trains there), up to ``limit_mb``; texts beyond it are recomputed
    whenever they come. ``tag`` names the settings the outputs depend on (the
    encoder's ``max_length`` and precision): another tag empties the cache.

    A deep copy of the encoder (the trainer's momentum encoder) starts an empty cache of
    its own rather than copying this one.
    """

    def __init__(self, limit_mb: float) -> None:
        self.limit_mb = limit_mb
        self._rows: dict[str, torch.Tensor] = {}
        self._bytes = 0
        self._tag: Hashable = None

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._rows, self._bytes = {}, 0

    def __deepcopy__(self, memo: dict) -> LayerCache:
        return LayerCache(self.limit_mb)

    def rows(
        self, texts: Sequence[str], tag: Hashable, compute: Callable[[list[str]], list[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """Each text's rows, ``compute``-d (in one call, for the texts not kept) when missing."""
        if tag != self._tag:
            self.clear()
            self._tag = tag
        missing = list(dict.fromkeys(text for text in texts if text not in self._rows))
        found = dict(zip(missing, (row.to(CACHE_DTYPE) for row in compute(missing)))) if missing else {}
        for text, row in found.items():
            size = row.numel() * row.element_size()
            if self._bytes + size <= self.limit_mb * 2**20:
                self._rows[text] = row
                self._bytes += size
        return [self._rows[text] if text in self._rows else found[text] for text in texts]
