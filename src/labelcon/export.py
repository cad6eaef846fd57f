"""Export a trained model to sentence-transformers or ONNX, its label decisions kept beside it.

``export(run, out, format)`` writes a new folder ``out`` as a whole
(:func:`labelcon.io.atomic_directory`):

- ``"sentence-transformers"``: the encoder as sentence-transformers modules, saved by
  sentence-transformers itself, so ``SentenceTransformer(out)`` loads it offline: a
  transformer as ``Transformer`` + ``Pooling`` (+ ``Dense`` for a projection) +
  ``Normalize``, the static encoder as ``StaticEmbedding`` (its tokenizer truncating at
  the encoder's ``max_length``) (+ ``Dense``) + ``Normalize``;
- ``"onnx"``: ``out/onnx/``: the encoder as one ONNX graph (token tensors -> embeddings,
  pooling and projection inside), its tokenizer, and with ``quantize="int8"`` the graph's
  weights quantized by ``onnxruntime.quantization.quantize_dynamic``.

Beside the encoder, ``out`` is a labelcon model directory (:mod:`labelcon.modeldir`):
``labelcon.json`` points at ``model.1/`` (the prediction stage's files and
``config.yaml``) and names the encoder's folder and format, so ``Labelcon.load(out)`` and
``labelcon predict out`` predict with it (the ONNX graph through ONNX Runtime);
``metrics.json`` and a model card ``README.md`` (:mod:`labelcon.card`) come along.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from labelcon.encoders import Encoder, OnnxEncoder, StaticEncoder, TransformerEncoder
from labelcon.encoders.onnx import GRAPH_FILE, OUTPUT
from labelcon.encoders.static import PAD, UNK
from labelcon.io import atomic_directory, read_json, write_json
from labelcon.modeldir import LOCK_FILE, MODEL_FILE, publish, resolve

Format = Literal["sentence-transformers", "onnx"]
FORMATS = ("sentence-transformers", "onnx")
QUANTIZATIONS = ("int8",)
ONNX_DIR = "onnx"
OPSET = 17


class ExportError(ValueError):
    """An export that cannot be made as asked."""


def export(
    model: Any, out: str | os.PathLike, format: Format, *, quantize: str | None = None, overwrite: bool = False
) -> Path:
    """Export ``model`` (a model directory, or a fitted :class:`labelcon.Labelcon`) into the
    new folder ``out`` (see the module docstring); ``overwrite`` replaces an earlier export."""
    from labelcon.card import write_card
    from labelcon.estimator import Labelcon

    source = Path(model) if isinstance(model, (str, os.PathLike)) else None
    model = Labelcon.load(source) if source is not None else model
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r} (--format); expected one of {', '.join(FORMATS)}")
    if quantize is not None and (format != "onnx" or quantize not in QUANTIZATIONS):
        raise ExportError(f"--quantize {quantize} applies to --format onnx and takes {', '.join(QUANTIZATIONS)}")
    encoder = model.encoder_
    if not isinstance(encoder, (TransformerEncoder, StaticEncoder)):
        raise ExportError(
            f"exports hold text encoders (transformer, static); this model's encoder is "
            f"{getattr(encoder, 'encoder_type', type(encoder).__name__)!r}"
        )
    out = Path(out)
    _check_out(out, overwrite)
    origin = {
        "format": format,
        "quantize": quantize,
        "directory": str(source.resolve()) if source else None,
        "model": resolve(source)[1].get("model") if source else None,
    }
    with atomic_directory(out) as staging:
        if format == "sentence-transformers":
            entry = {"path": ".", "format": format, "config": {**encoder.config(), "type": encoder.encoder_type}}
            write_sentence_transformers(encoder, staging)
        else:
            entry = {"path": ONNX_DIR, "format": "labelcon"}
            write_onnx(encoder, staging / ONNX_DIR, quantize=quantize)

        def write(folder: Path) -> None:
            if model.stage_ is not None:
                model.stage_.save(folder)
            (folder / "config.yaml").write_text(model.config.to_yaml(), encoding="utf-8")

        labels = len(model.stage_.labels) if model.stage_ is not None else 0
        publish(
            staging, write, {"objective": model.objective_, "labels": labels, "encoder": entry, "exported_from": origin}
        )
        if model.metrics_:
            write_json(staging / "metrics.json", model.metrics_)
        # the card describes the export as loaded, which also checks that it loads
        write_card(staging, Labelcon.load(staging), run_dir=source, export=origin, name=out.name)
        (staging / LOCK_FILE).unlink(missing_ok=True)
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    """``out`` must be new or empty, or with ``overwrite`` an earlier export."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    pointer = out / MODEL_FILE
    earlier = pointer.is_file() and isinstance(meta := read_json(pointer), dict) and "exported_from" in meta
    if not earlier:
        raise ExportError(f"{out}: exists and is not an empty folder or an earlier export; choose another --out")
    if not overwrite:
        raise ExportError(f"{out}: holds an earlier export; pass --overwrite (Python: overwrite=True) to replace it")


# ---------------------------------------------------------------------- sentence-transformers
def write_sentence_transformers(encoder: Encoder, directory: Path) -> None:
    """Save ``encoder`` as a sentence-transformers model folder in ``directory``."""
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import (
            Dense,
            Normalize,
            Pooling,
            StaticEmbedding,
            Transformer,
        )
    except ImportError as error:
        raise ExportError(
            f"--format sentence-transformers needs sentence-transformers 6 or later "
            f"(pip install 'labelcon[export]'): {error}"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(encoder, TransformerEncoder):
            encoder.model.save_pretrained(tmp)
            encoder.tokenizer.save_pretrained(tmp)
            first = Transformer(tmp, max_seq_length=encoder.max_length)
            modules = [first, Pooling(first.get_embedding_dimension(), pooling_mode=encoder.pooling)]
        else:
            tokenizer = encoder.tokenizer.__class__.from_str(encoder.tokenizer.to_str())
            tokenizer.enable_truncation(encoder.max_length)  # the static encoder reads max_length tokens of a text
            modules = [StaticEmbedding(tokenizer, embedding_weights=encoder.embedding.weight.detach().clone())]
        if isinstance(encoder.projection, torch.nn.Linear):
            dense = Dense(
                encoder.projection.in_features,
                encoder.projection.out_features,
                bias=True,
                activation_function=torch.nn.Identity(),
            )
            dense.linear.load_state_dict(encoder.projection.state_dict())
            modules.append(dense)
        SentenceTransformer(modules=[*modules, Normalize()], device="cpu").save(str(directory))


# ---------------------------------------------------------------------- ONNX
#: The TorchScript-tracing exporter: asked for by name where torch.onnx.export has a
#: ``dynamo`` switch (torch 2.5 on, whose later releases default to the dynamo exporter);
#: the only exporter before that.
_TRACING_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


class _TransformerGraph(torch.nn.Module):
    """A transformer encoder's forward (pooling and projection included) over positional inputs."""

    def __init__(self, encoder: TransformerEncoder, inputs: list[str]) -> None:
        super().__init__()
        self.encoder, self.inputs = encoder, inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.encoder(dict(zip(self.inputs, tensors, strict=True)))


class _StaticGraph(torch.nn.Module):
    """The static encoder's mean of token embeddings, padding left out, then its projection:
    ``EmbeddingBag`` written as a masked mean, which ONNX exports."""

    def __init__(self, encoder: StaticEncoder) -> None:
        super().__init__()
        self.weight, self.padding = encoder.embedding.weight, encoder.embedding.padding_idx
        self.projection = encoder.projection

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.padding).unsqueeze(-1).to(self.weight.dtype)
        summed = (F.embedding(input_ids, self.weight) * mask).sum(1)
        return self.projection(summed / mask.sum(1).clamp(min=1))


def _trace(graph: torch.nn.Module, sample: dict[str, torch.Tensor], inputs: list[str], path: Path) -> None:
    """Export ``graph`` to ``path`` by tracing it on ``sample``, batch and token axes dynamic."""
    dynamic = {name: {0: "batch", 1: "tokens"} for name in inputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow it froze at these shapes
        torch.onnx.export(
            graph.eval(),
            tuple(sample[name] for name in inputs),
            str(path),
            input_names=inputs,
            output_names=[OUTPUT],
            dynamic_axes={**dynamic, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            **_TRACING_EXPORTER,
        )


def write_onnx(encoder: Encoder, directory: Path, *, quantize: str | None = None) -> OnnxEncoder:
    """Export ``encoder`` as ``directory/model.onnx`` with its tokenizer and ``encoder.json``;
    returns the :class:`OnnxEncoder` that runs it."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise ExportError(
            f"--format onnx needs onnx and onnxruntime (pip install 'labelcon[export]'): {error}"
        ) from None
    directory.mkdir(parents=True)
    encoder = copy.deepcopy(encoder).eval()  # exported in float32, the caller's encoder untouched
    windows = {}
    if isinstance(encoder, TransformerEncoder):
        # the graph embeds one window a row; the OnnxEncoder cuts and pools windows as the encoder does
        windows = {
            "windows": encoder.windows,
            "max_windows": encoder.max_windows,
            "window_stride": encoder.window_stride,
        }
        encoder.windows = "first"
        encoder.precision = "float32"
        encoder.tokenizer.save_pretrained(directory)
        sample = encoder.tokenize(["a first text to trace the graph with", "a second"])
        inputs, graph = list(sample), _TransformerGraph(encoder, list(sample))
    else:
        from transformers import PreTrainedTokenizerFast

        tokenizer = encoder.tokenizer.__class__.from_str(encoder.tokenizer.to_str())
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK).save_pretrained(directory)
        sample = encoder.tokenize(["a first text to trace the graph with", "a second"])
        inputs, graph = ["input_ids"], _StaticGraph(encoder)
    path = directory / GRAPH_FILE
    try:
        _trace(graph, sample, inputs, path)
    except (TypeError, RuntimeError):
        # torch before 2.4 cannot translate the scaled_dot_product_attention call of
        # transformers 5 into ONNX; the same model with plain (eager) attention it can
        if not isinstance(encoder, TransformerEncoder) or encoder.model.config._attn_implementation == "eager":
            raise
        encoder.model.config._attn_implementation = "eager"
        _trace(graph, sample, inputs, path)
    if quantize == "int8":
        quantized = directory / f"int8.{GRAPH_FILE}"
        logging.disable(logging.WARNING)  # its advice to pre-process the graph, meant for static quantization
        try:
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        os.replace(quantized, path)
    onnx_encoder = OnnxEncoder(
        directory,
        inputs,
        encoder.dim,
        encoder.max_length,
        add_special_tokens=isinstance(encoder, TransformerEncoder),
        quantization=quantize,
        exported_from=encoder.encoder_type,
        **windows,
    )
    onnx_encoder.save(directory)
    return onnx_encoder
