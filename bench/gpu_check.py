"""The GPU check: one command, one markdown table, each row written as it finishes.

    python bench/gpu_check.py [--device auto] [--bundle DIR] [--data-dir DIR] [--out FILE]
        [--batch 64] [--max-length 64] [--train-steps 60] [--encode-texts 20000]
    python bench/gpu_check.py --device cpu --dry-run    # tiny sizes, about a minute: the script works

``--bundle DIR`` reads the model and the data from a folder made by
``bench/prepare_gpu_check.py`` (see :mod:`gpu_bundle` and bench/README.md), for a machine
without network; without it the installed MiniLM and ``--data-dir``'s GoEmotions serve.
The table goes to stdout and to ``--out`` (default ``gpu_check.md``), row by row, flushed,
so a run cut short keeps the rows it finished.

Rows (each with the peak GPU memory torch allocated while it ran; "-" on the CPU):

- **agreement, float32 and bfloat16**: one batch's SupCon-Jaccard loss and gradients of
  MiniLM (eval mode, so no dropout) against a float64 reference computed on the CPU.
  Each row gives the device's relative error next to the CPU's own error in the same
  precision: rounding alone makes bfloat16 differ from exact by about 1e-2, so the bar is
  the CPU's error (times 4, for another order of summation), not a fixed tolerance. The
  gradient error is the norm of the difference over the norm of the reference gradient,
  all parameters together.
- **training throughput**: labelcon's :class:`~labelcon.training.Trainer` on MiniLM
  (SupCon-Jaccard on the data's labels) against sentence-transformers'
  ``MultipleNegativesRankingLoss`` on the same model, batch size, length and autocast
  precision. labelcon's rate counts the optimizer steps the trainer ran and the items
  those steps took, timed from the first step to the last (after a warm-up run). The
  sentence-transformers side is the step its trainer runs (tokenise the pairs, embed
  both sides, the loss, backward, clip, AdamW) in a plain loop, without the trainer's
  data loader and callbacks: an upper bound of its trainer's speed. One labelcon item is
  one text; one of theirs is an (anchor, positive) pair, two texts: the table gives both.
- **encode throughput**: :meth:`labelcon.encoders.Encoder.encode` against
  ``SentenceTransformer.encode``, both at labelcon's batch size for the device, same length.
- **end to end**: ``Labelcon(device=..., epochs=3)`` with every other setting at its
  default on the data's splits: time from reading to test metrics, and test macro-F1
  (goals, on GoEmotions: at most 3 minutes, macro-F1 at least 0.53). The epoch count is
  fixed so the row measures the same work on every device.

``--dry-run`` shrinks everything (batch 8, 16 tokens, 2 steps, 64 texts, 100 training
items, one epoch, the kNN head) so the whole script runs on 2 CPU cores in about a
minute; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gpu_bundle
import numpy as np
import torch
from data_dir import default_data_dir
from transformers.utils import logging as transformers_logging

from labelcon import Labelcon
from labelcon.config import Config
from labelcon.data import LabelSpace, read_dataset
from labelcon.data.registry import resolve_dataset
from labelcon.device import precision_for, resolve_device
from labelcon.encoders import build_encoder, shipped_path
from labelcon.encoders.base import encode_batch_size
from labelcon.objectives import build_objective
from labelcon.training import Trainer
from labelcon.training.settings import TrainingSettings

LR = 5e-5
#: The end-to-end row's epochs (one in a dry run).
EPOCHS = 3
#: The agreement rows' floors under the bar: float32 and bfloat16 rounding on their own.
FLOORS = {"float32": 1e-5, "bfloat16": 1e-3}


def peak_memory(device: torch.device) -> str:
    """The peak GPU memory torch allocated since the last reset, in GB; "-" off CUDA."""
    if device.type != "cuda":
        return "-"
    torch.cuda.synchronize(device)
    return f"{torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB"


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def wait(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Table:
    """The markdown table, each row printed and appended to ``path`` as soon as it is added."""

    COLUMNS = ("check", "labelcon", "reference", "result", "memory")

    def __init__(self, path: Path, device: torch.device) -> None:
        self.path, self.rows, self.last = path, [], time.perf_counter()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        self._write(
            f"device: {device} ({name}), torch {torch.__version__}\n\n"
            "| check | labelcon | reference | result | peak GPU memory |\n| --- | --- | --- | --- | --- |\n",
            mode="w",
        )

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write("| " + " | ".join(str(row[key]) for key in self.COLUMNS) + " |\n", mode="a")
        print(f"({time.perf_counter() - self.last:.0f} s)", file=sys.stderr, flush=True)
        self.last = time.perf_counter()

    def _write(self, text: str, mode: str) -> None:
        print(text, end="", flush=True)
        with open(self.path, mode, encoding="utf-8") as out:
            out.write(text)


def loss_and_grads(
    model: Path,
    device: torch.device,
    precision: str,
    texts: list[str],
    labels: torch.Tensor,
    max_length: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, torch.Tensor]:
    """MiniLM's SupCon-Jaccard loss on one batch and its gradient (all parameters,
    flattened, in float64 on the CPU); ``dtype=torch.float64`` computes in float64."""
    encoder = build_encoder(str(model), max_length=max_length, precision=precision, device=device).to(dtype).eval()
    objective = build_objective("supcon-jaccard", temperature=0.1)
    batch = {key: value.to(device) for key, value in encoder.tokenize(texts).items()}
    loss = objective(encoder(batch), labels.to(device, dtype))
    loss.backward()
    grads = torch.cat([p.grad.detach().double().flatten().cpu() for p in encoder.parameters() if p.grad is not None])
    return loss.item(), grads


def agreement(
    model: Path, device: torch.device, texts: list[str], labels: torch.Tensor, max_length: int
) -> Callable[[str], dict[str, Any]]:
    """A function of the precision giving its agreement row (the float64 reference computed once)."""
    cpu = torch.device("cpu")
    want_loss, want_grads = loss_and_grads(model, cpu, "float32", texts, labels, max_length, torch.float64)

    def errors(where: torch.device, precision: str) -> tuple[float, float]:
        loss, grads = loss_and_grads(model, where, precision, texts, labels, max_length)
        return abs(loss - want_loss) / abs(want_loss), float((grads - want_grads).norm() / want_grads.norm())

    def row(precision: str) -> dict[str, Any]:
        cpu_loss, cpu_grad = errors(cpu, precision)
        reset_memory(device)
        loss, grad = (cpu_loss, cpu_grad) if device == cpu else errors(device, precision)
        bars = [max(4 * cpu_error, FLOORS[precision]) for cpu_error in (cpu_loss, cpu_grad)]
        ok = loss <= bars[0] and grad <= bars[1]
        return {
            "check": f"{precision} against float64, batch {len(texts)}",
            "labelcon": f"{device.type}: loss {loss:.1e}, gradient {grad:.1e} relative",
            "reference": f"the CPU's own {precision}: loss {cpu_loss:.1e}, gradient {cpu_grad:.1e}",
            "result": f"{'pass' if ok else 'FAIL'} (bar: 4x the CPU's, at least {FLOORS[precision]:g})",
            "memory": peak_memory(device),
        }

    return row


class CountingTrainer(Trainer):
    """A :class:`Trainer` that counts the optimizer steps it runs and the items they take,
    and notes when the first step starts."""

    steps = items = 0
    started = 0.0

    def _step_loss(self, items, labels):
        if not self.steps:
            self.started = time.perf_counter()
        self.steps += 1
        self.items += len(items.items)
        return super()._step_loss(items, labels)


def labelcon_training(
    model: Path, device: torch.device, texts: list[str], y, batch: int, max_length: int, steps: int
) -> tuple[int, int, float]:
    """``(steps, items, seconds)`` of a labelcon run planned for ``steps`` batches (after a
    3-step warm-up run on a fresh copy): what it actually ran, timed from its first step."""

    def run(n_steps: int) -> tuple[int, int, float]:
        config = Config(
            encoder=str(model),
            objective="supcon-jaccard",
            batch_size=batch,
            max_length=max_length,
            epochs=1,
            min_steps=0,
            max_time_minutes=0,
            device=str(device),
        )
        encoder = build_encoder(str(model), max_length=max_length, device=device)
        trainer = CountingTrainer(
            encoder,
            build_objective("supcon-jaccard", temperature=0.1),
            TrainingSettings.from_config(config),
            show_progress=False,
        )
        n = batch * n_steps
        trainer.fit(texts[:n], y[:n])
        wait(device)
        return trainer.steps, trainer.items, time.perf_counter() - trainer.started

    run(3)
    return run(steps)


def st_training(
    model: Path, device: torch.device, texts: list[str], partners: list[str], batch: int, max_length: int, steps: int
) -> float:
    """Seconds of ``steps`` sentence-transformers MNRL steps on (text, partner) pairs, after 3 warm-up steps."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    st_model = SentenceTransformer(str(model), device=str(device))
    st_model.max_seq_length = max_length
    st_model.train()
    loss_module = MultipleNegativesRankingLoss(st_model)
    optimizer = torch.optim.AdamW(st_model.parameters(), lr=LR)
    dtype = precision_for("auto", device).autocast

    def step(i: int) -> float:
        rows = slice(i * batch, (i + 1) * batch)
        features = [
            {k: v.to(device) if torch.is_tensor(v) else v for k, v in st_model.preprocess(side[rows]).items()}
            for side in (texts, partners)
        ]
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_module(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(st_model.parameters(), 1.0)
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


def throughput_row(
    model: Path, device: torch.device, data: Path, batch: int, max_length: int, steps: int
) -> dict[str, Any]:
    train = read_dataset(data / "train.jsonl")
    n = batch * (steps + 3)
    texts, label_sets = list(train.texts[:n]), [list(s) for s in train.labels[:n]]
    y = LabelSpace.from_label_sets(label_sets).encode(label_sets)
    reset_memory(device)
    ran, seen, seconds = labelcon_training(model, device, texts, y, batch, max_length, steps)
    ours = seen / seconds
    memory = peak_memory(device)
    theirs = batch * steps / st_training(model, device, texts, partners_of(label_sets, texts), batch, max_length, steps)
    precision = precision_for("auto", device).autocast
    return {
        "check": f"MiniLM training, batch {batch}, {max_length} tokens, "
        f"{str(precision or 'float32').removeprefix('torch.')}",
        "labelcon": f"{ours:.0f} items/s ({ran} steps, {seen} items in {seconds:.1f} s)",
        "reference": f"sentence-transformers MNRL {theirs:.0f} items/s ({2 * theirs:.0f} texts/s)",
        "result": f"{ours / theirs:.2f}x in items/s ({ours / (2 * theirs):.2f}x in texts/s)",
        "memory": memory,
    }


def encode_row(model: Path, device: torch.device, data: Path, n: int, max_length: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    texts = list(read_dataset(data / "train.jsonl").texts[:n])
    batch = encode_batch_size(device)
    encoder = build_encoder(str(model), max_length=max_length, device=device).eval()
    st_model = SentenceTransformer(str(model), device=str(device))
    st_model.max_seq_length = max_length
    warm = texts[: 4 * batch]
    encoder.encode(warm, batch_size=batch)
    st_model.encode(warm, batch_size=batch)
    reset_memory(device)
    tic = time.perf_counter()
    encoder.encode(texts, batch_size=batch)
    ours = len(texts) / (time.perf_counter() - tic)
    memory = peak_memory(device)
    tic = time.perf_counter()
    st_model.encode(texts, batch_size=batch)
    theirs = len(texts) / (time.perf_counter() - tic)
    return {
        "check": f"encode {len(texts)} texts, batch {batch}, {max_length} tokens",
        "labelcon": f"{ours:.0f} texts/s",
        "reference": f"SentenceTransformer.encode {theirs:.0f} texts/s",
        "result": f"{ours / theirs:.2f}x",
        "memory": memory,
    }


def end_to_end_row(
    model: Path, device: torch.device, data: Path, name: str, dry_run: bool, work: Path
) -> dict[str, Any]:
    """The defaults but a fixed epoch count, end to end; in a dry run on 100 training items, briefly."""
    settings: dict[str, Any] = {
        "encoder": str(model),
        "device": str(device),
        "labels_file": str(data / "labels.txt"),
        "epochs": EPOCHS,
    }
    if dry_run:
        small = work / "small"
        small.mkdir()
        for split, n in (("train", 100), ("dev", 40), ("test", 40)):
            lines = (data / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
            (small / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        shutil.copy(data / "labels.txt", small / "labels.txt")
        data = small
        settings.update(epochs=1, min_steps=0, batch_size=16, max_length=16, eval_max_train=100, head="knn", lexical=0)
    reset_memory(device)
    tic = time.perf_counter()
    estimator = Labelcon(**settings).fit(
        data / "train.jsonl", data / "dev.jsonl", out_dir=work / "run", show_progress=False
    )
    test = estimator.evaluate(data / "test.jsonl")
    minutes = (time.perf_counter() - tic) / 60
    ok = minutes <= 3 and test["macro_f1"] >= 0.53
    return {
        "check": f"{name}, defaults, {settings['epochs']} epoch(s)"
        + (" (dry run: 100 items, knn head)" if dry_run else ""),
        "labelcon": f"{minutes:.1f} min, test macro-F1 {test['macro_f1']:.3f}, micro-F1 {test['micro_f1']:.3f}, "
        f"macro-AP {test['macro_ap']:.3f}",
        "reference": "goal on GoEmotions: <= 3 min, macro-F1 >= 0.53",
        "result": "pass" if ok else "short of the goal",
        "memory": peak_memory(device),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--bundle", type=Path, default=None, help="a folder from bench/prepare_gpu_check.py")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="holds goemotions/ ($LABELCON_DATA, else ../shared/data)"
    )
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"), help="the table, written row by row")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--encode-texts", type=int, default=20000)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--json", type=Path, help="also write the rows to this file (after each row)")
    args = parser.parse_args(argv)
    transformers_logging.disable_progress_bar()  # sentence-transformers' "Loading weights" bars
    if args.dry_run:
        args.batch, args.max_length, args.train_steps, args.encode_texts = 8, 16, 2, 64
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        if args.bundle is not None:
            model = gpu_bundle.restore_model(args.bundle, work / "minilm")
            data, name = gpu_bundle.restore_data(args.bundle, work / "data")
        else:
            model = shipped_path("minilm")
            data, name = resolve_dataset("goemotions", args.data_dir or default_data_dir()), "GoEmotions"
        table = Table(args.out, device)

        def add(row: dict[str, Any]) -> None:
            table.add(row)
            if args.json:
                args.json.write_text(json.dumps(table.rows, indent=2) + "\n", encoding="utf-8")

        train = read_dataset(data / "train.jsonl")
        agree_texts = list(train.texts[: 8 if args.dry_run else 32])
        agree_sets = [list(s) for s in train.labels[: len(agree_texts)]]
        agree_labels = torch.from_numpy(LabelSpace.from_label_sets(agree_sets).encode(agree_sets).toarray()).float()
        agreement_row = agreement(model, device, agree_texts, agree_labels, args.max_length)
        for precision in ("float32", "bfloat16"):
            add(agreement_row(precision))
        add(throughput_row(model, device, data, args.batch, args.max_length, args.train_steps))
        add(encode_row(model, device, data, args.encode_texts, args.max_length))
        add(end_to_end_row(model, device, data, name, args.dry_run, work))


if __name__ == "__main__":
    sys.exit(main())
