"""A trainable bag of token embeddings with a tokenizer trained on your corpus.

``StaticEncoder`` averages the embeddings of a text's tokens (``EmbeddingBag``, mean,
padding excluded) and optionally projects them; a text without tokens (empty, or only
spaces) counts as the unknown token ``[UNK]``, so every text has a non-zero embedding.
It is orders of magnitude faster than a transformer on CPU. Two ways to start it:

- :meth:`StaticEncoder.from_texts`: train a BPE tokenizer (lower-cased, accents stripped,
  ``▁`` marking word starts) on the texts; embeddings start small random normal (std 0.02).
- :meth:`StaticEncoder.distill_from`: same tokenizer, but each vocabulary token's row is
  the teacher's mean-pooled embedding of that token alone, reduced with PCA to ``dim``
  and scaled by a SIF weight ``a / (a + p(token))`` (Arora et al. 2017) so frequent tokens
  count less -- the Model2Vec recipe (Tulkens & van Dongen 2024).

>>> texts = ["the cat sat on the mat", "a dog barked at the cat", "birds sing at dawn"] * 10
>>> enc = StaticEncoder.from_texts(texts, vocab_size=200, dim=16)
>>> enc.encode(["the cat barked"]).shape
(1, 16)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from labelcon.encoders.base import Encoder, check_texts, load_tensors, make_projection, save_tensors, seeded
from labelcon.io import atomic_open

PAD, UNK = "[PAD]", "[UNK]"
WORD_START = "▁"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
SIF_A = 1e-3


def train_tokenizer(texts: Sequence[str], vocab_size: int = 30000, min_frequency: int = 2) -> Tokenizer:
    """Train a lower-casing BPE tokenizer on ``texts``; ``[PAD]`` is id 0, ``[UNK]`` id 1.

    Words are split at whitespace and punctuation and marked with a leading ``▁``. BPE
    is used rather than WordPiece because its training is deterministic (the same texts
    give the same vocabulary and ids), which WordPiece's is not in ``tokenizers``.

    >>> tok = train_tokenizer(["Hello world", "hello there world"] * 5, vocab_size=100)
    >>> tok.encode("HELLO World").tokens
    ['▁hello', '▁world']
    """
    texts = check_texts(texts)
    if not texts:
        raise ValueError("cannot train a tokenizer on an empty list of texts")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Metaspace()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


class StaticEncoder(Encoder):
    """Mean of token embeddings (``torch.nn.EmbeddingBag``), then an optional projection.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` whose id 0 is the padding token and which
            has the unknown token ``[UNK]`` (:func:`train_tokenizer` makes one); it is
            copied, not modified.
        dim: embedding size.
        max_length: texts are truncated to this many tokens.
        projection_dim: add a ``Linear(dim, projection_dim)`` head.
        seed: seeds the initialisation.
        embeddings: initial ``[vocab_size, dim]`` table; default small random normal.
    """

    encoder_type = "static"

    def __init__(
        self,
        tokenizer: Tokenizer,
        dim: int = 256,
        max_length: int = 128,
        projection_dim: int | None = None,
        seed: int = 0,
        embeddings: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if tokenizer.id_to_token(0) != PAD:
            raise ValueError(f"the tokenizer's id 0 must be {PAD!r}, got {tokenizer.id_to_token(0)!r}")
        if tokenizer.token_to_id(UNK) is None:
            raise ValueError(f"the tokenizer has no {UNK!r} token, which texts without tokens are embedded as")
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()  # tokenize cuts at max_length, which may change after training
        self.max_length = max_length
        self.projection_dim = projection_dim
        self.seed = seed
        vocab_size = self.tokenizer.get_vocab_size()
        with seeded(seed):
            self.embedding = torch.nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
            torch.nn.init.normal_(self.embedding.weight, std=0.02)
            self.projection = make_projection(dim, projection_dim)
        with torch.no_grad():
            if embeddings is not None:
                if tuple(embeddings.shape) != (vocab_size, dim):
                    raise ValueError(f"embeddings must be [{vocab_size}, {dim}], got {list(embeddings.shape)}")
                self.embedding.weight.copy_(embeddings)
            self.embedding.weight[0].zero_()
        self.dim = projection_dim or dim

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        vocab_size: int = 30000,
        dim: int = 256,
        max_length: int = 128,
        seed: int = 0,
        projection_dim: int | None = None,
    ) -> StaticEncoder:
        """Train a tokenizer on ``texts`` and start from small random embeddings."""
        return cls(train_tokenizer(texts, vocab_size), dim, max_length, projection_dim, seed)

    @classmethod
    def distill_from(
        cls,
        teacher: Encoder,
        texts: Sequence[str],
        vocab_size: int = 30000,
        dim: int = 256,
        max_length: int = 128,
        seed: int = 0,
        projection_dim: int | None = None,
        token_weighting: Literal["sif", "none"] = "sif",
        batch_size: int = 256,
        show_progress: bool = False,
    ) -> StaticEncoder:
        """Train a tokenizer on ``texts``; initialise each token's row from ``teacher`` (Model2Vec).

        Every vocabulary token (word-start mark ``▁`` removed) is embedded alone by the
        teacher, the table is reduced to ``dim`` with PCA, then scaled by SIF weights
        estimated from the token frequencies in ``texts`` unless ``token_weighting="none"``.
        """
        if token_weighting not in ("sif", "none"):
            raise ValueError(f"token_weighting must be 'sif' or 'none', got {token_weighting!r}")
        if dim > teacher.dim:
            raise ValueError(f"dim={dim} exceeds the teacher's dimension {teacher.dim}; PCA cannot add dimensions")
        tokenizer = train_tokenizer(texts, vocab_size)
        tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]
        words = [token.removeprefix(WORD_START) or token for token in tokens]
        table = torch.from_numpy(teacher.encode(words, batch_size, normalize=False, show_progress=show_progress))
        table = pca(table, dim)
        if token_weighting == "sif":
            table *= sif_weights(tokenizer, texts).unsqueeze(1)
        return cls(tokenizer, dim, max_length, projection_dim, seed, embeddings=table)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids ``[B, T]``, truncated to ``max_length``, padded with 0; a text without
        tokens gets ``[UNK]``."""
        unknown = [self.tokenizer.token_to_id(UNK)]
        encodings = self.tokenizer.encode_batch(check_texts(texts), add_special_tokens=False)
        rows = [e.ids[: self.max_length] or unknown for e in encodings]
        ids = np.zeros((len(rows), max(1, max(map(len, rows), default=0))), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        return {"input_ids": torch.from_numpy(ids)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.projection(self.embedding(batch["input_ids"]))

    def config(self) -> dict[str, Any]:
        return {
            "dim": self.embedding.embedding_dim,
            "max_length": self.max_length,
            "projection_dim": self.projection_dim,
            "seed": self.seed,
            "vocab_size": self.embedding.num_embeddings,
        }

    def _save_files(self, directory: Path) -> None:
        with atomic_open(directory / TOKENIZER_FILE) as handle:
            handle.write(self.tokenizer.to_str())
        save_tensors(self.state_dict(), directory / WEIGHTS_FILE)

    @classmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> StaticEncoder:
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        settings = {key: config[key] for key in ("dim", "max_length", "projection_dim", "seed")}
        encoder = cls(tokenizer, **settings)
        encoder.load_state_dict(load_tensors(directory / WEIGHTS_FILE))
        return encoder


def pca(table: torch.Tensor, dim: int) -> torch.Tensor:
    """Project the centred rows of ``table`` onto their top ``dim`` principal axes.

    When there are fewer rows than ``dim`` the missing components are zero.
    """
    centred = table - table.mean(0)
    _, _, axes = torch.linalg.svd(centred, full_matrices=False)
    reduced = centred @ axes[:dim].T
    return torch.nn.functional.pad(reduced, (0, dim - reduced.shape[1]))


def sif_weights(tokenizer: Tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """SIF weight ``a / (a + p(token))`` per vocabulary id, ``p`` counted on ``texts``.

    Tokens never seen in ``texts`` count as seen once, so they weigh as much as the
    rarest seen tokens rather than more.
    """
    counts = np.zeros(tokenizer.get_vocab_size(), dtype=np.float64)
    for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        np.add.at(counts, encoding.ids, 1)
    probability = np.maximum(counts, 1.0) / max(counts.sum(), 1.0)
    return torch.from_numpy(SIF_A / (SIF_A + probability)).float()
