"""Long texts as windows: one text, several windows of the encoder's length, one vector.

A text longer than the encoder's ``max_length`` tokens is cut by the fast tokenizer's own
overflow support (``return_overflowing_tokens`` with ``stride`` tokens shared by
neighbouring windows, ``overflow_to_sample_mapping`` naming each window's owner,
``return_offsets_mapping`` giving its character span), at most ``max_windows`` windows per
text, and the windows' embeddings are pooled into the text's by a rule:

- ``first``: the first window alone, i.e. the text truncated, as every encoder did before
  windows (the tokenizer is called as then, so the vectors are bit-identical);
- ``mean``: :math:`z = \\frac{1}{W}\\sum_{w=1}^{W} z_w`, the average of the windows'
  embeddings (as hierarchical BERT pools segment vectors, Chalkidis et al., LexGLUE 2022);
- ``max``: :math:`z_d = \\max_w z_{w,d}`, feature-wise (PLM-ICD's max over chunks,
  Huang et al. 2022).

``auto`` (:func:`resolve_windows`) turns ``mean`` on when at least
:data:`LONG_SHARE` of the training texts are estimated to exceed the window, and keeps
``first`` otherwise, so data sets of short texts run exactly the path of before.

>>> import torch
>>> pool_windows(torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]]), torch.tensor([0, 0, 1]), 2, "mean")
tensor([[2., 1.],
        [5., 5.]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

WindowRule = Literal["first", "mean", "max"]
WINDOW_RULES = ("first", "mean", "max")
#: Batch key of the owner (text index within the batch) of each window.
OWNER = "window_owner"
#: The share of training texts longer than the window from which ``auto`` reads windows.
LONG_SHARE = 0.10


@dataclass(frozen=True)
class Window:
    """One window of a text: its owner (the text's index), its rank among the text's
    windows, and the characters ``text[start:end]`` its tokens cover."""

    owner: int
    rank: int
    start: int
    end: int


class WindowEmbeddings(NamedTuple):
    """What :meth:`labelcon.encoders.Encoder.encode_windows` gives: each text's embedding
    ``items`` [n, dim] (as ``encode`` gives it), the embedding of each window ``windows``
    [W, dim], and each window's :class:`Window` ``spans`` (row for row, grouped by owner
    in text order, by rank within a text)."""

    items: np.ndarray
    windows: np.ndarray
    spans: list[Window]


def pool_windows(z: torch.Tensor, owner: torch.Tensor, n: int, rule: Literal["mean", "max"]) -> torch.Tensor:
    """``[n, dim]``: the rows of ``z`` (``[W, dim]``, one per window) pooled per owner
    (``owner[w]`` in ``range(n)``, every owner with at least one window) by ``rule``;
    differentiable, so a training step's gradient reaches every window."""
    index = owner.to(z.device).unsqueeze(1).expand_as(z)
    reduce = {"mean": "mean", "max": "amax"}[rule]
    return z.new_zeros(n, z.shape[1]).scatter_reduce(0, index, z, reduce=reduce, include_self=False)


def split_windows(
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    stride: int,
    max_windows: int | None,
    add_special_tokens: bool = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The fast tokenizer's windows of ``texts``: its padded output (with
    ``overflow_to_sample_mapping``, each window's owner, and ``offset_mapping``), at most
    ``max_windows`` windows per text (None: all), and each window's rank within its text."""
    room = max_length - tokenizer.num_special_tokens_to_add() if add_special_tokens else max_length
    if stride >= room:
        raise ValueError(
            f"window_stride (--window-stride) is {stride} tokens, but windows of max_length {max_length} "
            f"hold {room} tokens of text: give a stride below that"
        )
    encoded = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        add_special_tokens=add_special_tokens,
        return_tensors="pt",
    )
    owner = encoded["overflow_to_sample_mapping"]
    starts = torch.searchsorted(owner, torch.arange(len(texts)))  # windows come grouped by owner, in order
    rank = torch.arange(len(owner)) - starts[owner]
    keep = rank < (len(owner) if max_windows is None else max_windows)
    return {key: value[keep] for key, value in encoded.items()}, rank[keep]


def window_spans_of(encoded: dict[str, torch.Tensor], rank: torch.Tensor) -> list[Window]:
    """The :class:`Window` of each row of :func:`split_windows`' output ``encoded`` (with
    its ``overflow_to_sample_mapping`` and ``offset_mapping``) and ``rank``: the characters
    from its first text token's start to its last one's end (special tokens and padding
    cover none)."""
    spans = []
    for owner, r, offsets, mask in zip(
        encoded["overflow_to_sample_mapping"].tolist(),
        rank.tolist(),
        encoded["offset_mapping"],
        encoded["attention_mask"].bool(),
        strict=True,
    ):
        covered = offsets[mask & (offsets[:, 1] > 0)]
        start, end = (int(covered[0, 0]), int(covered[-1, 1])) if len(covered) else (0, 0)
        spans.append(Window(owner, r, start, end))
    return spans


def embed_windows(
    embed: Callable[[dict[str, torch.Tensor]], torch.Tensor], batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``[W, dim]``, one row per window, in the batch's order: a batch of windows
    (:data:`OWNER` beside the inputs) embedded by ``embed``, for inference. The windows run
    longest first, as many at a time as the batch has texts, each group padded to its own
    longest, so memory stays that of a batch of texts and short tail windows cost less."""
    n = int(batch[OWNER].max()) + 1
    inputs = {key: value for key, value in batch.items() if key != OWNER}
    lengths = inputs["attention_mask"].sum(1)
    order = lengths.argsort(descending=True, stable=True)
    z = []
    for group in order.split(n):
        width = max(int(lengths[group].max()), 1)
        z.append(embed({key: value[group, :width] for key, value in inputs.items()}))
    return torch.cat(z)[order.argsort()]


def run_windows(
    embed: Callable[[dict[str, torch.Tensor]], torch.Tensor], batch: dict[str, torch.Tensor], rule: str
) -> torch.Tensor:
    """``[n, dim]``, one row per owner: a batch of windows embedded by :func:`embed_windows`
    and pooled by ``rule``, for inference."""
    owner = batch[OWNER]
    return pool_windows(embed_windows(embed, batch), owner, int(owner.max()) + 1, rule)


def window_share(texts: Sequence[str], window: int, seed: int = 0) -> float:
    """The share of ``texts`` (a seeded sample of 1,000) whose estimated token count
    (1.3 word pieces per whitespace word + 2 special tokens, as
    :func:`labelcon.encoders.resolve_max_length` estimates) exceeds ``window``."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(texts), size=min(1000, len(texts)), replace=False)
    return float(np.mean([1.3 * len(texts[i].split()) + 2 > window for i in sample]))


def resolve_windows(setting: str, texts: Sequence[str] | None, window: int, seed: int = 0) -> WindowRule:
    """The pooling rule for ``setting``: itself unless ``"auto"``; for ``"auto"``,
    ``"mean"`` when at least :data:`LONG_SHARE` of ``texts`` exceed ``window`` tokens
    (:func:`window_share`), else ``"first"`` (also for inputs that are not texts).

    ``mean`` is hierarchical BERT's segment pooling; ``mean`` against ``max`` on the
    long-evidence proxy (``bench/long_proxy.py``) is still to be measured (issue 27).

    >>> resolve_windows("auto", ["a short text"] * 10, 256)
    'first'
    >>> resolve_windows("auto", [" ".join(["word"] * 300)] * 10, 256)
    'mean'
    """
    if setting != "auto":
        if setting not in WINDOW_RULES:
            raise ValueError(f"windows must be 'auto' or one of {WINDOW_RULES}, got {setting!r}")
        return setting  # type: ignore[return-value]
    if not texts or not isinstance(texts[0], str):
        return "first"
    return "mean" if window_share(texts, window, seed) >= LONG_SHARE else "first"
