"""labelcon's multi-label objectives and sampler inside sentence-transformers' own trainer.

``pip install 'labelcon[st]'``. Two parts that ``SentenceTransformerTrainer`` takes as
they are:

- :class:`LabelconLoss`, a loss module with the ``(sentence_features, labels)`` call of
  sentence-transformers' losses, that runs one of labelcon's objectives on the model's
  embeddings: SupCon with any relation (``"supcon-any"``, ``"supcon-all"``,
  ``"supcon-jaccard"``), MulSupCon (``"mulsupcon"``) or label-text contrast
  (``"label_contrast"``, with the label texts embedded by the same model every step);
- :class:`MultiLabelBatchSampler`, labelcon's label-aware batches
  (:class:`labelcon.sampling.LabelAwareBatchSampler`: every item with a possible positive
  finds one in its batch, rare labels are drawn more often), as the ``batch_sampler`` of
  ``SentenceTransformerTrainingArguments``.

The training data is a ``datasets.Dataset`` with one text column (or two: the second
is a second view of each item, which joins the batch with the same labels) and a label
column (``label`` or ``labels``, as the trainer's collator looks for). Labels are multi-hot
lists ``[0, 1, 1, 0]`` by default; label-id lists (``[1, 2]``) work with
``label_format="ids"`` and ``num_labels`` on the loss and the sampler, padded to one length
with -1 (:func:`pad_label_ids`) because the collator stacks the column into one tensor.

>>> import torch
>>> multi_hot_labels(torch.tensor([[2, 0, -1], [1, -1, -1]]), "ids", num_labels=3)
tensor([[1., 0., 1.],
        [0., 1., 0.]])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

try:
    from sentence_transformers.base.sampler import DefaultBatchSampler
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        f"labelcon.st needs sentence-transformers 6 or later: pip install 'labelcon[st]' ({error})"
    ) from None

from labelcon.objectives import LabelContrastLoss, Objective, build_objective
from labelcon.sampling import LabelAwareBatchSampler

LABEL_FORMATS = ("multi-hot", "ids")


def pad_label_ids(label_lists: Iterable[Sequence[int]], pad: int = -1) -> list[list[int]]:
    """Label-id lists padded with ``pad`` to the longest one, for a dataset column that the
    trainer's collator can stack (``dataset.map`` it, or build the column with it).

    >>> pad_label_ids([[3], [0, 2], []])
    [[3, -1], [0, 2], [-1, -1]]
    """
    lists = [list(ids) for ids in label_lists]
    width = max((len(ids) for ids in lists), default=0)
    return [ids + [pad] * (width - len(ids)) for ids in lists]


def multi_hot_labels(labels: Tensor, label_format: str = "multi-hot", num_labels: int | None = None) -> Tensor:
    """The batch's labels as the objectives take them: a float {0,1} matrix [B, C] from
    multi-hot rows, or from label ids padded with negative values (``label_format="ids"``,
    ``num_labels`` = C); int class ids [B] (one label per item) pass as they are."""
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {list(LABEL_FORMATS)}; got {label_format!r}")
    if labels.dim() == 1 and not labels.is_floating_point():
        return labels
    if labels.dim() != 2:
        raise ValueError(
            f"labels must be a [B, C] multi-hot matrix, [B, L] padded label ids or [B] class ids; "
            f"got shape {list(labels.shape)}"
        )
    if label_format == "multi-hot":
        return labels.float()
    if num_labels is None:
        raise ValueError('label_format="ids" needs num_labels (the number of labels, C)')
    ids = labels.long()
    if (ids >= num_labels).any():
        raise ValueError(f"label ids must be below num_labels={num_labels}; got {int(ids.max())}")
    held = ids >= 0
    out = torch.zeros(labels.shape[0], num_labels, device=labels.device)
    out[torch.nonzero(held, as_tuple=True)[0], ids[held]] = 1.0
    return out


class LabelconLoss(nn.Module):
    """One of labelcon's objectives as a sentence-transformers loss.

    ``model``: the ``SentenceTransformer`` being trained. ``objective``: a name of
    :data:`labelcon.objectives.OBJECTIVES` that uses labels (``"supcon-jaccard"``,
    ``"supcon-any"``, ``"supcon-all"``, ``"mulsupcon"``, ``"label_contrast"``) built with
    ``temperature`` and ``params`` (kernel options ``tau_plus``, ``beta``, ``decoupled``;
    ``label_negatives`` for label contrast), or an :class:`~labelcon.objectives.Objective`
    module. ``label_texts``: the label names or descriptions, in label-id order, for
    ``"label_contrast"``. ``label_format``/``num_labels``: see :func:`multi_hot_labels`.

    The loss of a batch is ``objective(z, labels)`` with ``z`` the model's
    ``sentence_embedding`` of the first text column; a second column is a second view
    (``positives``), a third one is refused.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: str | Objective = "supcon-jaccard",
        *,
        temperature: float = 0.1,
        label_texts: Sequence[str] | None = None,
        label_format: str = "multi-hot",
        num_labels: int | None = None,
        seed: int = 0,
        **params: Any,
    ) -> None:
        super().__init__()
        self.model = model
        if isinstance(objective, Objective):
            if params:
                raise ValueError(f"params {sorted(params)} go with an objective name, not a built objective")
            self.objective = objective
        else:
            self.objective = build_objective(objective, temperature=temperature, **params)
        if self.objective.needs_positives:
            raise ValueError(
                f"{type(self.objective).__name__} needs a second view or momentum key of every item, "
                "which LabelconLoss does not make; for pairs use sentence-transformers' "
                "MultipleNegativesRankingLoss"
            )
        if self.objective.needs_label_embeddings and not label_texts:
            raise ValueError(
                f"{type(self.objective).__name__} contrasts items with label texts: pass label_texts=[...]"
            )
        if label_format not in LABEL_FORMATS:
            raise ValueError(f"label_format must be one of {list(LABEL_FORMATS)}; got {label_format!r}")
        self.label_texts = list(label_texts) if label_texts else None
        self.label_format, self.num_labels = label_format, num_labels
        self.seed, self._step = seed, 0

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        if len(features) > 2:
            raise ValueError(f"LabelconLoss takes one text column (or two: item and second view); got {len(features)}")
        embeddings = [self.model(feature)["sentence_embedding"] for feature in features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """The objective on ``embeddings`` (the first column's, and a second view's)."""
        if labels is None:
            raise ValueError(
                "LabelconLoss needs labels: a dataset column 'label' or 'labels' of multi-hot rows "
                '(or padded label ids with label_format="ids")'
            )
        labels = multi_hot_labels(labels, self.label_format, self.num_labels)
        positives = embeddings[1] if len(embeddings) > 1 else None
        if not self.objective.needs_label_embeddings:
            return self.objective(embeddings[0], labels, positives=positives)
        if positives is not None:
            raise ValueError("label_contrast takes one text column; got a second view")
        rng = np.random.default_rng([self.seed, self._step])
        self._step += 1
        ids, targets = self.objective.sample_labels(labels, rng)
        texts = self.label_texts if ids is None else [self.label_texts[i] for i in ids.tolist()]
        label_embeddings = self._embed(texts, embeddings[0].device)
        return self.objective(embeddings[0], targets, label_embeddings=label_embeddings)

    def _embed(self, texts: list[str], device: torch.device) -> Tensor:
        """The label texts' embeddings by the model being trained (with gradients)."""
        tokens = self.model.tokenize(texts)
        tokens = {name: value.to(device) if isinstance(value, Tensor) else value for name, value in tokens.items()}
        return self.model(tokens)["sentence_embedding"]

    def get_config_dict(self) -> dict[str, Any]:
        """What sentence-transformers writes about this loss into the model card."""
        config: dict[str, Any] = {"objective": repr(self.objective), "label_format": self.label_format}
        if isinstance(self.objective, LabelContrastLoss):
            config["labels"] = len(self.label_texts or [])
        return config


class MultiLabelBatchSampler(DefaultBatchSampler):
    """labelcon's label-aware batches (:class:`labelcon.sampling.LabelAwareBatchSampler`)
    for ``SentenceTransformerTrainingArguments(batch_sampler=MultiLabelBatchSampler)``.

    The trainer builds it with the dataset and its ``batch_size``, ``drop_last``,
    ``valid_label_columns`` (the first of them that the dataset has is the label column),
    ``generator`` (unused: the plan of each epoch comes from ``seed`` and the epoch) and
    ``seed``. Label rows are multi-hot lists, or label-id lists with
    ``label_format="ids"`` (a ``functools.partial`` of this class, or a subclass, passes
    it); negative ids are padding. Under several processes the trainer's accelerator
    hands each process its share of every batch.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        label_format: str = "multi-hot",
        label_fraction: float = 0.25,
        label_power: float = 0.5,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        column = next((name for name in valid_label_columns or [] if name in dataset.column_names), None)
        if column is None:
            raise ValueError(
                f"MultiLabelBatchSampler needs a label column, one of {valid_label_columns}; "
                f"the dataset has the columns {dataset.column_names}"
            )
        self.labels = label_matrix(dataset[column], label_format)
        self.sampler = LabelAwareBatchSampler(
            self.labels,
            batch_size,
            seed=seed,
            drop_last=drop_last,
            label_fraction=label_fraction,
            label_power=label_power,
        )

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.sampler)


def label_matrix(rows: Sequence[Any], label_format: str = "multi-hot") -> sp.csr_matrix:
    """A sparse {0,1} matrix [N, C] from a dataset's label column: multi-hot rows, label-id
    lists (``label_format="ids"``, negative ids skipped) or one class id per row.

    >>> label_matrix([[0, 1, 1], [1, 0, 0]]).toarray().tolist()
    [[0, 1, 1], [1, 0, 0]]
    >>> label_matrix([[2], [0, 2], []], "ids").toarray().tolist()
    [[0, 0, 1], [1, 0, 1], [0, 0, 0]]
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {list(LABEL_FORMATS)}; got {label_format!r}")
    rows = [row.tolist() if hasattr(row, "tolist") else row for row in rows]
    if rows and not isinstance(rows[0], (list, tuple)):  # one class id per item
        ids = np.asarray(rows, dtype=np.int64)
        return sp.csr_matrix((np.ones(len(ids), dtype=np.int8), (np.arange(len(ids)), ids)))
    if label_format == "multi-hot":
        widths = {len(row) for row in rows}
        if len(widths) > 1:
            raise ValueError(
                f"multi-hot label rows must all have one length; got lengths {sorted(widths)[:5]} "
                '(label-id lists: pass label_format="ids")'
            )
        dense = np.asarray(rows, dtype=np.float32)
        if not np.isin(dense, (0.0, 1.0)).all():
            raise ValueError('multi-hot label rows must hold only 0 and 1 (label-id lists: pass label_format="ids")')
        return sp.csr_matrix(dense.astype(np.int8))
    coords = [(i, int(c)) for i, row in enumerate(rows) for c in row if int(c) >= 0]
    r, c = (np.array(part, dtype=np.int64) for part in zip(*coords)) if coords else (np.zeros(0, int), np.zeros(0, int))
    width = int(c.max()) + 1 if len(c) else 0
    matrix = sp.csr_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(len(rows), width))
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix
