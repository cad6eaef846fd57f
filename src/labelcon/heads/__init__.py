"""Label heads on frozen embeddings, and the decision rules that turn scores into labels.

- :class:`KNNHead` (``"knn"``): similarity-weighted vote of the nearest training items.
- :class:`PrototypeHead` (``"prototype"``): calibrated cosine to each label's mean embedding.
- :class:`LinearProbeHead` (``"linear"``): one-vs-rest logistic regression, solved with L-BFGS.
- :class:`LabelTextHead` (``"label_text"``): calibrated cosine to each label's text embedding;
  predicts labels added after training too.
- :class:`EnsembleHead` (``"ensemble"``): the mean of member heads' scores; the ``auto`` head
  (:func:`select_on_dev`) picks a linear probe, a kNN vote or their average on dev.
- :class:`FallbackHead` (``"fallback"``): another head's scores, with the labels too rare in
  dev for their own threshold scored by a class-balanced probe under one shared threshold.
- :class:`LexicalKNN`: a kNN vote over TF-IDF vectors of the training texts, a scorer of
  texts (``needs_texts``) that the prediction stage mixes into a head's scores.
- :class:`DenseSparseLinear`: one-vs-rest logistic regression on TF-IDF features and the
  embedding side by side (PECOS XR-Transformer's ranker), a scorer of texts and embeddings
  that the prediction stage mixes in as it mixes the vote.
- :class:`Thresholds`: per-label F1-optimal thresholds from dev; :func:`top_k_labels` for XMC.
- :class:`NearestNeighbors`: exact or faiss cosine search.

>>> import numpy as np
>>> x = np.eye(3, dtype=np.float32); y = np.eye(3)
>>> head = build_head("knn", k=1).fit(x, y)
>>> scores = head.predict_scores(x)
>>> Thresholds.calibrate(scores, y, min_positives=1).apply(scores).sum()
np.int64(3)
"""

from labelcon.heads.base import FallbackThreshold, Head, build_head
from labelcon.heads.dense_sparse import DenseSparseLinear
from labelcon.heads.ensemble import EnsembleHead, FallbackHead, select_on_dev
from labelcon.heads.index import NearestNeighbors
from labelcon.heads.knn import KNNHead
from labelcon.heads.label_text import LabelTextHead
from labelcon.heads.lexical import LexicalKNN, mix_scores
from labelcon.heads.linear import LinearProbeHead
from labelcon.heads.prototypes import PrototypeHead
from labelcon.heads.thresholds import Thresholds, best_global_threshold, top_k_labels

__all__ = [
    "Head",
    "FallbackThreshold",
    "build_head",
    "KNNHead",
    "PrototypeHead",
    "LinearProbeHead",
    "LabelTextHead",
    "EnsembleHead",
    "FallbackHead",
    "select_on_dev",
    "LexicalKNN",
    "DenseSparseLinear",
    "mix_scores",
    "NearestNeighbors",
    "Thresholds",
    "best_global_threshold",
    "top_k_labels",
]
