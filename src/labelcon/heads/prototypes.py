"""Label-prototype head: one mean direction per label, a calibrated sigmoid of the cosine.

Fit (z_i L2-normalised, P_c = items holding label c, n_c = |P_c|):

    S_c       = sum_{i in P_c} z_i,       mu_c = S_c / ||S_c||               (prototype)
    m+_c      = mean_{i in P_c} cos(z_i, S_c - z_i)                         (leave-one-out)
    m-_c      = mean_{i not in P_c} cos(z_i, mu_c) = (sum_i z_i - S_c) . mu_c / (n - n_c)
    b_c       = (m+_c + m-_c) / 2

Predict:   score_c(x) = sigmoid((cos(x, mu_c) - b_c) / tau)

b_c is the midpoint between the typical cosine of a label's own items to its prototype and
that of the other items: the equal-prior decision boundary of a nearest-centroid rule in
one dimension (Snell et al. 2017's prototypes with a per-label offset), so score 0.5 means
"as close as the boundary between holders and non-holders". The positive mean is taken
leave-one-out so an item does not vouch for itself (which would inflate m+ most for rare
labels). A label seen once has no leave-one-out cosine; its m+ is the pooled mean over
all (item, label) pairs that have one (1.0 if none). When every item holds a label,
m-_c = -1. Labels without positives score 0. Everything is closed form: cost O(nnz·D + C·D),
memory one [C, D] float64 array. Top-k ranks by the logit (cos - b_c) / tau, which float32
sigmoid scores would tie at 1.0 for close matches.
Per-label decisions are still left to :class:`~labelcon.heads.thresholds.Thresholds`.

>>> import numpy as np
>>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
>>> head = PrototypeHead().fit(x, np.array([[1, 0], [1, 0], [0, 1], [0, 1]]))
>>> head.predict_scores(np.array([[1, 0.05]], dtype=np.float32)).round(2).tolist()
[[1.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from labelcon.heads.base import (
    Head,
    check_embeddings,
    check_labels,
    l2_normalize,
    label_pairs,
    pair_dots,
    sigmoid_top_k,
)
from labelcon.metrics import LabelMatrix, TopK


class PrototypeHead(Head):
    """Cosine to the label's mean embedding through a per-label calibrated sigmoid."""

    name = "prototype"

    def __init__(self, temperature: float = 0.05) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.temperature = temperature

    def fit(self, embeddings: np.ndarray, Y: LabelMatrix) -> PrototypeHead:
        x = l2_normalize(check_embeddings(embeddings)).astype(np.float64)
        y = check_labels(Y, len(x))
        n, c = y.shape
        counts = np.bincount(y.indices, minlength=c)
        sums = np.asarray(y.T.astype(np.float64) @ x)  # [C, D]
        norms = np.linalg.norm(sums, axis=1)
        has = norms > 1e-6
        safe = np.where(has, norms, 1.0)

        n_neg = n - counts
        neg_dot = np.where(has, sums @ x.sum(axis=0) / safe - norms, 0.0)  # (sum_i z_i - S_c) . mu_c
        neg_mean = np.where(n_neg > 0, neg_dot / np.maximum(n_neg, 1), -1.0)

        # leave-one-out cosine of each (item, label) pair: z_i . (S_c - z_i) / ||S_c - z_i||
        rows, cols = label_pairs(y)
        dots = pair_dots(x, rows, sums, cols)
        sq = (x * x).sum(axis=1)[rows]
        rest2 = norms[cols] ** 2 - 2 * dots + sq
        ok = (counts[cols] >= 2) & (rest2 > 1e-12)
        loo = (dots[ok] - sq[ok]) / np.sqrt(rest2[ok])
        n_loo = np.bincount(cols[ok], minlength=c)
        pooled = loo.mean() if loo.size else 1.0
        pos_mean = np.where(n_loo > 0, np.bincount(cols[ok], loo, minlength=c) / np.maximum(n_loo, 1), pooled)

        sums /= safe[:, None]  # in place: the prototypes (zero rows stay zero)
        self.prototypes_ = sums.astype(np.float32)
        self.bias_ = ((pos_mean + neg_mean) / 2).astype(np.float32)
        self.has_prototype_ = has
        self.n_labels_, self.dim_ = c, x.shape[1]
        return self

    def _logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(cos(x, mu_c) - b_c) / tau, float32 [n, C]; the lowest float32 for labels without a
        prototype (their sigmoid is exactly 0)."""
        x = l2_normalize(self._check_input(embeddings))
        logits = (x @ self.prototypes_.T - self.bias_) / np.float32(self.temperature)
        logits[:, ~self.has_prototype_] = np.finfo(np.float32).min
        return logits

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        return expit(self._logits(embeddings)).astype(np.float32, copy=False)

    def _top_k_block(self, x: np.ndarray, k: int) -> TopK:
        return sigmoid_top_k(self._logits(x), k)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"prototypes": self.prototypes_, "bias": self.bias_, "has_prototype": self.has_prototype_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.prototypes_ = arrays["prototypes"]
        self.bias_ = arrays["bias"]
        self.has_prototype_ = arrays["has_prototype"]
