"""Label rows of a batch as the tensor the objectives take."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

#: Above this many labels, batches carry their labels as a sparse tensor (no dense B x C).
DENSE_LABEL_LIMIT = 4096


def batch_labels(labels: sp.csr_matrix, rows: np.ndarray | list[int]) -> torch.Tensor:
    """The {0,1} label rows ``rows`` of ``labels``: dense float32 [B, C] for modest label
    counts, a sparse CSR tensor when C exceeds :data:`DENSE_LABEL_LIMIT`."""
    block = labels[np.asarray(rows)]
    if block.shape[1] <= DENSE_LABEL_LIMIT:
        return torch.from_numpy(block.toarray().astype(np.float32, copy=False))
    block = block.tocsr()
    with warnings.catch_warnings():  # torch says once per process that sparse CSR is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(block.indptr.astype(np.int64)),
            torch.from_numpy(block.indices.astype(np.int64)),
            torch.from_numpy(block.data.astype(np.float32)),
            size=block.shape,
            check_invariants=False,  # a scipy CSR row slice is already a valid CSR layout
        )
