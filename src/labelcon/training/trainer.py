"""The training loop: any encoder, any objective, one loop.

AdamW with linear warmup and decay, gradient clipping, optional GradCache chunks, an
evaluation on dev after every epoch that keeps the best weights (skipped when the
wall-clock budget will end the run within the next epoch), early stopping
(:func:`labelcon.training.schedule.stop_now`; under ``epochs="auto"`` with a budget the
run then trains one last epoch with the learning rate decaying to 0), a wall-clock budget
that leaves the embedding passes after training their time
(:class:`labelcon.training.budget.RunBudget`; the embedding rate comes from the dev
checks, whose ``texts`` attribute says how many texts each embeds), and checkpoints from
which an interrupted run resumes at the batch where it stopped. Checkpoints hold tensors
and plain values only and are read with ``torch.load(weights_only=True)``, so a
checkpoint file cannot run code; one is written every ``config.checkpoint_minutes`` of
training and at every epoch's end. A loss that is
not finite, or an update that leaves weights that are not, stops the run with
:class:`TrainingDiverged` before a checkpoint or a dev check sees such weights.

A step never waits for the device to report a value: the losses stay on the device
(:class:`labelcon.training.tally.LossTally`) until the logging interval, every
``total_steps // LOSS_POINTS`` steps, reads their mean (one transfer) and checks that
it is finite; the objectives run inside
:func:`labelcon.objectives.checks.trusted_inputs`, the label matrix (and feature rows)
having been checked once for the data set in :meth:`Trainer.fit`. Under ``torchrun`` the
processes agree on the time (rank 0's clock, for the budget, the learning rate and the
checkpoints) on the logging interval, not every step. So a loss that turns NaN is seen
at the end of its interval, naming its step, after the updates of that interval; the
checkpoints and dev checks that follow never see its weights.

Everything that holds tensors sits on the run's device (``config.device``, see
:mod:`labelcon.device`): the encoder, the objective, the momentum encoder and its queue,
each batch and its labels. For an accelerator the next batches are tokenised on a
thread while the current one trains (:mod:`labelcon.feed`), into pinned memory for a
CUDA device; on the CPU each batch is made when its step starts. Checkpoints
are read onto the CPU and their tensors copied onto this run's device, so a run resumes
on another device than it started on. Under float16 autocast (older CUDA GPUs) a
gradient scaler scales the loss before backward and unscales the gradients before
clipping; elsewhere it does nothing.

**Pairs** (:class:`labelcon.data.pairs.PairRecords`: text tuples or scored pairs) train
with a :class:`labelcon.objectives.PairLoss` (``pair_objective``). Alone (no labelled
items), they are the run's batches (:class:`labelcon.sampling.PairBatchSampler`). Beside
labelled items, every ``pair_every``-th labelled step (steps 0, k, 2k, ...) also takes
the next pair batch and adds ``pair_weight`` times its loss to the step's loss (its own
forward and backward). The two gradients are clipped to ``max_grad_norm`` each on its own
before they add up (the pairs' then ``pair_weight`` times that), and the sum is clipped as
every step's is: at MiniLM's start a CoSENT gradient (32 STS-B pairs) is 11-21 times
the norm of the label objective's (64 GoEmotions items), so one joint clip left the labels'
part of a pair step 5-9% of its size on a label-only step (``bench/bench_pair_gradients.py``).
The pair batch of a step follows from the step number, so a resumed run draws the same
ones. Pair batches embed each column in one forward (no GradCache chunks).

The trainer knows nothing about which objective it runs: it only asks whether the
objective wants a second view (``needs_positives``) or the label texts
(``needs_label_embeddings``), and then which of them to embed this step
(``sample_labels``, with a generator seeded by the run's seed, the process's rank and
the step, so a rerun or a resumed run draws the same labels).

Keys beyond the batch's own come from two places:

- **a momentum queue** (``config.queue_size``; MoCo, He et al. 2020; ESimCSE, Wu et al.
  2022): a copy of the encoder, updated as ``m * copy + (1 - m) * encoder`` after every
  optimizer step and kept in eval mode, embeds each batch without gradients; those keys
  and their labels wait in a FIFO queue and join later batches' keys (``keys=``,
  ``key_labels=``). For objectives that take a second view (InfoNCE / SimCSE, MulSupCon's
  MoCo form) the copy embeds the view, which then serves as the positives (each item's
  own key), and the queue adds keys (with their labels when the items have labels).
  Objectives that contrast items with label texts take no keys and no queue.
- **other processes** (``torchrun``, see :mod:`labelcon.training.distributed`): the
  encoder is wrapped in ``DistributedDataParallel`` (told to look for parameters the
  embeddings do not reach only when the encoder has some); each process's anchors are its
  local batch, and every process's embeddings (and labels) join the keys through
  :func:`labelcon.objectives.gather_others`. The local batch comes first in the key set,
  so the objectives' own self-mask stays right. The all-gather's backward sums each
  process's gradient into the slice it owns and DDP averages over the processes, so
  with as many anchor units on every process (every anchor with a positive for SupCon,
  always for InfoNCE) the update equals the single-process update on the concatenated
  batch with no further scaling. The queue holds every process's keys, in rank order.
"""

from __future__ import annotations

import copy
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from labelcon.data.pairs import PairRecords
from labelcon.device import pinned, precision_for, resolve_device, tf32_matmuls, to_device
from labelcon.feed import ahead_for, prefetched
from labelcon.io import atomic_torch_save
from labelcon.objectives import MomentumQueue, gather_others, gather_with_grad, momentum_update
from labelcon.objectives.checks import trusted_inputs
from labelcon.sampling import LabelAwareBatchSampler, PairBatchSampler
from labelcon.training import distributed
from labelcon.training.budget import RunBudget
from labelcon.training.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    TrainState,
    check_resumable,
    generator_state,
    read_checkpoint,
    restore_generator_state,
)
from labelcon.training.gradcache import cached_backward
from labelcon.training.labels import batch_labels
from labelcon.training.schedule import (
    AUTO_EPOCHS,
    budget_ends_next_epoch,
    epoch_batches,
    epoch_limit,
    linear_warmup_decay,
    passes_per_epoch,
    steps_within_budget,
    stop_now,
)
from labelcon.training.settings import TrainingSettings
from labelcon.training.tally import LossTally

#: About this many points of the training loss per run: each the mean over a window of
#: steps, read from the device at the window's end (the logging interval).
LOSS_POINTS = 200


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite, mostly from too high a learning rate."""


#: The fields of a checkpoint's ``state`` that a run reads back (others, from older runs, are left).
_STATE_FIELDS = frozenset(TrainState.__dataclass_fields__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with numpy scalars as Python numbers, as checkpoints hold them."""
    return {name: value.item() if isinstance(value, np.generic) else value for name, value in metrics.items()}


def _take(items: Sequence | np.ndarray, rows: Sequence[int]) -> Any:
    if isinstance(items, np.ndarray):
        return items[np.asarray(rows)]
    return [items[i] for i in rows]


def _chunks(items: Any, size: int) -> list[Any]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _check_training_data(items: Sequence | np.ndarray, labels: sp.csr_matrix, pairs_only: bool = False) -> None:
    """Check once, for the whole data set, what the steps then take on trust
    (:func:`labelcon.objectives.checks.trusted_inputs`): one label row per item, label
    values 0 or 1, finite feature rows; at least 2 items unless pairs alone train."""
    if len(items) != labels.shape[0]:
        raise ValueError(f"{len(items)} items but {labels.shape[0]} label rows")
    if len(items) < 2 and not pairs_only:
        raise ValueError(f"contrastive training needs at least 2 training items, got {len(items)}")
    values = sp.csr_matrix(labels).data
    if not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))][:3].tolist()
        raise ValueError(f"the label matrix must hold only 0 and 1; got values such as {bad}")
    if isinstance(items, np.ndarray) and items.dtype.kind in "fc" and not np.isfinite(items).all():
        rows = np.flatnonzero(~np.isfinite(items.reshape(len(items), -1)).all(axis=1))[:3].tolist()
        raise ValueError(f"feature rows must be finite; rows {rows} hold NaN or inf values")


def _cpu_copy(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``weights`` in CPU memory: the best weights wait there, not on a GPU."""
    return {name: value.detach().to("cpu", copy=True) for name, value in weights.items()}


class Prepared(NamedTuple):
    """One step's batch, made ready before the step (on an accelerator, while the step
    before runs): its ``items`` and their tokenised ``anchors`` (the chunks the step
    embeds, in pinned memory for a CUDA device)."""

    items: Any
    anchors: list[dict[str, torch.Tensor]]


class PairBatch(NamedTuple):
    """One step's batch of pairs: its record ``items`` (indices), each text column
    tokenised, and the gold ``scores`` of scored pairs (None for tuples)."""

    items: list[int]
    columns: list[dict[str, torch.Tensor]]
    scores: torch.Tensor | None


def _take_clipped_grads(params: list[torch.Tensor], limit: torch.Tensor) -> list[torch.Tensor | None]:
    """The gradients of ``params``, scaled down together so that their joint norm is at
    most ``limit`` (a tensor on their device: nothing is read back to the host), and taken
    out of the parameters (each ``.grad`` set to None, for the next backward to fill)."""
    grads = [param.grad for param in params]
    present = [grad for grad in grads if grad is not None]
    if present:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(grad.float()) for grad in present]))
        factor = torch.clamp(limit / (norm + 1e-6), max=1.0)
        for grad in present:
            grad.mul_(factor.to(grad.dtype))
    for param in params:
        param.grad = None
    return grads


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Train ``encoder`` with ``objective`` on items and their label matrix.

    ``evaluate(encoder) -> dict`` runs after each epoch; the run keeps the weights with the
    highest ``select_metric`` and stops after ``config.patience`` epochs without progress.
    With ``run_dir`` set, a checkpoint is written every ``config.checkpoint_minutes`` of
    training and after each epoch, and ``fit(..., resume=True)`` continues from it. Under
    ``torchrun`` only rank 0 evaluates and writes; see the module docstring.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        objective: torch.nn.Module,
        config: TrainingSettings,
        *,
        run_dir: str | Path | None = None,
        evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        select_metric: str = "macro_ap",
        label_texts: Sequence[str] | None = None,
        view: Callable[[str, np.random.Generator], str] | None = None,
        show_progress: bool = True,
        pair_objective: torch.nn.Module | None = None,
        pair_weight: float = 1.0,
        pair_batch_size: int | None = None,
        pair_every: int = 1,
        after_items: int = 0,
        length_ratio: float = 1.0,
        reusable_items: int = 0,
    ) -> None:
        needs_label_embeddings = getattr(objective, "needs_label_embeddings", False)
        if needs_label_embeddings and not label_texts:
            raise ValueError(f"objective {type(objective).__name__} needs label texts; none were given")
        if needs_label_embeddings and config.queue_size:
            raise ValueError(
                f"objective {type(objective).__name__} contrasts items with label texts and takes no extra keys: "
                f"a momentum queue (queue_size={config.queue_size}) does not apply to it"
            )
        self.encoder = encoder
        self.objective = objective
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.evaluate = evaluate
        self.select_metric = select_metric
        self.label_texts = list(label_texts) if label_texts else None
        self.view = view or (lambda text, rng: text)
        self.show_progress = show_progress
        self.pair_objective = pair_objective.to(resolve_device(config.device)) if pair_objective is not None else None
        self.pair_weight = pair_weight
        self.pair_batch_size = pair_batch_size or config.batch_size
        if pair_every < 1:
            raise ValueError(f"pair_every must be a whole number >= 1, got {pair_every}")
        self.pair_every = pair_every
        #: Texts the caller embeds once training ends, ``length_ratio`` times as long each:
        #: the time budget leaves them their time (:mod:`labelcon.training.budget`).
        self.after_items, self.length_ratio = after_items, length_ratio
        #: Of those, the texts that the best epoch's dev check embeds for the caller: no pass
        #: once a check has kept an epoch.
        self.reusable_items = reusable_items
        #: What the dev check of the best epoch embedded (its ``embeddings`` attribute), if any.
        self.best_embeddings: Any = None
        #: The pairs of this run and their batches (set by :meth:`fit` when it gets pairs).
        self.pairs: PairRecords | None = None
        self.pair_sampler: PairBatchSampler | None = None
        self.state = TrainState()
        #: What a step runs: the encoder, or its DistributedDataParallel wrapper.
        self.model: torch.nn.Module = encoder
        #: The momentum copy of the encoder and the key queue (with ``config.queue_size``).
        self.momentum_encoder: torch.nn.Module | None = None
        self.queue: MomentumQueue | None = None
        self._view_rng = np.random.default_rng(config.seed)
        self.device = resolve_device(config.device)
        precision = precision_for(getattr(encoder, "precision", "float32"), self.device)
        encoder.to(self.device)
        objective.to(self.device)
        #: Scales the loss under float16 autocast; does nothing otherwise.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision.grad_scaler)
        #: Whether a step's float32 matrix products run as TF32 (see labelcon.device).
        self.tf32 = precision.tf32
        # the step and the thread that prepares the next batch share the tokenizer
        self._tokenizer_lock = threading.Lock()

    # ------------------------------------------------------------------ set-up
    def _start(self, items: Sequence | np.ndarray) -> None:
        """Join the process group (under ``torchrun``), seed this process, and build what
        the steps use: the DDP wrapper (two of ``items`` tell it whether to look for unused
        parameters), the momentum encoder and the queue."""
        cfg = self.config
        distributed.init_from_env(self.device)
        if isinstance(cfg.nproc, int) and cfg.nproc > 1 and distributed.world_size() == 1:
            raise ValueError(
                f"nproc={cfg.nproc} asks for {cfg.nproc} processes but this one trains alone: start it with "
                f"`labelcon train --nproc {cfg.nproc} ...` or "
                f"`torchrun --nproc-per-node {cfg.nproc} -m labelcon train ...`"
            )
        rank = distributed.rank()
        seed_everything(cfg.seed + rank)
        self._view_rng = np.random.default_rng(cfg.seed + rank)
        if cfg.queue_size:
            self.momentum_encoder = copy.deepcopy(self.encoder).eval().requires_grad_(False)
            self.queue = MomentumQueue(cfg.queue_size, self.encoder.dim, device=self.device)
        self.model = self.encoder
        if distributed.active():
            self.model = DistributedDataParallel(
                self.encoder,
                **distributed.constant_buffers_option(),
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self._has_unused_parameters(items),
            )

    def _has_unused_parameters(self, items: Sequence | np.ndarray) -> bool:
        """Whether a trainable parameter of the encoder does not reach its embeddings (a
        Hugging Face model's pooler under mean pooling), so DDP must look for such
        parameters after every backward. Found by one backward of two items in eval mode
        (no dropout draws, no batch-norm updates), its gradients then cleared."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            self.encoder(to_device(self.encoder.tokenize(_take(items, [0, 1])), self.device)).sum().backward()
            return any(p.grad is None for p in self.encoder.parameters() if p.requires_grad)
        finally:
            self.encoder.zero_grad(set_to_none=True)
            self.encoder.train(was_training)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_FILE if self.run_dir else None

    def _save_checkpoint(self, optimizer, scheduler, best_weights) -> None:
        """Rank 0 writes the checkpoint, holding every process's random generators."""
        if self.checkpoint_path is None:
            return
        rng = distributed.gather_objects(generator_state(self._view_rng, self.device))
        if not distributed.is_main_process():
            return
        payload = {
            "state": asdict(self.state),
            "world_size": len(rng),
            "encoder": self.encoder.state_dict(),
            "best": best_weights,
            "rng": rng,
        }
        if self.queue is not None:
            payload["momentum_encoder"] = self.momentum_encoder.state_dict()
            payload["queue"] = self.queue.state_dict()
        if not self.state.finished:
            payload["optimizer"] = optimizer.state_dict()
            payload["scheduler"] = scheduler.state_dict()
            if self.scaler.is_enabled():
                payload["scaler"] = self.scaler.state_dict()
        atomic_torch_save(payload, self.checkpoint_path)

    def _load_checkpoint(self, optimizer, scheduler) -> dict | None:
        """Rank 0 reads the checkpoint (:func:`read_checkpoint`) and hands it, or the error
        reading it, to every process (no shared disk needed)."""
        path = self.checkpoint_path
        if path is None:
            return None
        payload: dict | CheckpointError | None = None
        if distributed.is_main_process() and path.exists():
            try:
                payload = read_checkpoint(path)
            except CheckpointError as error:
                payload = error
        payload = distributed.broadcast_object(payload)
        if isinstance(payload, CheckpointError):
            raise payload
        if payload is None:
            return None
        check_resumable(payload, path, distributed.world_size(), self.config.queue_size)
        saved_queue = payload.get("queue")
        self.state = TrainState(**{name: value for name, value in payload["state"].items() if name in _STATE_FIELDS})
        self.encoder.load_state_dict(payload["encoder"])
        if saved_queue is not None:
            self.momentum_encoder.load_state_dict(payload["momentum_encoder"])
            self.queue.load_state_dict(saved_queue)
        if "optimizer" in payload:  # its state follows the parameters onto this run's device
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
        if "scaler" in payload and self.scaler.is_enabled():
            self.scaler.load_state_dict(payload["scaler"])
        restore_generator_state(payload["rng"][distributed.rank()], self._view_rng, self.device)
        return payload["best"]

    # ------------------------------------------------------------------ divergence
    def _diverged(self, step: int, what: str) -> TrainingDiverged:
        """The error that stops a run at ``step`` (1-based) because ``what`` is not finite."""
        path = self.checkpoint_path
        kept = f"; {path} keeps the last checkpoint from before" if path is not None and path.exists() else ""
        return TrainingDiverged(
            f"training diverged at step {step}: {what}. Lower the learning rate (--lr / lr=; this run has "
            f"lr={self.config.lr:g}){kept}"
        )

    def _check_weights(self, loss: float) -> None:
        """Raise :class:`TrainingDiverged` when the last step's update (at ``loss``) made a
        weight NaN or inf. Run before every checkpoint and dev check."""
        if not all(torch.isfinite(p).all() for p in self.encoder.parameters()):
            raise self._diverged(
                self.state.global_step, f"the loss was {loss:.4g}, but the update made weights NaN or inf"
            )

    # ------------------------------------------------------------------ one step
    def _tokenized(self, items: Any) -> list[dict[str, torch.Tensor]]:
        """``items`` tokenised as a step embeds them: in chunks of ``mini_batch_size``
        (GradCache), or as one chunk; in pinned memory for a CUDA device."""
        with self._tokenizer_lock:
            return [
                pinned(self.encoder.tokenize(chunk), self.device)
                for chunk in _chunks(items, self.config.mini_batch_size or len(items))
            ]

    def _prepare(
        self, items: Sequence | np.ndarray, labels: sp.csr_matrix, rows: list[int]
    ) -> tuple[Prepared, torch.Tensor]:
        """The batch of ``rows`` and its label rows, ready for a step (for an accelerator
        the loop prepares the next ones on a thread, :func:`labelcon.feed.prefetched`).
        Off the CPU, with GradCache chunks, the rows go shortest text first, so each chunk
        pads to texts of like length (the loss does not depend on the order of a batch's
        rows; the CPU keeps the sampler's order and so its results of before)."""
        if self.config.mini_batch_size and self.device.type != "cpu" and not isinstance(items, np.ndarray):
            rows = sorted(rows, key=lambda row: len(items[row]))
        chosen = _take(items, rows)
        return Prepared(chosen, self._tokenized(chosen)), batch_labels(labels, rows)

    def _loss(self, items: Any, labels: torch.Tensor) -> torch.Tensor:
        """Forward and backward of one batch; returns this process's loss, detached, on the
        device (not read back: see the module docstring).

        ``items``: the batch's items, or a :class:`Prepared` batch whose anchors are
        tokenised already. Anchors are the batch's embeddings; the keys beyond the batch
        are the other processes' embeddings and the queue; afterwards the batch's momentum
        keys (with their labels, from every process) join the queue.
        """
        if isinstance(items, PairBatch):  # pairs alone
            return self._pair_loss(items, 1.0)
        objective = self.objective
        batch = items if isinstance(items, Prepared) else Prepared(items, self._tokenized(items))
        views = [self.view(text, self._view_rng) for text in batch.items] if objective.needs_positives else None
        streams = [batch.anchors]
        momentum_keys = None
        if self.momentum_encoder is not None:
            momentum_keys = self._embed_keys(self._tokenized(views) if views is not None else batch.anchors)
        elif views is not None:
            streams.append(self._tokenized(views))
        label_targets = labels
        if objective.needs_label_embeddings:  # chosen from the labels in host memory
            rng = np.random.default_rng([self.config.seed, distributed.rank(), self.state.global_step])
            label_ids, label_targets = objective.sample_labels(labels, rng)
            texts = self.label_texts if label_ids is None else _take(self.label_texts, label_ids.numpy())
            streams.append(self._tokenized(texts))
        labels = labels.to(self.device, non_blocking=True)
        label_targets = label_targets.to(self.device, non_blocking=True)
        streams = [[to_device(chunk, self.device) for chunk in chunks] for chunks in streams]

        def loss_fn(*embeddings: torch.Tensor) -> torch.Tensor:
            anchors = embeddings[0]
            if objective.needs_label_embeddings:
                return objective(anchors, label_targets, label_embeddings=embeddings[-1])
            if objective.needs_positives:
                positives = momentum_keys if momentum_keys is not None else embeddings[1]
                negatives, negative_labels = self._extra_keys(positives, labels if labels.shape[1] else None)
                return objective(anchors, labels, positives=positives, keys=negatives, key_labels=negative_labels)
            keys, key_labels = self._extra_keys(anchors, labels)
            return objective(anchors, labels, keys=keys, key_labels=key_labels)

        if self.config.mini_batch_size:
            no_sync = self.model.no_sync if isinstance(self.model, DistributedDataParallel) else None
            loss = cached_backward(self.model, streams, loss_fn, no_sync=no_sync, scale=self.scaler.scale)
        else:
            loss = loss_fn(*(self.model(chunks[0]) for chunks in streams))
            self.scaler.scale(loss).backward()
        if self.queue is not None:
            self.queue.enqueue(gather_with_grad(momentum_keys), gather_with_grad(labels))
        loss = loss.detach()
        pair_step, off_beat = divmod(self.state.global_step, self.pair_every)
        if self.pairs is not None and not off_beat:  # pairs beside the labels: this step's pair batch
            batch = self._prepare_pairs(self.pair_sampler.batch_at(pair_step))[0]
            if not self.config.max_grad_norm:
                return loss + self._pair_loss(batch, self.pair_weight)
            # each part's gradient clipped on its own, so the pairs' (CoSENT's 11-21 times the
            # labels' norm) does not shrink the labels' part of the step (module docstring)
            params = [param for param in self.encoder.parameters() if param.requires_grad]
            limit = self.config.max_grad_norm * self.scaler.scale(torch.ones((), device=self.device))
            label_grads = _take_clipped_grads(params, limit)
            loss = loss + self._pair_loss(batch, self.pair_weight)
            pair_grads = _take_clipped_grads(params, limit * self.pair_weight)
            for param, label_grad, pair_grad in zip(params, label_grads, pair_grads):
                param.grad = (
                    pair_grad if label_grad is None else label_grad if pair_grad is None else label_grad + pair_grad
                )
        return loss

    def _prepare_pairs(self, rows: list[int]) -> tuple[PairBatch, None]:
        """The pair batch of records ``rows``, ready for a step (no label rows)."""
        with self._tokenizer_lock:
            columns = [pinned(self.encoder.tokenize(_take(column, rows)), self.device) for column in self.pairs.columns]
        scores = None if self.pairs.scores is None else torch.tensor(_take(self.pairs.scores, rows))
        return PairBatch(rows, columns, scores), None

    def _pair_loss(self, batch: PairBatch, weight: float) -> torch.Tensor:
        """Forward and backward of a pair batch, its loss scaled by ``weight``; returns this
        process's scaled loss, detached, on the device (read on the logging interval)."""
        embeddings = [self.model(to_device(column, self.device)) for column in batch.columns]
        scores = None if batch.scores is None else batch.scores.to(self.device)
        loss = weight * self.pair_objective(embeddings, scores)
        self.scaler.scale(loss).backward()
        return loss.detach()

    def _step_loss(self, items: Any, labels: torch.Tensor) -> torch.Tensor:
        """:meth:`_loss` with the objectives' value checks off (:func:`trusted_inputs`):
        :meth:`fit` checked the labels and feature rows once, and the loss is checked on
        the logging interval; TF32 on for its forward and backward only as the encoder's
        precision says (:func:`labelcon.device.tf32_matmuls`)."""
        with trusted_inputs(), tf32_matmuls(self.tf32):
            return self._loss(items, labels)

    @torch.no_grad()
    def _embed_keys(self, chunks: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Embeddings by the momentum encoder of tokenised ``chunks`` (GradCache-sized)."""
        return torch.cat([self.momentum_encoder(to_device(chunk, self.device)) for chunk in chunks])

    def _extra_keys(
        self, own: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Keys beyond this process's batch: the other processes' rows of ``own``, then the
        queue; with ``labels``, the keys' labels too. ``(None, None)`` when there are none."""
        keys, key_labels = [], []
        if distributed.active():
            keys.append(gather_others(own))
            if labels is not None:
                key_labels.append(gather_others(labels))
        if self.queue is not None and len(self.queue):
            keys.append(self.queue.keys.to(own.dtype))
            if labels is not None:
                queued = self.queue.labels
                key_labels.append(queued if queued.layout == torch.sparse_coo else queued.to(torch.float32))
        if not keys:
            return None, None
        return torch.cat(keys), torch.cat(key_labels) if labels is not None else None

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        items: Sequence | np.ndarray,
        labels: sp.csr_matrix,
        *,
        pairs: PairRecords | None = None,
        resume: bool = False,
    ) -> TrainState:
        """Train on ``items`` (texts, or feature rows for an MLP encoder) with ``labels`` [N, C],
        and on ``pairs`` when given (beside the items, or alone when there are no items).

        Under ``torchrun`` every process calls ``fit`` with the same items; each trains on
        its share of every global batch of ``batch_size * world_size`` items.
        """
        cfg = self.config
        if pairs is not None and self.pair_objective is None:
            raise ValueError("pairs need a pair objective: Trainer(..., pair_objective=PairLoss(...))")
        pairs_only = pairs is not None and len(items) == 0
        _check_training_data(items, labels, pairs_only)
        self._start(pairs.columns[0] if pairs_only else items)
        world, main = distributed.world_size(), distributed.is_main_process()
        if pairs is not None:
            self.pairs = pairs
            self.pair_sampler = PairBatchSampler(
                len(pairs), self.pair_batch_size, seed=cfg.seed, num_replicas=world, rank=distributed.rank()
            )
        if pairs_only:
            sampler = self.pair_sampler
        else:
            batch_size = min(cfg.batch_size, len(items))
            sampler = LabelAwareBatchSampler(
                labels,
                batch_size,
                seed=cfg.seed,
                drop_last=len(items) > batch_size * world,
                num_replicas=world,
                rank=distributed.rank(),
            )
        run_budget = (
            RunBudget(60 * cfg.max_time_minutes, self.after_items, self.length_ratio) if cfg.max_time_minutes else None
        )
        step_items = world * (self.pair_batch_size if pairs_only else min(cfg.batch_size, len(items)))
        passes = passes_per_epoch(len(sampler), AUTO_EPOCHS if cfg.epochs == "auto" else cfg.epochs, cfg.min_steps)
        epochs = epoch_limit(cfg.epochs, run_budget is not None, repeated=passes > 1)
        # epochs="auto" within a budget: early stopping as stop_now says, then an annealing epoch
        auto_length = cfg.epochs == "auto" and epochs > AUTO_EPOCHS
        total_steps = max(1, len(sampler) * passes * epochs)
        loss_every = max(1, total_steps // LOSS_POINTS)
        # on a CUDA device one fused kernel updates every parameter
        optimizer = torch.optim.AdamW(
            _param_groups(self.encoder, cfg.weight_decay), lr=cfg.lr, fused=True if self.device.type == "cuda" else None
        )
        self._elapsed = self.state.elapsed_seconds  # the same value on every process

        def budget() -> float | None:
            """Seconds training may take (None: no budget), from values every process shares."""
            if run_budget is None:
                return None
            train_rate = self.state.global_step * step_items / self._elapsed if self._elapsed > 0 else 0.0
            spared = self.reusable_items if self.state.best_epoch >= 0 else 0
            return run_budget.training_seconds(train_rate, self.state.encode_rate, spared)

        time_used = (lambda: self._elapsed / budget()) if run_budget else None
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, linear_warmup_decay(total_steps, cfg.warmup_ratio, time_used, lambda: self.state.anneal)
        )
        best_weights = self._load_checkpoint(optimizer, scheduler) if resume else None
        if self.state.anneal:  # resumed within the annealing epoch: it is the last
            epochs = int(self.state.anneal[3])
        if self.state.finished:
            if best_weights is not None:
                self.encoder.load_state_dict(best_weights)
            return self.state

        bar = tqdm(
            total=total_steps,
            initial=self.state.global_step,
            disable=not (self.show_progress and main),
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        if run_budget and self.after_items and self.show_progress and main and not self.state.global_step:
            tqdm.write(
                f"time budget {cfg.max_time_minutes:g} min: training with its dev checks, then embedding up to "
                f"{self.after_items} texts (for the head, and test) in the time training leaves, estimated from the "
                "measured speed (training keeps at least half)"
            )
        started = time.monotonic() - self.state.elapsed_seconds
        checkpointed = self._elapsed  # when the last checkpoint was written, on the agreed clock
        tally = LossTally(self.device)
        out_of_time = False
        last_loss = math.nan
        while self.state.epoch < epochs and not out_of_time:
            self.encoder.train()
            start = self.state.step_in_epoch  # a resumed epoch skips the batches it has done
            batches = islice(epoch_batches(sampler, self.state.epoch, passes), start, None)
            prepared = (
                self._prepare_pairs(rows) if pairs_only else self._prepare(items, labels, rows) for rows in batches
            )
            window_items, window_started = 0, time.monotonic()
            with prefetched(prepared, ahead_for(self.device)) as ready:
                for step, (batch, batch_y) in enumerate(ready, start):
                    loss = self._step_loss(batch, batch_y)
                    self.scaler.unscale_(optimizer)  # clipping and the optimizer see true gradients
                    if cfg.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), cfg.max_grad_norm)
                    self.scaler.step(optimizer)
                    self.scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    if self.momentum_encoder is not None:
                        momentum_update(self.encoder, self.momentum_encoder, cfg.momentum)
                    self.state.step_in_epoch = step + 1
                    self.state.global_step += 1
                    self.state.elapsed_seconds = time.monotonic() - started
                    tally.add(loss, self.state.global_step)
                    window_items += len(batch.items) * world
                    logging = tally.steps >= loss_every
                    self._tick(started, logging)
                    if logging:  # the logging interval: the one place a step reads values back
                        last_loss = self._close_loss_window(tally)
                        rate = window_items / max(time.monotonic() - window_started, 1e-9)
                        bar.set_postfix(epoch=self.state.epoch + 1, loss=f"{last_loss:.4f}", items_s=f"{rate:.0f}")
                        window_items, window_started = 0, time.monotonic()
                    if run_budget:  # the run ends at the budget or the last step, whichever comes first
                        bar.total = steps_within_budget(self.state.global_step, total_steps, self._elapsed, budget())
                    bar.update(1)
                    if run_budget and self._elapsed > budget():
                        out_of_time = True
                        break
                    if self.checkpoint_path is not None and self._elapsed - checkpointed >= 60 * cfg.checkpoint_minutes:
                        last_loss = self._close_loss_window(tally, last_loss)  # no checkpoint of a NaN loss's weights
                        self._check_weights(last_loss)
                        self._save_checkpoint(optimizer, scheduler, best_weights)
                        checkpointed = self._elapsed
            last_loss = self._close_loss_window(tally, last_loss)
            final = out_of_time or self.state.epoch + 1 >= epochs
            check = (
                final
                or not run_budget
                or not budget_ends_next_epoch(
                    self.state.global_step, total_steps, self._elapsed, budget(), len(sampler) * passes
                )
            )
            self._check_weights(last_loss)
            best_weights = self._end_epoch(best_weights, last_loss, final, check)
            if not final and stop_now(
                self.state.bad_epochs, cfg.patience, self._elapsed, budget() if auto_length else None
            ):
                if not auto_length:
                    self._save_checkpoint(optimizer, scheduler, best_weights)
                    break
                # one more epoch, its learning rate decaying to 0, instead of stopping at a high one
                step, factor = self.state.global_step, scheduler.get_last_lr()[0] / scheduler.base_lrs[0]
                self.state.anneal = [step, step + len(sampler) * passes, factor, self.state.epoch + 1]
                epochs = self.state.epoch + 1
                if self.show_progress and main:
                    tqdm.write("dev stopped improving: one last epoch with the learning rate decaying to 0")
            self._save_checkpoint(optimizer, scheduler, best_weights)
            checkpointed = self._elapsed
        bar.close()
        if best_weights is not None:
            self.encoder.load_state_dict(best_weights)
        self.state.finished = True
        self._save_checkpoint(optimizer, scheduler, best_weights)
        distributed.barrier()
        return self.state

    def _tick(self, started: float, logging: bool) -> None:
        """Advance the run's clock ``_elapsed``, from which the budget, the learning rate
        and the checkpoints go: every step from this process's own clock when it trains
        alone; under ``torchrun``, rank 0's clock sent to every process on the logging
        interval only (a collective), so all of them decide alike at the same step."""
        if not distributed.active():
            self._elapsed = time.monotonic() - started
        elif logging:
            self._elapsed = distributed.broadcast_object(time.monotonic() - started)

    def _close_loss_window(self, tally: LossTally, last_loss: float = math.nan) -> float:
        """Read the steps' losses since the last point from the device (under ``torchrun``
        on every process at the same step) and append their mean as a ``[step, seconds,
        mean loss]`` point; raise :class:`TrainingDiverged` when one was not finite.
        Returns the last step's loss (``last_loss`` when there were no steps to read)."""
        if not tally.steps:
            return last_loss
        losses = tally.read()
        if not math.isfinite(losses.mean):
            step = losses.first_bad or self.state.global_step
            raise self._diverged(step, f"the loss is {'nan' if math.isnan(losses.mean) else losses.mean}")
        state = self.state
        state.losses.append([state.global_step, round(state.elapsed_seconds, 2), losses.mean])
        return losses.last

    def _end_epoch(self, best_weights: dict | None, last_loss: float, final: bool, check: bool) -> dict | None:
        """Evaluate on dev (rank 0), keep the best weights, count epochs without progress;
        every process continues with rank 0's state, so all stop together. Not evaluated:
        an epoch after which the budget ends the run within the next (``check`` False, see
        :func:`budget_ends_next_epoch`), and the final epoch of a run that evaluated
        nothing before, since there is nothing to choose between.

        The epoch's record in ``history``: ``epoch``, ``step``, ``loss`` (its last step's),
        ``seconds`` (elapsed at its last step), ``losses`` (its ``[step, seconds, mean loss]``
        points, about ``LOSS_POINTS`` in a run) and, when checked, ``dev`` (the metrics) and
        ``dev_seconds`` (the time the check took)."""
        record: dict[str, Any] = {
            "epoch": self.state.epoch + 1,
            "step": self.state.global_step,
            "loss": last_loss,
            "seconds": round(self.state.elapsed_seconds, 1),
            "losses": self.state.losses,
        }
        self.state.losses = []
        self.state.epoch += 1
        self.state.step_in_epoch = 0
        nothing_to_compare = final and self.state.best_epoch < 0
        if self.evaluate is not None and check and distributed.is_main_process() and not nothing_to_compare:
            tic = time.monotonic()
            metrics = _plain(self.evaluate(self.encoder))
            record["dev"], record["dev_seconds"] = metrics, round(time.monotonic() - tic, 2)
            embedded = getattr(self.evaluate, "texts", 0)  # what the check embeds: its speed, for the budget
            if embedded and record["dev_seconds"] > 0:
                self.state.encode_rate = embedded / record["dev_seconds"]
            score = metrics[self.select_metric]
            if score > self.state.best_metric:
                self.state.best_metric, self.state.best_epoch, self.state.bad_epochs = score, self.state.epoch, 0
                best_weights = _cpu_copy(self.encoder.state_dict())
                self.best_embeddings = getattr(self.evaluate, "embeddings", None)
            else:
                self.state.bad_epochs += 1
            if self.show_progress:
                tqdm.write(
                    f"epoch {self.state.epoch}: dev {self.select_metric} {score:.4f}"
                    f" (best {self.state.best_metric:.4f}, epoch {self.state.best_epoch})"
                )
        self.state.history.append(record)
        self.state = TrainState(**distributed.broadcast_object(asdict(self.state)))
        return best_weights
