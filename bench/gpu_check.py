"""The GPU check of issue 17: one command, one markdown table.

    python bench/gpu_check.py [--device auto] [--data-dir DIR] [--batch 64] [--max-length 64]
        [--train-steps 60] [--encode-texts 20000] [--json results.json]
    python bench/gpu_check.py --device cpu --dry-run    # tiny sizes, under a minute: the script works

Rows (each with the peak GPU memory torch allocated while it ran; "-" on the CPU):

- **agreement**: one batch's SupCon-Jaccard loss and gradients of MiniLM (eval mode, so
  no dropout) on the CPU in float32 against the device in float32 (bar: 1e-5 relative)
  and in bfloat16 autocast (bar: 1e-2 relative); the gradient difference is the norm of
  the difference over the norm of the CPU gradient, all parameters together.
- **training throughput**: labelcon's :class:`~labelcon.training.Trainer` on MiniLM
  (SupCon-Jaccard on GoEmotions labels) against sentence-transformers'
  ``MultipleNegativesRankingLoss`` on the same model, batch size, length and autocast
  precision. The sentence-transformers side is the step its trainer runs (tokenise the
  pairs, embed both sides, the loss, backward, clip, AdamW) in a plain loop, without the
  trainer's data loader and callbacks: an upper bound of its trainer's speed. One
  labelcon item is one text; one of theirs is an (anchor, positive) pair, two texts: the
  goal compares items/s at the same batch size, the table gives texts/s as well. Each
  side runs a few warm-up steps first.
- **encode throughput**: :meth:`labelcon.encoders.Encoder.encode` against
  ``SentenceTransformer.encode``, batch 128, same length, each at its default precision.
- **GoEmotions defaults**: ``Labelcon(device=...)`` with every other setting at its default
  on the registered GoEmotions splits (``$LABELCON_DATA``, else ``../shared/data``):
  time from reading to test metrics, and test macro-F1 (goals: at most 3 minutes, macro-F1
  at least 0.53).

``--dry-run`` shrinks everything (batch 16, 32 tokens, 4 steps, 256 texts, a 200-item
GoEmotions with one epoch of 6 steps and the kNN head) so the whole script runs on a
CPU in under a minute; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as transformers_logging

from data_dir import default_data_dir

from labelcon import Labelcon
from labelcon.config import Config
from labelcon.data import LabelSpace, read_dataset
from labelcon.data.registry import resolve_dataset
from labelcon.device import precision_for, resolve_device
from labelcon.encoders import build_encoder, minilm_path
from labelcon.objectives import build_objective
from labelcon.training import Trainer
from labelcon.training.settings import TrainingSettings

LR = 5e-5
ENCODE_BATCH = 128


def peak_memory(device: torch.device) -> str:
    """The peak GPU memory torch allocated since the last reset, in GB; "-" off CUDA."""
    if device.type != "cuda":
        return "-"
    torch.cuda.synchronize(device)
    return f"{torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB"


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def loss_and_grads(device: torch.device, precision: str, texts: list[str], labels: torch.Tensor,
                   max_length: int) -> tuple[float, torch.Tensor]:  # fmt: skip
    """MiniLM's SupCon-Jaccard loss on one batch and its gradient (all parameters, flattened, on the CPU)."""
    encoder = build_encoder("minilm", max_length=max_length, precision=precision, device=device).eval()
    objective = build_objective("supcon-jaccard", temperature=0.1)
    batch = {key: value.to(device) for key, value in encoder.tokenize(texts).items()}
    loss = objective(encoder(batch), labels.to(device))
    loss.backward()
    grads = torch.cat([p.grad.detach().float().flatten().cpu() for p in encoder.parameters() if p.grad is not None])
    return loss.item(), grads


def agreement(device: torch.device, texts: list[str], labels: torch.Tensor, max_length: int) -> list[dict[str, Any]]:
    """The agreement rows: CPU float32 against the device in float32 and in bfloat16."""
    want_loss, want_grads = loss_and_grads(torch.device("cpu"), "float32", texts, labels, max_length)
    rows = []
    for precision, bar in (("float32", 1e-5), ("bfloat16", 1e-2)):
        reset_memory(device)
        loss, grads = loss_and_grads(device, precision, texts, labels, max_length)
        loss_rel = abs(loss - want_loss) / abs(want_loss)
        grad_rel = float((grads - want_grads).norm() / want_grads.norm())
        rows.append({"check": f"agreement with the CPU, {precision}, batch {len(texts)}",
                     "labelcon": f"loss {loss_rel:.1e}, gradient {grad_rel:.1e} relative", "reference": f"bar {bar:g}",
                     "result": "pass" if max(loss_rel, grad_rel) <= bar else "FAIL", "memory": peak_memory(device)})
    return rows


def labelcon_training(device: torch.device, texts: list[str], y, batch: int, max_length: int, steps: int) -> float:
    """Seconds of ``steps`` labelcon training steps (after 3 warm-up steps on a fresh copy)."""

    def run(n_steps: int) -> float:
        config = Config(encoder="minilm", objective="supcon-jaccard", batch_size=batch, max_length=max_length,
                        epochs=1, min_steps=0, max_time_minutes=0, device=str(device))  # fmt: skip
        encoder = build_encoder("minilm", max_length=max_length, device=device)
        trainer = Trainer(encoder, build_objective("supcon-jaccard", temperature=0.1), TrainingSettings.from_config(config),
                          show_progress=False)  # fmt: skip
        n = batch * n_steps
        tic = time.perf_counter()
        trainer.fit(texts[:n], y[:n])
        return time.perf_counter() - tic

    run(3)
    return run(steps)


def st_training(device: torch.device, texts: list[str], partners: list[str], batch: int, max_length: int,
                steps: int) -> float:  # fmt: skip
    """Seconds of ``steps`` sentence-transformers MNRL steps on (text, partner) pairs, after 3 warm-up steps."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(minilm_path()), device=str(device))
    model.max_seq_length = max_length
    model.train()
    loss_module = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    dtype = precision_for("auto", device).autocast

    def step(i: int) -> float:
        rows = slice(i * batch, (i + 1) * batch)
        features = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in model.preprocess(side[rows]).items()}
                    for side in (texts, partners)]  # fmt: skip
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_module(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for i in range(3):
        step(i)
    tic = time.perf_counter()
    for i in range(steps):
        step(i)
    return time.perf_counter() - tic


def partners_of(label_sets: list[list[str]], texts: list[str], seed: int = 0) -> list[str]:
    """For each text, another text sharing its first label (itself when none does)."""
    rng = np.random.default_rng(seed)
    holders: dict[str, list[int]] = {}
    for i, labels in enumerate(label_sets):
        for label in labels[:1]:
            holders.setdefault(label, []).append(i)
    return [texts[rng.choice(holders[labels[0]])] if labels else text for text, labels in zip(texts, label_sets)]


def throughput_row(device: torch.device, data: Path, batch: int, max_length: int, steps: int) -> dict[str, Any]:
    train = read_dataset(data / "train.jsonl")
    n = batch * (steps + 3)
    texts, label_sets = list(train.texts[:n]), [list(s) for s in train.labels[:n]]
    y = LabelSpace.from_label_sets(label_sets).encode(label_sets)
    reset_memory(device)
    ours = batch * steps / labelcon_training(device, texts, y, batch, max_length, steps)
    memory = peak_memory(device)
    theirs = batch * steps / st_training(device, texts, partners_of(label_sets, texts), batch, max_length, steps)
    precision = precision_for("auto", device).autocast
    return {"check": f"MiniLM training, batch {batch}, {max_length} tokens, {str(precision or 'float32').removeprefix('torch.')}",
            "labelcon": f"{ours:.0f} items/s ({ours:.0f} texts/s)",
            "reference": f"sentence-transformers MNRL {theirs:.0f} items/s ({2 * theirs:.0f} texts/s)",
            "result": f"{ours / theirs:.2f}x in items/s ({ours / (2 * theirs):.2f}x in texts/s)", "memory": memory}


def encode_row(device: torch.device, data: Path, n: int, max_length: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    texts = list(read_dataset(data / "train.jsonl").texts[:n])
    encoder = build_encoder("minilm", max_length=max_length, device=device).eval()
    model = SentenceTransformer(str(minilm_path()), device=str(device))
    model.max_seq_length = max_length
    warm = texts[: 4 * ENCODE_BATCH]
    encoder.encode(warm, batch_size=ENCODE_BATCH)
    model.encode(warm, batch_size=ENCODE_BATCH)
    reset_memory(device)
    tic = time.perf_counter()
    encoder.encode(texts, batch_size=ENCODE_BATCH)
    ours = len(texts) / (time.perf_counter() - tic)
    memory = peak_memory(device)
    tic = time.perf_counter()
    model.encode(texts, batch_size=ENCODE_BATCH)
    theirs = len(texts) / (time.perf_counter() - tic)
    return {"check": f"encode {len(texts)} texts, batch {ENCODE_BATCH}, {max_length} tokens",
            "labelcon": f"{ours:.0f} texts/s", "reference": f"SentenceTransformer.encode {theirs:.0f} texts/s",
            "result": f"{ours / theirs:.2f}x", "memory": memory}


def goemotions_row(device: torch.device, data: Path, dry_run: bool, work: Path) -> dict[str, Any]:
    """The GoEmotions defaults, end to end; in a dry run on 200 training items, briefly."""
    settings: dict[str, Any] = {"device": str(device), "labels_file": str(data / "labels.txt")}
    if dry_run:
        small = work / "goemotions"
        small.mkdir()
        for split, n in (("train", 200), ("dev", 60), ("test", 60)):
            lines = (data / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
            (small / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        shutil.copy(data / "labels.txt", small / "labels.txt")
        data = small
        settings.update(epochs=1, min_steps=0, batch_size=32, max_length=32, eval_max_train=100, head="knn", lexical=0)
    reset_memory(device)
    tic = time.perf_counter()
    model = Labelcon(**settings).fit(data / "train.jsonl", data / "dev.jsonl", out_dir=work / "run", show_progress=False)
    test = model.evaluate(data / "test.jsonl")
    minutes = (time.perf_counter() - tic) / 60
    ok = minutes <= 3 and test["macro_f1"] >= 0.53
    return {"check": "GoEmotions, defaults" + (" (dry run: 200 items, 1 epoch, knn head)" if dry_run else ""),
            "labelcon": f"{minutes:.1f} min, test macro-F1 {test['macro_f1']:.3f}, micro-F1 {test['micro_f1']:.3f}, "
                        f"macro-AP {test['macro_ap']:.3f}",
            "reference": "goal: <= 3 min, macro-F1 >= 0.53", "result": "pass" if ok else "short of the goal",
            "memory": peak_memory(device)}


def table(rows: list[dict[str, Any]], device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    lines = [f"device: {device} ({name}), torch {torch.__version__}", "",
             "| check | labelcon | reference | result | peak GPU memory |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['check']} | {r['labelcon']} | {r['reference']} | {r['result']} | {r['memory']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds goemotions/ ($LABELCON_DATA, else ../shared/data)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--encode-texts", type=int, default=20000)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    transformers_logging.disable_progress_bar()  # sentence-transformers' "Loading weights" bars
    if args.dry_run:
        args.batch, args.max_length, args.train_steps, args.encode_texts = 16, 32, 4, 256
    device = resolve_device(args.device)
    data = resolve_dataset("goemotions", args.data_dir or default_data_dir())
    train = read_dataset(data / "train.jsonl")
    agree_texts = list(train.texts[: 8 if args.dry_run else 32])
    agree_sets = [list(s) for s in train.labels[: len(agree_texts)]]
    agree_labels = torch.from_numpy(LabelSpace.from_label_sets(agree_sets).encode(agree_sets).toarray()).float()
    rows = agreement(device, agree_texts, agree_labels, args.max_length)
    rows.append(throughput_row(device, data, args.batch, args.max_length, args.train_steps))
    rows.append(encode_row(device, data, args.encode_texts, args.max_length))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        rows.append(goemotions_row(device, data, args.dry_run, Path(work)))
    print(table(rows, device))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
