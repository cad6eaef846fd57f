"""An MLP over precomputed feature vectors (image features, TF-IDF SVD, another model's embeddings).

Here the "texts" are rows of numbers: ``tokenize`` takes a float array ``[B, input_dim]``
(or a list of lists) and returns ``{"features": FloatTensor[B, input_dim]}``, and
``encode`` takes a whole ``[N, input_dim]`` array.

>>> import numpy as np
>>> enc = MLPEncoder(input_dim=8, hidden_dim=16, output_dim=4)
>>> enc.tokenize([[0.0] * 8, [1.0] * 8])["features"].shape
torch.Size([2, 8])
>>> enc.encode(np.ones((3, 8), dtype=np.float32)).shape
(3, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelcon.encoders.base import Encoder, load_tensors, save_tensors, seeded

WEIGHTS_FILE = "model.safetensors"


class MLPEncoder(Encoder):
    """``Linear(input_dim, hidden_dim) -> GELU -> Dropout -> Linear(hidden_dim, output_dim)``.

    Args:
        input_dim: length of each feature vector.
        hidden_dim: width of the hidden layer.
        output_dim: embedding size (``dim``).
        dropout: dropout after the hidden layer; it also makes SimCSE-style "dropout" views.
        seed: seeds the initialisation.
    """

    encoder_type = "mlp"

    def __init__(
        self, input_dim: int, hidden_dim: int = 512, output_dim: int = 256, dropout: float = 0.1, seed: int = 0
    ) -> None:
        super().__init__()
        if min(input_dim, hidden_dim, output_dim) < 1:
            raise ValueError(f"dimensions must be >= 1, got {input_dim=}, {hidden_dim=}, {output_dim=}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_dim, self.hidden_dim, self.dropout, self.seed = input_dim, hidden_dim, dropout, seed
        self.dim = output_dim
        with seeded(seed):
            self.net = torch.nn.Sequential(
                torch.nn.Linear(input_dim, hidden_dim),
                torch.nn.GELU(),
                torch.nn.Dropout(dropout),
                torch.nn.Linear(hidden_dim, output_dim),
            )

    def tokenize(self, texts: Sequence[Sequence[float]] | np.ndarray) -> dict[str, torch.Tensor]:
        """Check and convert feature rows ``[B, input_dim]`` to ``{"features": float32 tensor}``."""
        try:
            features = np.asarray(texts, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(f"MLPEncoder expects numeric feature rows [batch, {self.input_dim}]: {error}") from error
        if features.ndim != 2 or features.shape[1] != self.input_dim:
            raise ValueError(
                f"MLPEncoder expects feature rows of shape [batch, {self.input_dim}], got shape {list(features.shape)}"
            )
        return {"features": torch.from_numpy(features)}

    def encode(
        self,
        texts: Sequence[Sequence[float]] | np.ndarray,
        batch_size: int | None = None,
        normalize: bool = True,
        show_progress: bool = False,
        as_trained: bool = False,
    ) -> np.ndarray:
        """Embed feature rows ``[N, input_dim]``; see :meth:`Encoder.encode`."""
        features = self.tokenize(texts)["features"].numpy()
        return super().encode(features, batch_size, normalize, show_progress, as_trained)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["features"])

    def config(self) -> dict[str, Any]:
        return {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "output_dim": self.dim,
            "dropout": self.dropout,
            "seed": self.seed,
        }

    def _save_files(self, directory: Path) -> None:
        save_tensors(self.state_dict(), directory / WEIGHTS_FILE)

    @classmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> MLPEncoder:
        encoder = cls(**config)
        encoder.load_state_dict(load_tensors(directory / WEIGHTS_FILE))
        return encoder
