"""``build_encoder``: one string names the encoder to train.

- ``"minilm"``: all-MiniLM-L6-v2, bundled, offline (:class:`TransformerEncoder`);
- ``"mpnet"``: all-mpnet-base-v2 from ``labelcon[mpnet]``, offline (:class:`TransformerEncoder`);
- ``"static"``: :class:`StaticEncoder` with a tokenizer trained on ``train_texts``;
  pass ``teacher="minilm"`` (a spec or an :class:`Encoder`) to distill its start from a
  transformer (Model2Vec), the fast recipe;
- ``"mlp"``: :class:`MLPEncoder` over feature rows; ``input_dim`` is taken from
  ``train_texts`` (an ``[N, input_dim]`` array) unless given;
- anything else: a Hugging Face model folder or Hub name (:class:`TransformerEncoder`).

>>> enc = build_encoder("static", train_texts=["red apples", "green pears"] * 5, dim=8, vocab_size=100)
>>> enc.dim
8
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from labelcon.device import resolve_device
from labelcon.encoders.base import Encoder
from labelcon.encoders.mlp import MLPEncoder
from labelcon.encoders.static import StaticEncoder
from labelcon.encoders.transformer import TransformerEncoder

#: Tokens per text that long texts are embedded with after training (:func:`resolve_encode_length`).
LONG_TEXT_TOKENS = 256


def resolve_max_length(setting: int | str, texts: Sequence[str] | np.ndarray | None, seed: int = 0) -> int:
    """``setting`` when it is a number; for ``"auto"``, 64 tokens, or 128 when the 90th
    percentile of the texts' estimated token counts (1.3 word pieces per whitespace word +
    2 special tokens, on a seeded sample of 1,000) is above 64. Inputs that are not texts
    get 64.

    Why not more for long texts: on a CPU a MiniLM training step costs far more than
    linearly in the length. Measured here (``python bench/bench_max_length.py``: 2 cores,
    bfloat16, Reuters articles, batch 64): 30 items/s at 64 tokens, 14 at 128, 3.4 at 256,
    so within a training budget 256 tokens would see a ninth of the items 64 tokens see.
    Give ``max_length`` explicitly (with ``mini_batch_size`` for memory) when the whole
    text matters and time does not.

    >>> resolve_max_length("auto", ["a short text"] * 10)
    64
    >>> resolve_max_length("auto", [" ".join(["word"] * 150)] * 10)
    128
    """
    if setting != "auto":
        return int(setting)
    tokens = _token_percentile(texts, seed)
    return 64 if tokens is None or tokens <= 64 else 128


def resolve_encode_length(
    setting: int | str, texts: Sequence[str] | np.ndarray | None, train_length: int, seed: int = 0
) -> int | None:
    """Tokens per text when embedding for the head and for prediction, after training
    (None: the inputs are not texts). ``setting`` when it is a number; for ``"auto"``, the
    training length, raised to 256 when the 90th percentile of the texts' estimated token
    counts (as in :func:`resolve_max_length`) is above it.

    Embedding is far cheaper than a training step (no backward pass, no second view), so
    long texts can be read further than they were trained on; the mean-pooled encoder
    carries over. Measured on Reuters (``docs/benchmarks-history.md``, "Reuters-21578"): the same
    encoder, trained at 128 tokens, embedded at 256 gave dev-calibrated test macro-AP
    0.655 against 0.638, for twice the embedding time.

    >>> resolve_encode_length("auto", [" ".join(["word"] * 300)] * 10, 128)
    256
    >>> resolve_encode_length("auto", ["a short text"] * 10, 64)
    64
    """
    tokens = _token_percentile(texts, seed)
    if tokens is None:
        return None
    if setting != "auto":
        return int(setting)
    return train_length if tokens <= train_length else max(train_length, LONG_TEXT_TOKENS)


def are_texts(inputs: Sequence[str] | np.ndarray | None) -> bool:
    """Whether ``inputs`` are texts (a non-empty sequence of strings), not feature vectors.

    >>> are_texts(["a text"]), are_texts(np.zeros((2, 3))), are_texts([])
    (True, False, False)
    """
    return inputs is not None and len(inputs) > 0 and isinstance(inputs[0], str)


def _token_percentile(texts: Sequence[str] | np.ndarray | None, seed: int) -> float | None:
    """90th percentile of estimated token counts (1.3 word pieces per whitespace word + 2
    special tokens) on a seeded sample of 1,000 texts; None when the inputs are not texts."""
    if not are_texts(texts):
        return None
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(texts), size=min(1000, len(texts)), replace=False)
    return float(np.percentile([1.3 * len(texts[i].split()) + 2 for i in sample], 90))


def build_encoder(
    spec: str,
    *,
    train_texts: Sequence[str] | None = None,
    max_length: int = 128,
    projection_dim: int | None = None,
    seed: int = 0,
    precision: str = "auto",
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> Encoder:
    """Build a new encoder from ``spec`` on ``device`` (a name for
    :func:`labelcon.device.resolve_device`); extra keyword arguments go to its constructor.

    ``precision`` applies to transformer encoders (see :class:`TransformerEncoder`); the
    static and MLP encoders compute in float32 and accept only ``"auto"`` or ``"float32"``.
    A static encoder's ``teacher`` embeds its vocabulary on ``device`` too.
    """
    device = resolve_device(device)
    encoder = _build(spec, train_texts, max_length, projection_dim, seed, precision, device, **kwargs)
    return encoder.to(device)


def _build(
    spec: str,
    train_texts: Sequence[str] | None,
    max_length: int,
    projection_dim: int | None,
    seed: int,
    precision: str,
    device: torch.device,
    **kwargs: Any,
) -> Encoder:
    """The encoder of :func:`build_encoder`, on the CPU (its teacher on ``device``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"encoder spec must be a non-empty str: 'minilm', 'static', 'mlp' or a path, got {spec!r}")
    if spec in ("static", "mlp") and precision not in ("auto", "float32"):
        raise ValueError(
            f"precision={precision!r} applies to transformer encoders; the {spec!r} encoder runs in float32"
        )
    if spec == "static":
        if train_texts is None:
            raise ValueError("the 'static' encoder trains its tokenizer on your texts: pass train_texts=")
        teacher = kwargs.pop("teacher", None)
        settings = {"max_length": max_length, "projection_dim": projection_dim, "seed": seed, **kwargs}
        if teacher is None:
            return StaticEncoder.from_texts(train_texts, **settings)
        if isinstance(teacher, str):
            teacher = build_encoder(teacher, seed=seed, device=device)
        return StaticEncoder.distill_from(teacher, train_texts, **settings)
    if spec == "mlp":
        if "input_dim" not in kwargs:
            if train_texts is None:
                raise ValueError("the 'mlp' encoder needs input_dim= or train_texts= (an [N, input_dim] array)")
            kwargs["input_dim"] = np.asarray(train_texts).shape[-1]
        if projection_dim is not None:
            if kwargs.setdefault("output_dim", projection_dim) != projection_dim:
                raise ValueError(f"conflicting output_dim={kwargs['output_dim']} and projection_dim={projection_dim}")
        return MLPEncoder(seed=seed, **kwargs)
    return TransformerEncoder(
        spec, max_length=max_length, projection_dim=projection_dim, seed=seed, precision=precision, **kwargs
    )
