"""The training loop: any encoder, any objective, one loop.

AdamW with linear warmup and decay, gradient clipping, optional GradCache chunks, an
evaluation on dev after every epoch that keeps the best weights, early stopping, a
wall-clock budget, and checkpoints from which an interrupted run resumes at the batch
where it stopped. The trainer knows nothing about which objective it runs: it only asks
whether the objective wants a second view (``needs_positives``) or the label texts
(``needs_label_embeddings``).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from labelcon.config import Config
from labelcon.io import atomic_torch_save
from labelcon.sampling import LabelAwareBatchSampler
from labelcon.training.gradcache import cached_backward
from labelcon.training.labels import batch_labels

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    elapsed_seconds: float = 0.0
    best_metric: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _take(items: Sequence | np.ndarray, rows: Sequence[int]) -> Any:
    if isinstance(items, np.ndarray):
        return items[np.asarray(rows)]
    return [items[i] for i in rows]


def _chunks(items: Any, size: int) -> list[Any]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup_decay(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """LR multiplier rising linearly over the warmup steps, then falling linearly to 0."""
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


class Trainer:
    """Train ``encoder`` with ``objective`` on items and their label matrix.

    ``evaluate(encoder) -> dict`` runs after each epoch; the run keeps the weights with the
    highest ``select_metric`` and stops after ``config.patience`` epochs without progress.
    With ``run_dir`` set, a checkpoint is written every ``config.checkpoint_every`` steps
    and after each epoch, and ``fit(..., resume=True)`` continues from it.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        objective: torch.nn.Module,
        config: Config,
        *,
        run_dir: str | Path | None = None,
        evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        select_metric: str = "macro_ap",
        label_texts: Sequence[str] | None = None,
        view: Callable[[str, np.random.Generator], str] | None = None,
        show_progress: bool = True,
    ) -> None:
        if getattr(objective, "needs_label_embeddings", False) and not label_texts:
            raise ValueError(f"objective {type(objective).__name__} needs label texts; none were given")
        self.encoder = encoder
        self.objective = objective
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.evaluate = evaluate
        self.select_metric = select_metric
        self.label_texts = list(label_texts) if label_texts else None
        self.view = view or (lambda text, rng: text)
        self.show_progress = show_progress
        self.state = TrainState()

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT if self.run_dir else None

    def _save_checkpoint(self, optimizer, scheduler, best_weights) -> None:
        if self.checkpoint_path is None:
            return
        payload = {
            "state": asdict(self.state),
            "encoder": self.encoder.state_dict(),
            "best": best_weights,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "views": self._view_rng.bit_generator.state},
        }
        if not self.state.finished:
            payload["optimizer"] = optimizer.state_dict()
            payload["scheduler"] = scheduler.state_dict()
        atomic_torch_save(payload, self.checkpoint_path)

    def _load_checkpoint(self, optimizer, scheduler) -> dict | None:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=False)
        self.state = TrainState(**payload["state"])
        self.encoder.load_state_dict(payload["encoder"])
        if "optimizer" in payload:
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"]["torch"])
        np.random.set_state(payload["rng"]["numpy"])
        random.setstate(payload["rng"]["python"])
        self._view_rng.bit_generator.state = payload["rng"]["views"]
        return payload["best"]

    # ------------------------------------------------------------------ one step
    def _loss(self, items: Any, labels: torch.Tensor) -> torch.Tensor:
        streams = [items]
        if self.objective.needs_positives:
            streams.append([self.view(text, self._view_rng) for text in items])
        if self.objective.needs_label_embeddings:
            streams.append(self.label_texts)

        def loss_fn(*embeddings: torch.Tensor) -> torch.Tensor:
            extra = {}
            if self.objective.needs_positives:
                extra["positives"] = embeddings[1]
            if self.objective.needs_label_embeddings:
                extra["label_embeddings"] = embeddings[-1]
            return self.objective(embeddings[0], labels, **extra)

        encode = lambda batch: self.encoder(batch)  # noqa: E731
        size = self.config.mini_batch_size
        if size:
            chunked = [[self.encoder.tokenize(c) for c in _chunks(s, size)] for s in streams]
            return cached_backward(encode, chunked, loss_fn)
        loss = loss_fn(*(encode(self.encoder.tokenize(s)) for s in streams))
        loss.backward()
        return loss.detach()

    # ------------------------------------------------------------------ the loop
    def fit(self, items: Sequence | np.ndarray, labels: sp.csr_matrix, *, resume: bool = False) -> TrainState:
        """Train on ``items`` (texts, or feature rows for an MLP encoder) with ``labels`` [N, C]."""
        cfg = self.config
        if len(items) != labels.shape[0]:
            raise ValueError(f"{len(items)} items but {labels.shape[0]} label rows")
        if len(items) < 2:
            raise ValueError(f"contrastive training needs at least 2 training items, got {len(items)}")
        seed_everything(cfg.seed)
        self._view_rng = np.random.default_rng(cfg.seed)
        sampler = LabelAwareBatchSampler(
            labels, min(cfg.batch_size, len(items)), seed=cfg.seed, drop_last=len(items) > cfg.batch_size
        )
        steps_per_epoch = len(sampler)
        total_steps = max(1, steps_per_epoch * cfg.epochs)
        optimizer = torch.optim.AdamW(_param_groups(self.encoder, cfg.weight_decay), lr=cfg.resolved_lr())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(total_steps, cfg.warmup_ratio))
        best_weights = self._load_checkpoint(optimizer, scheduler) if resume else None
        if self.state.finished:
            if best_weights is not None:
                self.encoder.load_state_dict(best_weights)
            return self.state

        bar = tqdm(
            total=total_steps, initial=self.state.global_step, disable=not self.show_progress,
            desc="train", unit="step", dynamic_ncols=True,
        )
        started = time.monotonic() - self.state.elapsed_seconds
        out_of_time = False
        last_loss = math.nan
        while self.state.epoch < cfg.epochs and not out_of_time:
            self.encoder.train()
            sampler.set_epoch(self.state.epoch)
            for step, rows in enumerate(sampler):
                if step < self.state.step_in_epoch:
                    continue
                tic = time.monotonic()
                loss = self._loss(_take(items, rows), batch_labels(labels, rows))
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                last_loss = loss.item()
                self.state.step_in_epoch = step + 1
                self.state.global_step += 1
                self.state.elapsed_seconds = time.monotonic() - started
                bar.update(1)
                bar.set_postfix(epoch=self.state.epoch + 1, loss=f"{last_loss:.4f}",
                                items_s=f"{len(rows) / max(time.monotonic() - tic, 1e-9):.0f}")
                if cfg.max_time_minutes and self.state.elapsed_seconds > 60 * cfg.max_time_minutes:
                    out_of_time = True
                    break
                if self.state.global_step % cfg.checkpoint_every == 0:
                    self._save_checkpoint(optimizer, scheduler, best_weights)
            best_weights = self._end_epoch(best_weights, last_loss)
            self._save_checkpoint(optimizer, scheduler, best_weights)
            if self.state.bad_epochs >= cfg.patience:
                break
        bar.close()
        if best_weights is not None:
            self.encoder.load_state_dict(best_weights)
        self.state.finished = True
        self._save_checkpoint(optimizer, scheduler, best_weights)
        return self.state

    def _end_epoch(self, best_weights: dict | None, last_loss: float) -> dict | None:
        """Evaluate on dev, keep the best weights, count epochs without progress."""
        record: dict[str, Any] = {"epoch": self.state.epoch + 1, "step": self.state.global_step,
                                  "loss": last_loss, "seconds": round(self.state.elapsed_seconds, 1)}
        self.state.epoch += 1
        self.state.step_in_epoch = 0
        if self.evaluate is not None:
            metrics = self.evaluate(self.encoder)
            record["dev"] = metrics
            score = metrics[self.select_metric]
            if score > self.state.best_metric:
                self.state.best_metric, self.state.best_epoch, self.state.bad_epochs = score, self.state.epoch, 0
                best_weights = copy.deepcopy(self.encoder.state_dict())
            else:
                self.state.bad_epochs += 1
            if self.show_progress:
                tqdm.write(f"epoch {self.state.epoch}: dev {self.select_metric} {score:.4f}"
                           f" (best {self.state.best_metric:.4f}, epoch {self.state.best_epoch})")
        self.state.history.append(record)
        return best_weights
