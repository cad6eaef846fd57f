"""Linear probe: one-vs-rest L2-regularised logistic regression on frozen embeddings.

All C binary problems are solved at once as one linear layer, full batch, with L-BFGS
(``torch.optim.LBFGS``, strong-Wolfe line search). The objective is scikit-learn's
``LogisticRegression(C=C)`` summed over labels and divided by ``C * n``, which has the same
minimiser (the intercept is not penalised, as in sklearn's lbfgs solver):

    min_{W, b}  (1/n) sum_{i, c} w_ic * BCE(y_ic, x_i . W_c + b_c)  +  ||W||^2 / (2 C n)

With ``class_weight=None`` every w_ic = 1; with ``"balanced"`` w_ic = n / (2 n_c) for
positives and n / (2 (n - n_c)) for negatives, sklearn's "balanced" per binary problem.
The loss never forms the dense label matrix: sum_c BCE = sum softplus(z) - sum_{y=1} z,
so the label term touches only the nnz positives and memory is one block of logits.
Labels without positives in training score 0, labels every item holds score 1 (sklearn
would refuse both). Embeddings are used as given (no normalisation), like sklearn.
Memory: the weights, their gradient and 2 x 10 L-BFGS history vectors, ~22 * D * C floats
(0.7 GB for D=768, C=10^4), plus one block of ~4M logits.

>>> import numpy as np
>>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
>>> head = LinearProbeHead(C=10.0).fit(x, np.array([[1, 0], [1, 0], [0, 1], [0, 1]]))
>>> (head.predict_scores(x[:1]) > 0.5).tolist()
[[True, False]]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit

from labelcon.heads.base import Head, check_embeddings, check_labels
from labelcon.metrics import LabelMatrix

_LOGIT_BLOCK = 1 << 22  # logits per block in the loss


class LinearProbeHead(Head):
    """One-vs-rest logistic regression trained as one torch layer (formula in the module docstring).

    ``C``: inverse L2 strength, as in sklearn. ``max_iter``: L-BFGS iterations.
    ``class_weight``: None or ``"balanced"``. ``tol``: stop when every gradient entry of the
    (per-item averaged) objective is below it.
    """

    name = "linear"

    def __init__(self, C: float = 1.0, max_iter: int = 100, class_weight: str | None = None, tol: float = 1e-6) -> None:
        if C <= 0:
            raise ValueError(f"C must be > 0; got {C}")
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1; got {max_iter}")
        if class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced'; got {class_weight!r}")
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.tol = tol

    def fit(self, embeddings: np.ndarray, Y: LabelMatrix) -> LinearProbeHead:
        x = check_embeddings(embeddings)
        y = check_labels(Y, len(x))
        n, c = y.shape
        counts = np.bincount(y.indices, minlength=c)
        active = np.flatnonzero((counts > 0) & (counts < n))
        coef = np.zeros((c, x.shape[1]), dtype=np.float32)
        intercept = np.where(counts == n, np.inf, -np.inf).astype(np.float32)
        if active.size:
            w, b = self._solve(x, y[:, active].tocsr(), counts[active])
            coef[active], intercept[active] = w, b
        self.coef_, self.intercept_ = coef, intercept
        self.n_labels_, self.dim_ = c, x.shape[1]
        return self

    def _solve(self, x: np.ndarray, y, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, c = y.shape
        if self.class_weight == "balanced":
            w_pos = torch.as_tensor(n / (2.0 * counts), dtype=torch.float32)
            w_neg = torch.as_tensor(n / (2.0 * (n - counts)), dtype=torch.float32)
        else:
            w_pos = w_neg = torch.ones(c)
        X = torch.from_numpy(x)
        step = max(1, _LOGIT_BLOCK // c)
        blocks = []  # (rows, positive pairs as local row / column tensors)
        for start in range(0, n, step):
            sub = y[start : start + step]
            rows = torch.from_numpy(np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr)))
            blocks.append((slice(start, start + step), rows, torch.from_numpy(sub.indices.astype(np.int64))))

        prior = counts / n
        W = torch.zeros(x.shape[1], c, requires_grad=True)
        b = torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32, requires_grad=True)
        opt = torch.optim.LBFGS(
            [W, b],
            lr=1,
            max_iter=self.max_iter,
            history_size=10,
            tolerance_grad=self.tol,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            total = 0.0
            for rows, prow, pcol in blocks:
                z = X[rows] @ W + b
                soft = F.softplus(z)
                zp = z[prow, pcol]
                loss = (soft @ w_neg).sum() + ((w_pos - w_neg)[pcol] * F.softplus(zp) - w_pos[pcol] * zp).sum()
                (loss / n).backward()
                total += loss.item() / n
            reg = (W * W).sum() / (2 * self.C * n)
            reg.backward()
            return torch.tensor(total + reg.item())

        opt.step(closure)
        return W.detach().numpy().T.copy(), b.detach().numpy().copy()

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        x = self._check_input(embeddings)
        return expit(x @ self.coef_.T + self.intercept_).astype(np.float32, copy=False)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_, "intercept": self.intercept_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]
