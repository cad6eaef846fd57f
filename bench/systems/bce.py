"""all-MiniLM-L6-v2 fine-tuned end to end with a sigmoid / binary cross-entropy head.

The standard multi-label fine-tuning recipe (Hugging Face's
``problem_type="multi_label_classification"`` does the same): mean-pooled MiniLM states
-> dropout 0.1 -> ``Linear(384, C)``, loss ``BCEWithLogits`` averaged over all item-label
entries, AdamW at lr 5e-5 (weight decay 0.01, none on biases and norm weights), batch
32, gradient clipping at 1.0, max_length 64 for short texts and 256 for long ones
(:attr:`systems.common.Task.max_length`).

Training runs for a wall-clock budget instead of a fixed number of epochs: the learning
rate warms up linearly over the first 10% of the budget and decays linearly to 0 at its
end (the usual warmup + linear decay, on a clock instead of a step counter). Dev macro-AP
is measured after every epoch, and once more when the budget ends mid-epoch; the weights
with the best value are kept, and training stops early after ``Config().patience`` (2)
evaluations without improvement, as labelcon's own trainer does. The output biases start
at the log-odds of each label's training frequency, so the first steps are not spent
learning label priors.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from labelcon.config import Config
from labelcon.encoders import TransformerEncoder
from labelcon.training import seed_everything
from systems.common import Result, Task, macro_ap

NAME = "bce"
DESCRIPTION = "all-MiniLM-L6-v2 fine-tuned with a sigmoid/BCE head (AdamW 5e-5, batch 32, warmup, wall-clock budget)"
LR = 5e-5
WEIGHT_DECAY = 0.01
BATCH_SIZE = 32
WARMUP_FRACTION = 0.1
MAX_GRAD_NORM = 1.0
DROPOUT = 0.1
SCORE_BATCH = 128


class SigmoidClassifier(torch.nn.Module):
    """Encoder -> dropout -> one logit per label."""

    def __init__(self, encoder: TransformerEncoder, label_frequency: np.ndarray) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(DROPOUT)
        self.out = torch.nn.Linear(encoder.dim, len(label_frequency))
        with torch.no_grad():
            self.out.bias.copy_(torch.from_numpy(np.log(label_frequency / (1 - label_frequency))))

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.out(self.dropout(self.encoder(self.encoder.tokenize(texts))))


def predict_scores(model: SigmoidClassifier, texts: list[str], show_progress: bool, desc: str) -> np.ndarray:
    """Sigmoid scores [n, C] in eval mode, batched longest text first; the mode is restored."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    out = np.empty((len(texts), model.out.out_features), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(texts), desc=desc, unit="text", disable=not show_progress) as bar:
            for start in range(0, len(texts), SCORE_BATCH):
                rows = order[start : start + SCORE_BATCH]
                out[rows] = torch.sigmoid(model([texts[i] for i in rows])).numpy()
                bar.update(len(rows))
    finally:
        model.train(was_training)
    return out


def lr_factor(fraction: float) -> float:
    """Multiplier of the learning rate when ``fraction`` of the budget has passed."""
    if fraction < WARMUP_FRACTION:
        return max(fraction, 1e-3) / WARMUP_FRACTION
    return max(0.0, (1.0 - fraction) / (1.0 - WARMUP_FRACTION))


def param_groups(model: torch.nn.Module) -> list[dict]:
    """Weight decay on weight matrices only, none on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def run(task: Task) -> Result:
    """Fine-tune for ``task.budget_seconds`` of training, keep the best dev weights, score test."""
    if task.budget_seconds is None or task.budget_seconds <= 0:
        raise ValueError(f"the bce system needs a positive training budget in seconds, got {task.budget_seconds!r}")
    started = time.perf_counter()
    seed_everything(task.seed)
    texts = task.train.texts
    n = len(texts)
    frequency = (np.asarray(task.y_train.sum(axis=0)).ravel() + 0.5) / (n + 1.0)
    model = SigmoidClassifier(TransformerEncoder("minilm", max_length=task.max_length, seed=task.seed), frequency)
    optimizer = torch.optim.AdamW(param_groups(model), lr=LR)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    targets = sp.csr_matrix(task.y_train, dtype=np.float32)
    order_rng = np.random.default_rng(task.seed)
    patience = Config().patience
    budget = task.budget_seconds

    best_ap, best_state, best_dev, best_epoch = -math.inf, None, None, 0
    history: list[dict[str, float]] = []
    steps, bad, epoch, out_of_time = 0, 0, 0, False
    bar = tqdm(total=round(budget), desc="bce train (budget)", unit="s", disable=not task.show_progress)
    loop_start = time.monotonic()
    while not out_of_time and bad < patience:
        model.train()
        steps_this_epoch = 0
        order = order_rng.permutation(n)
        for start in range(0, n, BATCH_SIZE):
            elapsed = time.monotonic() - loop_start
            if elapsed >= budget:
                out_of_time = True
                break
            for group in optimizer.param_groups:
                group["lr"] = LR * lr_factor(elapsed / budget)
            rows = order[start : start + BATCH_SIZE]
            loss = loss_fn(model([texts[i] for i in rows]), torch.from_numpy(targets[rows].toarray()))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            steps_this_epoch += 1
            bar.update(min(round(elapsed), bar.total) - bar.n)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
        if steps_this_epoch == 0:
            break
        epoch += 1
        dev_scores = predict_scores(model, task.dev.texts, task.show_progress, "bce dev check")
        ap = macro_ap(task.y_dev, dev_scores)
        history.append(
            {
                "epochs_done": round(steps * BATCH_SIZE / n, 2),
                "step": steps,
                "dev_macro_ap": round(ap, 5),
                "seconds": round(time.monotonic() - loop_start, 1),
            }
        )
        if ap > best_ap:
            best_ap, best_dev, best_epoch, bad = ap, dev_scores, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
    bar.close()
    if best_state is None or best_dev is None:
        raise RuntimeError(f"the bce system made no training step within its budget of {budget:.0f} s")
    model.load_state_dict(best_state)
    train_seconds = time.perf_counter() - started
    test_scores = predict_scores(model, task.test.texts, task.show_progress, "bce test")
    notes = {
        "budget_seconds": round(budget, 1),
        "max_length": task.max_length,
        "steps": steps,
        "epochs": round(steps * BATCH_SIZE / n, 2),
        "best_epoch": best_epoch,
        "history": history,
    }
    return Result(best_dev, test_scores, train_seconds, notes)
