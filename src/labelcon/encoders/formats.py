"""Loading an encoder saved in one of the formats a model directory may hold it in.

A model directory's pointer names its encoder's folder and format when they are not the
default (``model.N/encoder`` in labelcon's format): exports keep the encoder where other
tools look for it (:mod:`labelcon.export`). Formats:

- ``"labelcon"``: ``encoder.json`` + weights, any registered encoder type, the ONNX one
  (:class:`labelcon.encoders.onnx.OnnxEncoder`) included (:func:`load_encoder`);
- ``"sentence-transformers"``: a folder that ``SentenceTransformer(DIR)`` loads, written
  by :func:`labelcon.export.export`: ``modules.json`` and a ``Transformer`` (+ ``Pooling``)
  or ``StaticEmbedding`` module, an optional ``Dense`` projection and ``Normalize``. It is
  read back into labelcon's own :class:`TransformerEncoder` or :class:`StaticEncoder`,
  with the settings the pointer records (``config``: the exported encoder's ``config()``
  and ``type``), from safetensors weights and tokenizer files: nothing in the folder is
  imported or executed, and sentence-transformers need not be installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import safe_open
from tokenizers import Tokenizer

from labelcon.encoders.base import ENCODER_FILE, ENCODER_TYPES, Encoder, load_encoder, load_tensors
from labelcon.encoders.static import StaticEncoder
from labelcon.encoders.transformer import TransformerEncoder
from labelcon.filecheck import damaged, expect_object, reading
from labelcon.io import read_json

#: The sentence-transformers modules an export may hold, by class name.
ST_MODULES = ("Transformer", "Pooling", "StaticEmbedding", "Dense", "Normalize")
#: The files of a sentence-transformers module folder that labelcon reads.
ST_WEIGHTS, ST_TOKENIZER = "model.safetensors", "tokenizer.json"


def load_sentence_transformers(directory: Path, entry: dict[str, Any]) -> Encoder:
    """The labelcon encoder of a sentence-transformers folder written by :mod:`labelcon.export`."""
    modules = _modules(directory)
    config = dict(entry.get("config") or {})
    kind = config.pop("type", None)
    projection = None
    if "Dense" in modules:
        weights = load_tensors(modules["Dense"] / ST_WEIGHTS)
        projection = {"weight": weights["linear.weight"], "bias": weights["linear.bias"]}
    if kind == "transformer" and "Transformer" in modules:
        encoder = TransformerEncoder(**{**config, "model_name_or_path": str(modules["Transformer"])})
        encoder.model_name_or_path = config["model_name_or_path"]
    elif kind == "static" and "StaticEmbedding" in modules:
        folder = modules["StaticEmbedding"]
        table = load_tensors(folder / ST_WEIGHTS)["embedding.weight"]
        settings = {key: config[key] for key in ("dim", "max_length", "projection_dim", "seed")}
        encoder = StaticEncoder(Tokenizer.from_file(str(folder / ST_TOKENIZER)), embeddings=table, **settings)
    else:
        raise ValueError(
            f"{directory}: expected a sentence-transformers export of a transformer or static encoder, "
            f"got encoder type {kind!r} with the modules {sorted(modules)}"
        )
    if projection is not None:
        encoder.projection.load_state_dict(projection)
    return encoder.eval()


def _modules(directory: Path) -> dict[str, Path]:
    """The folder of each module listed in ``modules.json``, by class name."""
    listing = directory / "modules.json"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} not found: {directory} does not hold a sentence-transformers model")
    found: dict[str, Path] = {}
    for module in read_json(listing):
        name = str(module.get("type", "")).rsplit(".", 1)[-1]
        if name not in ST_MODULES:
            raise ValueError(
                f"{listing}: module type {module.get('type')!r} is not one labelcon exports ({', '.join(ST_MODULES)})"
            )
        found[name] = _inside(directory, str(module.get("path", "")))
    return found


def _inside(directory: Path, relative: str) -> Path:
    """``directory / relative``, refusing paths that lead out of ``directory``."""
    path = (directory / relative).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise ValueError(f"{directory}: module path {relative!r} leads outside the model folder")
    return path


#: Loaders by format name: ``(folder, pointer entry) -> Encoder``.
ENCODER_FORMATS: dict[str, Callable[[Path, dict[str, Any]], Encoder]] = {
    "labelcon": lambda folder, entry: load_encoder(folder),
    "sentence-transformers": load_sentence_transformers,
}


def load_encoder_as(folder: Path, entry: dict[str, Any]) -> Encoder:
    """Load the encoder in ``folder`` saved in the format ``entry["format"]`` (default ``"labelcon"``)."""
    kind = entry.get("format", "labelcon")
    if kind not in ENCODER_FORMATS:
        raise ValueError(f"{folder}: unknown encoder format {kind!r}; known formats: {sorted(ENCODER_FORMATS)}")
    return ENCODER_FORMATS[kind](folder, entry)


def read_encoder(directory: Path, entry: dict[str, Any] | None = None, *, device: str = "cpu") -> Encoder:
    """The encoder in ``directory``, saved in the format ``entry["format"]`` (labelcon's own
    by default, loaded onto ``device``; exports in other formats run where their runtime
    puts them; see :func:`labelcon.modeldir.encoder_location`); a failure names the file behind it. For
    labelcon's format: ``encoder.json`` when its fields are not as written, else the first
    JSON or safetensors file there that does not parse, else the folder and ``encoder.json``
    (a file missing, or settings that do not fit the files)."""
    if entry is not None and entry.get("format", "labelcon") != "labelcon":
        with reading(directory):
            return load_encoder_as(directory, entry)

    meta_path = directory / ENCODER_FILE
    with reading(meta_path):
        meta = expect_object(read_json(meta_path), {"type": str, "config": dict}, {"dim": int})
        if meta["type"] not in ENCODER_TYPES:
            raise ValueError(f"expected 'type' to be one of {sorted(ENCODER_TYPES)}, got {meta['type']!r}")
    try:
        encoder = load_encoder(directory, device=device)
    except Exception as error:
        if isinstance(error, FileNotFoundError) and error.filename:
            raise damaged(error.filename, "missing") from error
        cause = f"{type(error).__name__}: {error}"
        broken = _unparsable(directory)
        if broken is not None:
            raise damaged(broken, f"cannot be read ({cause})") from error
        raise damaged(
            directory, f"cannot be loaded from its files and the settings in {ENCODER_FILE} ({cause})"
        ) from error
    if meta.get("dim", encoder.dim) != encoder.dim:
        raise damaged(meta_path, f"says dim {meta['dim']}, but the encoder it describes makes {encoder.dim}")
    return encoder


def _unparsable(directory: Path) -> Path | None:
    """The first JSON or safetensors file under ``directory`` that does not parse."""
    for path in sorted(directory.rglob("*")):
        try:
            if path.suffix == ".json":
                json.loads(path.read_bytes())
            elif path.suffix == ".safetensors":
                with safe_open(path, "np"):
                    pass
        except Exception:
            return path
    return None
