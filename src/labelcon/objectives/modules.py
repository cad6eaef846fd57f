"""``nn.Module`` wrappers with one call signature, and the registry of objectives.

Every objective is called as ``objective(embeddings, labels=None, *, positives=None,
label_embeddings=None, keys=None, key_labels=None)``; a trainer asks
``needs_positives`` (give a second view of each item; the extra keys then come with
their labels, which objectives without labels ignore) and ``needs_label_embeddings``
(give the label-text embeddings), for the latter ``sample_labels`` (which label texts to
embed this step) and otherwise does not know which one it runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from labelcon.objectives.info_nce import info_nce
from labelcon.objectives.kernel import check_options, check_temperature
from labelcon.objectives.label_contrast import label_contrast, sample_label_columns, select_label_columns
from labelcon.objectives.mulsupcon import mulsupcon, mulsupcon_moco
from labelcon.objectives.relations import RELATIONS, is_sparse
from labelcon.objectives.supcon import supcon


class Objective(nn.Module):
    """Base of the wrappers: a temperature and the two capability flags. Subclasses
    implement ``forward`` with the signature in the module docstring."""

    needs_positives: bool = False
    needs_label_embeddings: bool = False

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def sample_labels(self, labels: Tensor, rng: np.random.Generator) -> tuple[Tensor | None, Tensor]:
        """For objectives that take label embeddings: the label ids whose texts a step
        embeds and the batch's ``labels`` restricted to them. Here every label: ``(None,
        labels)``."""
        return None, labels

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class _LabelledObjective(Objective):
    """SupCon-style objectives: labels required; a second view, when given, joins the
    batch as more items with the same labels (the two-view form of Khosla et al.), so an
    item's other view is one of its positives whenever it has labels."""

    def __init__(self, temperature: float, tau_plus: float, beta: float, decoupled: bool) -> None:
        super().__init__(temperature)
        check_options(tau_plus, beta)
        self.options = {"tau_plus": tau_plus, "beta": beta, "decoupled": decoupled}

    def _batch(self, embeddings: Tensor, labels: Tensor | None, positives: Tensor | None) -> tuple[Tensor, Tensor]:
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs labels; got labels=None")
        if positives is None:
            return embeddings, labels
        if positives.shape != embeddings.shape:
            raise ValueError(
                f"positives must be a second view of the batch, shape {list(embeddings.shape)}; "
                f"got {list(positives.shape)}"
            )
        labels = labels.to_sparse_coo() if is_sparse(labels) else labels
        both = torch.cat([labels, labels])
        dtype = torch.promote_types(embeddings.dtype, positives.dtype)
        views = torch.cat([embeddings.to(dtype), positives.to(dtype)])
        return views, both.coalesce() if is_sparse(both) else both

    def extra_repr(self) -> str:
        return ", ".join([super().extra_repr()] + [f"{k}={v}" for k, v in self.options.items()])


class SupConLoss(_LabelledObjective):
    """:func:`labelcon.objectives.supcon` as a module (default relation: Jaccard).

    >>> _ = torch.manual_seed(0)
    >>> z, y = torch.randn(6, 8), torch.tensor([[1, 0], [1, 1], [0, 1]] * 2)
    >>> loss = SupConLoss(temperature=0.1)(z, y, positives=z + 0.01 * torch.randn(6, 8))
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    """

    def __init__(
        self,
        temperature: float = 0.1,
        relation: str = "jaccard",
        *,
        tau_plus: float = 0.0,
        beta: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(temperature, tau_plus, beta, decoupled)
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {list(RELATIONS)}; got {relation!r}")
        self.relation = relation

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        *,
        positives: Tensor | None = None,
        label_embeddings: Tensor | None = None,
        keys: Tensor | None = None,
        key_labels: Tensor | None = None,
    ) -> Tensor:
        z, y = self._batch(embeddings, labels, positives)
        return supcon(z, y, self.temperature, self.relation, keys=keys, key_labels=key_labels, **self.options)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, relation={self.relation!r}"


class MulSupConLoss(_LabelledObjective):
    """:func:`labelcon.objectives.mulsupcon` as a module."""

    def __init__(
        self, temperature: float = 0.1, *, tau_plus: float = 0.0, beta: float = 0.0, decoupled: bool = False
    ) -> None:
        super().__init__(temperature, tau_plus, beta, decoupled)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        *,
        positives: Tensor | None = None,
        label_embeddings: Tensor | None = None,
        keys: Tensor | None = None,
        key_labels: Tensor | None = None,
    ) -> Tensor:
        z, y = self._batch(embeddings, labels, positives)
        return mulsupcon(z, y, self.temperature, keys=keys, key_labels=key_labels, **self.options)


class MulSupConMoCoLoss(Objective):
    """:func:`labelcon.objectives.mulsupcon_moco` as a module: the anchors against the
    batch's keys (``positives``: the momentum encoder's embeddings of the second view
    when the trainer has a queue, else the second view's own) and the extra ``keys``
    with their ``key_labels`` (the queue, other processes' keys). ``with_weight`` as in
    the official code: each item's anchors weigh ``1 / (|Y_i| B)``.

    >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> y = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]])
    >>> loss = MulSupConMoCoLoss(temperature=0.5)
    >>> bool(loss(z, y, positives=z) < loss(z, y, positives=z.flip(0)))
    True
    """

    needs_positives = True

    def __init__(self, temperature: float = 0.1, with_weight: bool = False) -> None:
        super().__init__(temperature)
        self.with_weight = with_weight

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        *,
        positives: Tensor | None = None,
        label_embeddings: Tensor | None = None,
        keys: Tensor | None = None,
        key_labels: Tensor | None = None,
    ) -> Tensor:
        if labels is None or positives is None:
            raise ValueError("MulSupConMoCoLoss needs labels and positives (each item's key from its second view)")
        return mulsupcon_moco(
            embeddings,
            positives,
            labels,
            self.temperature,
            queue=keys,
            queue_labels=key_labels,
            with_weight=self.with_weight,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, with_weight={self.with_weight}"


class InfoNCELoss(Objective):
    """:func:`labelcon.objectives.info_nce` as a module (SimCSE when ``positives`` is a
    dropout view of the same texts). Labels are ignored; ``keys`` are extra negatives.

    >>> _ = torch.manual_seed(0)
    >>> z = torch.randn(4, 8)
    >>> bool(InfoNCELoss()(z, positives=z) < InfoNCELoss()(z, positives=torch.randn(4, 8)))
    True
    """

    needs_positives = True

    def __init__(self, temperature: float = 0.05, symmetric: bool = False) -> None:
        super().__init__(temperature)
        self.symmetric = symmetric

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        *,
        positives: Tensor | None = None,
        label_embeddings: Tensor | None = None,
        keys: Tensor | None = None,
        key_labels: Tensor | None = None,
    ) -> Tensor:
        if positives is None:
            raise ValueError("InfoNCELoss needs positives (a second view of each item); got positives=None")
        return info_nce(embeddings, positives, self.temperature, self.symmetric, negatives=keys)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, symmetric={self.symmetric}"


class LabelContrastLoss(Objective):
    """:func:`labelcon.objectives.label_contrast` as a module, with sampled label negatives.

    With ``label_negatives=k``, :meth:`sample_labels` picks per step the label set S:
    every label held by an item of the batch (each item's positives are in-batch negatives
    for the others) plus k labels drawn uniformly without replacement from the rest. The
    trainer embeds only the texts of S, and the loss is the sampled softmax::

        loss_i = -(1/|Y_i|) sum_{c in Y_i} log( exp(s(z_i, e_c) / tau) / sum_{c' in S} exp(s(z_i, e_c') / tau) )

    the full objective with its denominator restricted to S (so never above it), without a
    correction for the sampling: the standard sampled-softmax / in-batch-negatives
    approximation of dual-encoder training (Jean et al. 2015, with the batch's targets plus
    sampled words as the vocabulary; Karpukhin et al. 2020, DPR). When C is at most the
    number of labels the batch holds plus k, S is every label and the loss is the full
    one; ``label_negatives=None`` always uses every label. ``decoupled=True`` (``--objective
    label_contrast --objective-params '{"decoupled": true}'``) is DEXML's decoupled softmax
    (:func:`label_contrast`).
    """

    needs_label_embeddings = True

    def __init__(self, temperature: float = 0.05, label_negatives: int | None = 1024, decoupled: bool = False) -> None:
        super().__init__(temperature)
        if label_negatives is not None and (type(label_negatives) is not int or label_negatives < 0):
            raise ValueError(f"label_negatives must be an int >= 0 or None (every label); got {label_negatives!r}")
        self.label_negatives, self.decoupled = label_negatives, decoupled

    def sample_labels(self, labels: Tensor, rng: np.random.Generator) -> tuple[Tensor | None, Tensor]:
        """``(S, labels[:, S])`` with S the sorted label ids described above, drawn from
        ``rng``; ``(None, labels)`` when S is every label. Sparse labels stay sparse."""
        if self.label_negatives is None:
            return None, labels
        columns = sample_label_columns(labels, self.label_negatives, rng)
        return (None, labels) if columns is None else (columns, select_label_columns(labels, columns))

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        *,
        positives: Tensor | None = None,
        label_embeddings: Tensor | None = None,
        keys: Tensor | None = None,
        key_labels: Tensor | None = None,
    ) -> Tensor:
        if labels is None or label_embeddings is None:
            raise ValueError("LabelContrastLoss needs labels and label_embeddings [C, D]")
        if keys is not None:
            raise ValueError("LabelContrastLoss contrasts items with label embeddings; it takes no extra keys")
        return label_contrast(embeddings, label_embeddings, labels, self.temperature, decoupled=self.decoupled)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, label_negatives={self.label_negatives}, decoupled={self.decoupled}"


_REGISTRY: dict[str, tuple[type[Objective], dict[str, Any]]] = {
    "supcon": (SupConLoss, {}),
    "supcon-any": (SupConLoss, {"relation": "any"}),
    "supcon-all": (SupConLoss, {"relation": "all"}),
    "supcon-jaccard": (SupConLoss, {"relation": "jaccard"}),
    "mulsupcon": (MulSupConLoss, {}),
    "mulsupcon-moco": (MulSupConMoCoLoss, {}),
    "simcse": (InfoNCELoss, {}),
    "info_nce": (InfoNCELoss, {}),
    "label_contrast": (LabelContrastLoss, {}),
}

#: The names :func:`build_objective` knows.
OBJECTIVES: list[str] = list(_REGISTRY)


#: ``objective="auto"``: a set is few-shot when its median label has at most this many
#: training items (or ``shots`` asks for at most this many per label) ...
FEW_SHOT_ITEMS = 10
#: ... and it holds at most this many training items: a long tail of rare labels in a large
#: set (extreme classification) is not a few-shot set.
FEW_SHOT_SET = 2000


def resolve_objective(name: str, label_counts: np.ndarray, n_items: int | None = None, shots: int | None = None) -> str:
    """The objective ``"auto"`` stands for: ``"label_contrast"`` on a few-shot set, else
    ``"supcon-jaccard"``; any other name is returned as is.

    A set is few-shot when ``shots`` (items sampled per label) is at most ``FEW_SHOT_ITEMS``,
    or, without ``shots``, when the median label (among those with items, from
    ``label_counts``) has at most ``FEW_SHOT_ITEMS`` training items and the set holds at
    most ``FEW_SHOT_SET`` items (``n_items``; None: not counted).

    With a handful of examples a label's own text (its name, or its description) is worth
    as much as another example: contrasting items with label texts (the label-text dual
    encoder of :class:`LabelContrastLoss`) gave 0.333 test macro-F1 on GoEmotions with 8
    examples per label, against 0.299 for ``supcon-jaccard`` (docs/benchmarks-history.md, few-shot).
    With many examples per label, item-to-item positives graded by label overlap win; so
    they do on a large set whose median label is rare (thousands of labels with a long
    tail), where tens of thousands of items carry the signal and label texts would add
    thousands of keys to every batch.

    >>> resolve_objective("auto", np.array([8, 9, 12])), resolve_objective("auto", np.array([50, 300]))
    ('label_contrast', 'supcon-jaccard')
    >>> resolve_objective("auto", np.full(4000, 6), n_items=45000), resolve_objective("auto", np.full(28, 60), shots=8)
    ('supcon-jaccard', 'label_contrast')
    """
    if name != "auto":
        return name
    if shots is not None:
        return "label_contrast" if shots <= FEW_SHOT_ITEMS else "supcon-jaccard"
    seen = label_counts[label_counts > 0]
    few = seen.size > 0 and float(np.median(seen)) <= FEW_SHOT_ITEMS and (n_items is None or n_items <= FEW_SHOT_SET)
    return "label_contrast" if few else "supcon-jaccard"


def build_objective(name: str, **params: Any) -> Objective:
    """The objective module called ``name`` (one of :data:`OBJECTIVES`), built with
    ``params`` (temperature, relation for ``"supcon"``, kernel options...).

    >>> build_objective("supcon-any", temperature=0.2)
    SupConLoss(temperature=0.2, tau_plus=0.0, beta=0.0, decoupled=False, relation='any')
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; expected one of {OBJECTIVES}")
    cls, fixed = _REGISTRY[name]
    clash = set(fixed) & set(params)
    if clash:
        raise ValueError(f"objective {name!r} fixes {sorted(clash)}; use 'supcon' to choose the relation")
    try:
        return cls(**fixed, **params)
    except TypeError as error:
        raise ValueError(f"bad parameters for objective {name!r}: {error}") from None
