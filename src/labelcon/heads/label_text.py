"""Label-text head: an item against the embedding of each label's own text (name or description).

The label texts are embedded by the same encoder as the items, so the head is a dual
encoder (Xiong et al. 2022, "Extreme zero-shot learning for extreme text classification",
NAACL; NGAME, Dahiya et al. 2023, WSDM; DEXA, Dahiya et al. 2023, KDD): a label is
scored by how close an item sits to its text, and a label never seen in training is
scored the same way as soon as its text is embedded (:meth:`LabelTextHead.add_labels`).
With e_c the L2-normalised embedding of label c's text:

Fit (z_i L2-normalised, P_c = items holding label c, n_c = |P_c|, n items):

    s_ic      = cos(z_i, e_c)
    m+        = mean over all (i, c) with Y_ic = 1 of s_ic                        (pooled)
    m+_c      = (sum_{i in P_c} s_ic + kappa * m+) / (n_c + kappa)          (shrunk to m+)
    m-_c      = mean_{i not in P_c} s_ic = ((sum_i z_i) . e_c - sum_{i in P_c} s_ic) / (n - n_c)
    b_c       = (m+_c + m-_c) / 2

Predict:   score_c(x) = sigmoid((cos(x, e_c) - b_c) / tau)

As in :class:`~labelcon.heads.prototypes.PrototypeHead`, b_c is the midpoint between the
typical cosine of a label's holders to its text and that of the other items, so a score
of 0.5 sits on the boundary between them; it corrects labels whose texts are closer to
or farther from their items than others' (a short name against a long description). The
positive mean needs no leave-one-out, since e_c does not come from the items; it is
shrunk toward the pooled m+ with ``kappa = prior_strength`` pseudo-items, because most
labels of a long-tailed label space have one or two items. A label without training items
(in fit, or added later) gets the global default m+_c = m+ and the negative mean over all
training items, m-_c = z_bar . e_c, from the stored mean training embedding z_bar. When
every item holds a label, m-_c = -1; without any (item, label) pair, m+ = 1.

Fit costs O(nnz * D + C * D). Scores are one product with the [C, D] label embeddings;
``predict_top_k`` ranks blocks of logits, so memory stays bounded at any label count.

>>> import numpy as np
>>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
>>> names = np.array([[1, 0.2], [0.2, 1]], dtype=np.float32)
>>> head = LabelTextHead().fit(x, np.array([[1, 0], [1, 0], [0, 1], [0, 1]]), label_embeddings=names)
>>> head.predict_scores(np.array([[1, 0.05]], dtype=np.float32)).round(2).tolist()
[[1.0, 0.0]]
>>> head.add_labels(np.array([[-1, -1]], dtype=np.float32)).n_labels_
3
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


class LabelTextHead(Head):
    """Calibrated cosine between items and label-text embeddings (formula in the module docstring).

    ``temperature``: tau of the sigmoid. ``prior_strength``: kappa, the pseudo-items at the
    pooled positive mean that each label's positive mean is shrunk toward (0: none).
    """

    name = "label_text"
    needs_label_embeddings = True

    def __init__(self, temperature: float = 0.05, prior_strength: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        if prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0; got {prior_strength}")
        self.temperature = temperature
        self.prior_strength = prior_strength

    def fit(
        self, embeddings: np.ndarray, Y: LabelMatrix, *, label_embeddings: np.ndarray | None = None
    ) -> LabelTextHead:
        """Fit the per-label offsets from training items [n, D], labels [n, C] and the C
        label-text embeddings [C, D] (row c embeds the text of label c; required)."""
        if label_embeddings is None:
            raise ValueError("LabelTextHead.fit needs label_embeddings=: the [C, D] embeddings of the label texts")
        x = l2_normalize(check_embeddings(embeddings)).astype(np.float64)
        y = check_labels(Y, len(x))
        e = l2_normalize(check_embeddings(label_embeddings, x.shape[1], "label_embeddings"))
        n, c = y.shape
        if len(e) != c:
            raise ValueError(f"label_embeddings has {len(e)} rows but Y has {c} label columns; they must match")
        counts = np.bincount(y.indices, minlength=c)
        rows, cols = label_pairs(y)
        s = pair_dots(x, rows, e, cols)  # s_ic for every (i, c) with Y_ic = 1
        pos_sum = np.bincount(cols, s, minlength=c)
        pooled = float(s.mean()) if s.size else 1.0
        kappa = self.prior_strength
        pos_mean = np.where(counts + kappa > 0, (pos_sum + kappa * pooled) / np.maximum(counts + kappa, 1e-12), pooled)
        total = x.sum(axis=0)
        n_neg = n - counts
        neg_mean = np.where(n_neg > 0, (e @ total - pos_sum) / np.maximum(n_neg, 1), -1.0)

        self.label_embeddings_ = e
        self.bias_ = ((pos_mean + neg_mean) / 2).astype(np.float32)
        self.label_counts_ = counts.astype(np.int64)
        self.mean_embedding_ = (total / max(n, 1)).astype(np.float32)
        self.pooled_positive_ = pooled
        self.n_labels_, self.dim_ = c, x.shape[1]
        return self

    def add_labels(self, label_embeddings: np.ndarray) -> LabelTextHead:
        """Append labels without training items, from their text embeddings [m, D]; they
        take columns ``n_labels_ .. n_labels_ + m - 1`` and the default offset
        b_c = (m+ + z_bar . e_c) / 2. Returns ``self``."""
        self._check_fitted()
        e = l2_normalize(check_embeddings(label_embeddings, self.dim_, "label_embeddings"))
        neg_mean = e.astype(np.float64) @ self.mean_embedding_.astype(np.float64)
        self.label_embeddings_ = np.concatenate([self.label_embeddings_, e])
        self.bias_ = np.concatenate([self.bias_, ((self.pooled_positive_ + neg_mean) / 2).astype(np.float32)])
        self.label_counts_ = np.concatenate([self.label_counts_, np.zeros(len(e), dtype=np.int64)])
        self.n_labels_ += len(e)
        return self

    def _logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(cos(x, e_c) - b_c) / tau, float32 [n, C]."""
        x = l2_normalize(self._check_input(embeddings))
        return (x @ self.label_embeddings_.T - self.bias_) / np.float32(self.temperature)

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        return expit(self._logits(embeddings)).astype(np.float32, copy=False)

    def _top_k_block(self, x: np.ndarray, k: int) -> TopK:
        return sigmoid_top_k(self._logits(x), k)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "label_embeddings": self.label_embeddings_,
            "bias": self.bias_,
            "label_counts": self.label_counts_,
            "mean_embedding": self.mean_embedding_,
            "pooled_positive": np.array(self.pooled_positive_),
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.label_embeddings_ = arrays["label_embeddings"]
        self.bias_ = arrays["bias"]
        self.label_counts_ = arrays["label_counts"]
        self.mean_embedding_ = arrays["mean_embedding"]
        self.pooled_positive_ = float(arrays["pooled_positive"])
