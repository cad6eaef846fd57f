"""Encoders: texts (or feature rows) to embeddings, trainable, saved and loaded by type.

>>> from labelcon.encoders import build_encoder, load_encoder
>>> enc = build_encoder("static", train_texts=["a b c", "b c d"] * 5, dim=8, vocab_size=50)
>>> enc.encode(["a b"]).shape
(1, 8)
"""

from labelcon.encoders.base import Encoder, load_encoder
from labelcon.encoders.build import (
    are_texts,
    build_encoder,
    resolve_encode_length,
    resolve_max_length,
)
from labelcon.encoders.formats import load_encoder_as, read_encoder
from labelcon.encoders.mlp import MLPEncoder
from labelcon.encoders.offline import SHIPPED, cache_dir, shipped_path
from labelcon.encoders.onnx import OnnxEncoder
from labelcon.encoders.static import StaticEncoder, train_tokenizer
from labelcon.encoders.transformer import EncoderNotFoundError, RemoteCodeError, TransformerEncoder
from labelcon.encoders.windows import Window, WindowEmbeddings, pool_windows, resolve_windows

__all__ = [
    "Encoder",
    "EncoderNotFoundError",
    "MLPEncoder",
    "RemoteCodeError",
    "OnnxEncoder",
    "StaticEncoder",
    "TransformerEncoder",
    "build_encoder",
    "resolve_encode_length",
    "are_texts",
    "resolve_max_length",
    "resolve_windows",
    "pool_windows",
    "Window",
    "WindowEmbeddings",
    "cache_dir",
    "load_encoder",
    "SHIPPED",
    "shipped_path",
    "load_encoder_as",
    "read_encoder",
    "train_tokenizer",
]
