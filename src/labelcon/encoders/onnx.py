"""An encoder run by ONNX Runtime: a labelcon encoder exported as a graph, with its tokenizer.

The folder holds ``model.onnx`` (token tensors in, un-normalised embeddings ``[B, dim]``
out, as ``forward`` gives them), the tokenizer in Hugging Face's files
(``tokenizer.json``, ``tokenizer_config.json``, ...), and ``encoder.json`` (type
``"onnx"``): the graph's input names, ``max_length``, whether the tokenizer adds special
tokens, the quantization and the type of encoder it was exported from.
:func:`labelcon.export.export` writes such folders; ``load_encoder`` reads them. The graph
is data run by ONNX Runtime; loading runs no code from the folder.

Tokenizing pads and truncates as the original encoder does (a transformer's tokenizer with
its special tokens; the static encoder's without, padded with id 0), so the graph sees the
same token ids the original encoder saw; a transformer that reads long texts as windows
(``windows`` ``"mean"`` or ``"max"``, :mod:`labelcon.encoders.windows`) is exported with
its window settings, and the graph embeds each window and the windows are pooled as the
original pools them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from labelcon.encoders.base import ENCODER_FILE, Encoder, check_texts
from labelcon.encoders.windows import (
    OWNER,
    Window,
    WindowRule,
    embed_windows,
    run_windows,
    split_windows,
    window_spans_of,
)
from labelcon.io import atomic_open

GRAPH_FILE = "model.onnx"
OUTPUT = "embeddings"


class OnnxEncoder(Encoder):
    """Tokenizer + ONNX Runtime session, behind the :class:`Encoder` contract (inference only).

    Args:
        directory: the folder holding ``model.onnx`` and the tokenizer files.
        inputs: the graph's input names, in the tokenizer's output names.
        dim: the embedding size.
        max_length: inputs are truncated to this many tokens.
        add_special_tokens: whether the tokenizer adds its special tokens (transformers do).
        quantization: ``"int8"`` for a dynamically quantized graph, else None.
        exported_from: the ``encoder_type`` of the encoder the graph came from.
        windows, max_windows, window_stride: how a long text is read, as the original
            :class:`~labelcon.encoders.TransformerEncoder` reads it.
    """

    encoder_type = "onnx"

    def __init__(
        self,
        directory: str | os.PathLike,
        inputs: Sequence[str],
        dim: int,
        max_length: int,
        add_special_tokens: bool,
        quantization: str | None = None,
        exported_from: str | None = None,
        windows: WindowRule = "first",
        max_windows: int = 8,
        window_stride: int = 32,
    ) -> None:
        super().__init__()
        import onnxruntime

        self.directory = Path(directory)
        self.inputs = list(inputs)
        self.dim = dim
        self.max_length = max_length
        self.add_special_tokens = add_special_tokens
        self.quantization = quantization
        self.exported_from = exported_from
        self.windows, self.max_windows, self.window_stride = windows, max_windows, window_stride
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        self.session = onnxruntime.InferenceSession(
            str(self.directory / GRAPH_FILE), providers=["CPUExecutionProvider"]
        )
        missing = sorted(set(self.inputs) - {node.name for node in self.session.get_inputs()})
        if missing:
            raise ValueError(
                f"{self.directory / GRAPH_FILE}: the graph has no inputs {missing}; export the model again"
            )
        self.eval()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The graph's inputs, padded and truncated to ``max_length`` (at least one column);
        with ``windows``, a row per window and their owners (:data:`OWNER`)."""
        if self.windows != "first":
            encoded, _ = split_windows(
                self.tokenizer, check_texts(texts), self.max_length, self.window_stride, self.max_windows
            )
            return {**{name: encoded[name] for name in self.inputs}, OWNER: encoded["overflow_to_sample_mapping"]}
        encoded = self.tokenizer(
            check_texts(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=self.add_special_tokens,
            return_tensors="pt",
        )
        tensors = {name: encoded[name] for name in self.inputs}
        return {name: t if t.shape[1] else torch.zeros((t.shape[0], 1), dtype=t.dtype) for name, t in tensors.items()}

    def _window_inputs(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], list[Window]]:
        """The graph's inputs for the windows of ``texts`` (as :meth:`tokenize` gives them)
        and the windows' spans, row for row."""
        encoded, rank = split_windows(self.tokenizer, texts, self.max_length, self.window_stride, self.max_windows)
        inputs = {name: encoded[name] for name in self.inputs}
        return {**inputs, OWNER: encoded["overflow_to_sample_mapping"]}, window_spans_of(encoded, rank)

    def _embed_windows(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return embed_windows(self._run, batch)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if OWNER in batch:
            return run_windows(self._run, batch, self.windows)
        return self._run(batch)

    def _run(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: batch[name].cpu().numpy() for name in self.inputs}
        return torch.from_numpy(self.session.run([OUTPUT], feed)[0])

    def config(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "dim": self.dim,
            "max_length": self.max_length,
            "add_special_tokens": self.add_special_tokens,
            "quantization": self.quantization,
            "exported_from": self.exported_from,
            "windows": self.windows,
            "max_windows": self.max_windows,
            "window_stride": self.window_stride,
        }

    def _save_files(self, directory: Path) -> None:
        """Copy the graph and the tokenizer files (nothing to do when saving into its own folder)."""
        if directory.resolve() == self.directory.resolve():
            return
        for source in sorted(self.directory.iterdir()):
            if source.is_file() and source.name != ENCODER_FILE:
                with open(source, "rb") as reader, atomic_open(directory / source.name, "wb") as writer:
                    while block := reader.read(1 << 20):
                        writer.write(block)

    @classmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> OnnxEncoder:
        return cls(directory, **config)
