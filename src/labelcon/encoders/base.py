"""The encoder contract every labelcon model follows, and saving/loading by type.

An :class:`Encoder` is a ``torch.nn.Module`` that turns raw items (texts, or feature rows
for :class:`~labelcon.encoders.MLPEncoder`) into embeddings in two steps:

- ``tokenize(items) -> dict[str, Tensor]``: CPU tensors whose first dimension is the
  batch (texts padded to the batch's longest, not to ``max_length``), so callers may
  move, slice or concatenate batches without knowing the encoder;
- ``forward(batch) -> Tensor [B, dim]``: un-normalised embeddings (objectives normalise).

``encode`` wraps both for inference; ``save``/``load_encoder`` round-trip a trained
encoder through a directory holding ``encoder.json`` (type + config) and its weights.

>>> import tempfile
>>> from labelcon.encoders import MLPEncoder, load_encoder
>>> enc = MLPEncoder(input_dim=4, hidden_dim=8, output_dim=3)
>>> d = tempfile.mkdtemp()
>>> enc.save(d)
>>> x = [[0.0, 1.0, 2.0, 3.0]]
>>> bool((load_encoder(d).encode(x) == enc.encode(x)).all())
True
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from labelcon.device import pinned, resolve_device, to_device
from labelcon.encoders.windows import OWNER, Window, WindowEmbeddings, pool_windows
from labelcon.feed import ahead_for, prefetched
from labelcon.io import atomic_open, read_json, write_json

ENCODER_FILE = "encoder.json"
FORMAT_VERSION = 1

ENCODER_TYPES: dict[str, type[Encoder]] = {}
"""Encoder classes by their ``encoder_type``, filled as subclasses are defined."""


class Encoder(torch.nn.Module, abc.ABC):
    """Base class: ``tokenize`` + ``forward`` to train, ``encode`` to embed, ``save`` to keep.

    Subclasses set ``encoder_type`` (the name written to ``encoder.json``), ``dim``,
    and implement ``tokenize``, ``forward``, ``config``, ``_save_files`` and ``_load``.
    """

    encoder_type: ClassVar[str]
    dim: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "encoder_type" in cls.__dict__:
            ENCODER_TYPES[cls.encoder_type] = cls

    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Turn a batch of raw items into CPU tensors whose first dimension is the batch."""

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embed a tokenized batch: ``[B, dim]``, not normalised."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings written to ``encoder.json`` and given back to ``_load``."""

    @abc.abstractmethod
    def _save_files(self, directory: Path) -> None:
        """Write weights (and tokenizer files) into ``directory``, each file atomically."""

    @classmethod
    @abc.abstractmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> Encoder:
        """Rebuild the encoder saved in ``directory`` with ``config``."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        normalize: bool = True,
        show_progress: bool = False,
        as_trained: bool = False,
    ) -> np.ndarray:
        """Embed ``texts`` into a float32 array ``[N, dim]``, rows in input order, on the
        device the encoder sits on, ``batch_size`` at a time (None:
        :func:`encode_batch_size` for that device).

        Runs in eval mode without gradients and restores the previous mode afterwards.
        A transformer embeds in its embedding precision (float32 under ``precision="auto"``),
        or with ``as_trained`` in the precision it trains in (bfloat16 where the hardware
        has it): for what only fitting reads, a head's training set and dev, where the
        speed counts and agreement with exported models does not.
        Items are batched longest first, so each batch pads to similar lengths, and the
        next batches are tokenised on a thread while this one is embedded on an
        accelerator (:func:`labelcon.feed.prefetched`). On an accelerator the embeddings
        stay there until the pass ends, or until :data:`HELD_BYTES` of them wait, and come
        to the host in one copy, so no batch waits for the one before to be copied back.
        """
        if isinstance(texts, str):
            raise TypeError("encode expects a sequence of texts, got a single str; wrap it in a list")
        device = self.device
        batch_size = encode_batch_size(device) if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = texts if isinstance(texts, np.ndarray) else list(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        held = _DeviceRows(out, device)
        batches = (
            (index, pinned(self.tokenize([items[i] for i in index]), device))
            for index in _longest_first(items, batch_size)
        )
        was_training = self.training
        self.eval()
        try:
            with (
                torch.no_grad() if as_trained else torch.inference_mode(),
                prefetched(batches, ahead_for(device)) as ready,
                tqdm(total=len(items), disable=not show_progress, desc="encode", unit="text") as bar,
            ):
                for index, batch in ready:
                    z = self(to_device(batch, device))
                    if normalize:
                        z = F.normalize(z, dim=-1)
                    held.add(index, z.float())
                    bar.update(len(index))
                held.flush()
        finally:
            self.train(was_training)
        return out

    def encode_windows(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False
    ) -> WindowEmbeddings:
        """Each text's L2-normalised embedding and those of the windows it was read in
        (:class:`~labelcon.encoders.windows.WindowEmbeddings`), in one pass, for an encoder
        that reads long texts as windows (``windows`` ``"mean"`` or ``"max"``). The text's
        embedding is its windows' embeddings pooled by the encoder's rule, computed as
        :meth:`encode` computes it (the same batches, windows and operations), so it equals
        ``encode(texts, batch_size)`` bit for bit."""
        rule = getattr(self, "windows", "first")
        if rule == "first":
            raise ValueError(
                f"encode_windows reads texts as windows, but this {self.encoder_type} encoder reads only the "
                "first window of each text (windows='first'); train with windows 'mean' or 'max' (--windows)"
            )
        items = check_texts(texts)
        device = self.device
        batch_size = encode_batch_size(device) if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        pooled = np.empty((len(items), self.dim), dtype=np.float32)
        rows: list[tuple[int, int, np.ndarray]] = []  # (text position, rank, embedding) of each window
        spans: list[Window] = []
        batches = (
            (index, *self._window_inputs([items[i] for i in index])) for index in _longest_first(items, batch_size)
        )
        was_training = self.training
        self.eval()
        try:
            with (
                torch.inference_mode(),
                prefetched(batches, ahead_for(device)) as ready,
                tqdm(total=len(items), disable=not show_progress, desc="encode", unit="text") as bar,
            ):
                for index, batch, batch_spans in ready:
                    batch = to_device(pinned(batch, device), device)
                    z = self._embed_windows(batch)
                    item = F.normalize(pool_windows(z, batch[OWNER], len(index), rule), dim=-1)
                    pooled[index] = item.float().cpu().numpy()
                    for span, row in zip(batch_spans, F.normalize(z, dim=-1).float().cpu().numpy(), strict=True):
                        owner = int(index[span.owner])
                        rows.append((owner, span.rank, row))
                        spans.append(Window(owner, span.rank, span.start, span.end))
                    bar.update(len(index))
        finally:
            self.train(was_training)
        order = sorted(range(len(rows)), key=lambda i: rows[i][:2])
        windows = np.stack([rows[i][2] for i in order]) if rows else np.empty((0, self.dim), dtype=np.float32)
        return WindowEmbeddings(pooled, windows, [spans[i] for i in order])

    def _window_inputs(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], list[Window]]:
        """The model's inputs for the windows of ``texts`` (with :data:`OWNER`) and their
        spans, row for row; encoders that read windows implement it."""
        raise NotImplementedError(f"the {self.encoder_type} encoder does not read texts as windows")

    def _embed_windows(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[W, dim]``, un-normalised: each window of ``_window_inputs``' batch embedded
        as ``forward`` embeds it before pooling."""
        raise NotImplementedError(f"the {self.encoder_type} encoder does not read texts as windows")

    def save(self, directory: str | os.PathLike) -> None:
        """Save weights, tokenizer files and ``encoder.json`` into ``directory``.

        Every file is written atomically and ``encoder.json`` comes last, so an interrupted
        first save leaves no ``encoder.json``. To replace an earlier save as one unit, save
        into ``labelcon.io.atomic_directory(directory)``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        write_json(
            directory / ENCODER_FILE,
            {"type": self.encoder_type, "format": FORMAT_VERSION, "dim": self.dim, "config": self.config()},
        )


#: The most embeddings (in bytes) an accelerator holds before they are copied to the host.
HELD_BYTES = 512 * 2**20


class _DeviceRows:
    """Embedded rows gathered where they were computed and written into ``out`` (at
    their row indices) on :meth:`flush`: at the end of a pass, or when
    :data:`HELD_BYTES` are waiting. On the CPU every batch goes straight in."""

    def __init__(self, out: np.ndarray, device: torch.device) -> None:
        self.out, self.direct = out, device.type == "cpu"
        self.indices: list[np.ndarray] = []
        self.rows: list[torch.Tensor] = []
        self.nbytes = 0

    def add(self, index: np.ndarray, rows: torch.Tensor) -> None:
        if self.direct:
            self.out[index] = rows.numpy()
            return
        self.indices.append(index)
        self.rows.append(rows)
        self.nbytes += rows.numel() * rows.element_size()
        if self.nbytes >= HELD_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.out[np.concatenate(self.indices)] = torch.cat(self.rows).cpu().numpy()
        self.indices, self.rows, self.nbytes = [], [], 0


def _longest_first(items: Sequence[Any], batch_size: int) -> Iterator[np.ndarray]:
    """The positions of ``items`` in batches of ``batch_size``, longest items first, so
    each batch pads to similar lengths."""
    order = np.argsort([-len(item) for item in items], kind="stable")
    return (order[start : start + batch_size] for start in range(0, len(items), batch_size))


def encode_batch_size(device: torch.device) -> int:
    """How many items an embedding pass (prediction, the head's training set, dev checks)
    runs at once on ``device``: 128 on a CPU, where larger batches gain nothing; 256 on
    MPS or a CUDA GPU under 16 GiB; 512 on a larger CUDA GPU, whose kernels a batch of 128
    short texts leaves mostly idle. Inference keeps no activations for a backward, so 512
    texts of 256 tokens take a few hundred MiB for a MiniLM-sized model."""
    if device.type == "cuda":
        return 512 if torch.cuda.get_device_properties(device).total_memory >= 16 * 2**30 else 256
    return 256 if device.type == "mps" else 128


def load_encoder(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder saved with :meth:`Encoder.save` in eval mode, onto ``device`` (a
    name for :func:`labelcon.device.resolve_device`; the CPU by default, so a model
    trained on a GPU loads on a machine without one)."""
    directory = Path(directory)
    meta_path = directory / ENCODER_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {directory} does not hold a saved labelcon encoder")
    meta = read_json(meta_path)
    kind = meta.get("type")
    if kind not in ENCODER_TYPES:
        raise ValueError(f"{meta_path}: unknown encoder type {kind!r}; known types: {sorted(ENCODER_TYPES)}")
    encoder = ENCODER_TYPES[kind]._load(directory, meta["config"])
    return encoder.to(resolve_device(device)).eval()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors as safetensors, atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path, device="cpu")


def make_projection(in_dim: int, out_dim: int | None) -> torch.nn.Module:
    """A linear projection head to ``out_dim``, or the identity when ``out_dim`` is None."""
    if out_dim is not None and out_dim < 1:
        raise ValueError(f"projection_dim must be None or >= 1, got {out_dim}")
    return torch.nn.Identity() if out_dim is None else torch.nn.Linear(in_dim, out_dim)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Make parameter initialisation inside the block depend on ``seed`` only.

    The global torch RNG state is restored on exit.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, raising a clear error if an item is not a str."""
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single str; wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"expected a sequence of str, item {i} is {type(text).__name__}: {text!r:.80}")
    return texts
