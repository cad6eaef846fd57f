"""The objective of a batch of text tuples or scored pairs, as one module."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from labelcon.objectives.cosent import cosent
from labelcon.objectives.info_nce import info_nce
from labelcon.objectives.kernel import check_temperature
from labelcon.parts import check_pair_objective

PAIR_KINDS = ("tuples", "scored")


class PairLoss(nn.Module):
    """``kind="tuples"``: :func:`labelcon.objectives.info_nce` of the anchors against their
    positives, in-batch negatives and the hard negatives of further columns (supervised
    SimCSE; ``temperature``, ``hard_negative_weight``, ``symmetric``).
    ``kind="scored"``: :func:`labelcon.objectives.cosent` on the two columns and the gold
    scores (``scale``).

    Called as ``loss(columns, scores)``: ``columns`` the embeddings of each text column,
    [B, D] each, ``scores`` [B] for scored pairs (None for tuples).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> a, b = torch.randn(4, 8), torch.randn(4, 8)
    >>> PairLoss("scored")([a, b], torch.tensor([0.0, 1.0, 2.0, 3.0])).shape
    torch.Size([])
    """

    def __init__(
        self,
        kind: str,
        *,
        temperature: float = 0.05,
        hard_negative_weight: float = 0.0,
        symmetric: bool = False,
        scale: float = 20.0,
    ) -> None:
        super().__init__()
        if kind not in PAIR_KINDS:
            raise ValueError(f"kind must be one of {list(PAIR_KINDS)}; got {kind!r}")
        self.kind = kind
        self.temperature = check_temperature(temperature)
        self.hard_negative_weight, self.symmetric, self.scale = hard_negative_weight, symmetric, scale

    def forward(self, columns: list[Tensor], scores: Tensor | None = None) -> Tensor:
        if self.kind == "scored":
            if len(columns) != 2 or scores is None:
                raise ValueError(
                    f"scored pairs need two columns and their scores; got {len(columns)} columns, "
                    f"scores={'none' if scores is None else 'given'}"
                )
            return cosent(columns[0], columns[1], scores, self.scale)
        return info_nce(
            columns[0],
            columns[1],
            self.temperature,
            self.symmetric,
            hard_negatives=columns[2:] or None,
            hard_negative_weight=self.hard_negative_weight,
        )

    def extra_repr(self) -> str:
        if self.kind == "scored":
            return f"kind='scored', scale={self.scale}"
        return (
            f"kind='tuples', temperature={self.temperature}, hard_negative_weight={self.hard_negative_weight}, "
            f"symmetric={self.symmetric}"
        )


def build_pair_objective(kind: str, **params: Any) -> PairLoss:
    """A :class:`PairLoss` for ``kind`` with ``params``; parameters of the other kind are refused.

    >>> build_pair_objective("tuples", hard_negative_weight=0.5)
    PairLoss(kind='tuples', temperature=0.05, hard_negative_weight=0.5, symmetric=False)
    """
    check_pair_objective(kind, params)
    return PairLoss(kind, **params)
