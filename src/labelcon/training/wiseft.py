"""Weight-space ensembling of a fine-tuned encoder with its starting weights (WiSE-FT)."""

from __future__ import annotations

from typing import Any

import torch


def interpolate_weights(encoder: torch.nn.Module, initial: dict[str, Any], weight: float) -> None:
    """Move ``encoder``'s floating-point weights to ``(1 - weight) * initial + weight * trained``
    in place: weight-space ensembling of the fine-tuned and the starting model (WiSE-FT,
    Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"), which keeps more of what
    the starting model did well, such as general sentence similarity, for some task accuracy.

    >>> layer = torch.nn.Linear(1, 1, bias=False)
    >>> start = {k: torch.zeros_like(v) for k, v in layer.state_dict().items()}
    >>> with torch.no_grad(): _ = layer.weight.fill_(1.0)
    >>> interpolate_weights(layer, start, 0.25); layer.weight.item()
    0.25
    """
    trained = encoder.state_dict()
    encoder.load_state_dict(
        {
            key: initial[key].lerp(value, weight) if value.is_floating_point() else value
            for key, value in trained.items()
        }
    )
