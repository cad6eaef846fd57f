"""Contrastive objectives: one kernel, many relations.

Every objective is the kernel of :mod:`labelcon.objectives.kernel` (logits ``z . k / tau``
with self masked, targets ``W``, a soft cross-entropy) with a different relation between
items: label-overlap weights (:func:`supcon`), per-label anchors (:func:`mulsupcon`), the
paired view (:func:`info_nce`) or the label texts (:func:`label_contrast`). The modules
share one call signature so a trainer can run any of them (:func:`build_objective`).
"""

from labelcon.objectives.cosent import cosent
from labelcon.objectives.distributed import gather_others, gather_with_grad
from labelcon.objectives.info_nce import info_nce
from labelcon.objectives.kernel import NonFiniteEmbeddingsError, contrastive_loss
from labelcon.objectives.label_contrast import label_contrast
from labelcon.objectives.modules import (
    OBJECTIVES,
    InfoNCELoss,
    LabelContrastLoss,
    MulSupConLoss,
    MulSupConMoCoLoss,
    Objective,
    SupConLoss,
    build_objective,
    resolve_objective,
)
from labelcon.objectives.mulsupcon import mulsupcon, mulsupcon_moco
from labelcon.objectives.pairs import PAIR_KINDS, PairLoss, build_pair_objective
from labelcon.objectives.queue import MomentumQueue, momentum_update
from labelcon.objectives.relations import RELATIONS, relation_weights
from labelcon.objectives.supcon import supcon

__all__ = [
    "OBJECTIVES",
    "PAIR_KINDS",
    "PairLoss",
    "build_pair_objective",
    "RELATIONS",
    "InfoNCELoss",
    "LabelContrastLoss",
    "MomentumQueue",
    "MulSupConLoss",
    "MulSupConMoCoLoss",
    "NonFiniteEmbeddingsError",
    "Objective",
    "SupConLoss",
    "build_objective",
    "resolve_objective",
    "contrastive_loss",
    "cosent",
    "gather_others",
    "gather_with_grad",
    "info_nce",
    "label_contrast",
    "momentum_update",
    "mulsupcon",
    "mulsupcon_moco",
    "relation_weights",
    "supcon",
]
