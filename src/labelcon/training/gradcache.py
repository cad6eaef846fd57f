"""GradCache: contrastive batches larger than memory (Gao et al. 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup").

The objective needs every embedding of the batch at once, but the encoder's activations
need not be kept for all of them. Three passes give the exact full-batch gradient:

1. embed the batch chunk by chunk without a graph, remembering each chunk's RNG state
   (the CPU generator's, and on a GPU the device's own, which draws dropout there);
2. compute the objective on the full batch of (detached, grad-requiring) embeddings and
   back-propagate to them only: ``g = dL/dz``;
3. re-embed each chunk with a graph, replaying its RNG state so dropout draws the same
   masks, and back-propagate ``sum(z_chunk * g_chunk)`` into the encoder.

Memory then grows with the chunk size, not the batch size, while the gradient equals the
one of a single full-batch pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch

from labelcon.device import replayed_rng, rng_state


def chunk_device(chunk: dict[str, torch.Tensor]) -> torch.device:
    """The device a tokenised chunk sits on, where its forward pass draws dropout."""
    return next(iter(chunk.values())).device


def _forward_chunks(
    encode: Callable[[dict], torch.Tensor], chunks: Sequence[dict]
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Embed every chunk without a graph; keep the RNG state each chunk started from."""
    states, outputs = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(rng_state(chunk_device(chunk)))
            outputs.append(encode(chunk))
    return outputs, states


def cached_backward(
    encode: Callable[[dict], torch.Tensor],
    streams: Sequence[Sequence[dict]],
    loss_fn: Callable[..., torch.Tensor],
    no_sync: Callable[[], AbstractContextManager] | None = None,
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Back-propagate ``loss_fn(*embeddings)`` through ``encode`` chunk by chunk.

    ``streams`` holds one list of tokenised chunks per embedding tensor the loss takes
    (anchors, a second view, label texts, ...). Returns the detached loss.

    ``no_sync``: under ``DistributedDataParallel``, its ``no_sync`` method. Every chunk's
    backward but the last then only accumulates gradients, and the last one all-reduces
    the sum once, as DDP's gradient accumulation requires.

    ``scale``: multiplies the loss before its backward (a gradient scaler's ``scale``
    under float16 autocast), so every chunk's backward carries the scaled gradient.

    >>> enc = torch.nn.Linear(4, 3)
    >>> x = torch.randn(8, 4)
    >>> chunks = [{"x": x[:4]}, {"x": x[4:]}]
    >>> loss = cached_backward(lambda b: enc(b["x"]), [chunks], lambda z: z.pow(2).sum())
    >>> g = enc.weight.grad.clone(); enc.zero_grad(); enc(x).pow(2).sum().backward()
    >>> torch.allclose(g, enc.weight.grad)
    True
    """
    cached = [_forward_chunks(encode, chunks) for chunks in streams]
    leaves = [torch.cat(outputs).requires_grad_() for outputs, _ in cached]
    loss = loss_fn(*leaves)
    (loss if scale is None else scale(loss)).backward()
    replays = [
        (chunk, state, grad)
        for chunks, (outputs, states), leaf in zip(streams, cached, leaves)
        if leaf.grad is not None  # else the loss does not depend on this stream
        for chunk, state, grad in zip(chunks, states, leaf.grad.split([len(z) for z in outputs]))
    ]
    for i, (chunk, state, grad) in enumerate(replays):
        accumulate_only = no_sync is not None and i < len(replays) - 1
        with no_sync() if accumulate_only else nullcontext():
            with replayed_rng(state, chunk_device(chunk)):
                z = encode(chunk)
            z.backward(grad)
    return loss.detach()
