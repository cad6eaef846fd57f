"""GoEmotions through sentence-transformers' trainer with labelcon's loss and sampler,
against labelcon's own trainer and against MultipleNegativesRankingLoss, same steps.

    python bench/bench_st_goemotions.py [--epochs 1] [--train-items N] [--dev-items N] [--test-items N]
        [--batch-size 64] [--lr 5e-5] [--max-length 64] [--seed 13] [--threads 1]
        [--data-dir ../shared/data] [--json FILE]

Three encoders start from all-MiniLM-L6-v2 and train for the same number of steps: one
epoch of labelcon's label-aware batches over the training items (``--epochs`` of them),
``--batch-size`` texts a step, AdamW at ``--lr`` with weight decay 0.01, linear warm-up
over 10% of the steps then linear decay, clipping at 1.0, float32, ``--max-length`` tokens:

- labelcon's own trainer: ``Labelcon(objective="supcon-jaccard", temperature=0.1)``;
- ``SentenceTransformerTrainer`` with :class:`labelcon.st.LabelconLoss` (the same
  objective) and :class:`labelcon.st.MultiLabelBatchSampler` (the same batches);
- ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` (scale 20) on
  label-sharing pairs: each training item with a partner that shares a label, paired with
  one such partner drawn at random; ``--batch-size`` / 2 pairs a step, so every step
  embeds as many texts as the others'.

Afterwards each encoder gets the same prediction stage: labelcon's defaults (head picked
on dev, thresholds calibrated on dev) fitted on the training items' embeddings, by
``Labelcon(encoder=FOLDER, epochs=0)`` for the two sentence-transformers models and within
the same ``fit`` for labelcon's own. Figures: test macro-F1, micro-F1, macro-AP, and the
minutes of training and stage together.
``--train-items``/``--dev-items``/``--test-items``: a seeded sample of each split, for a
run that fits a shared machine (by default each split is whole). ``--threads``: torch's intra-op threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from data_dir import default_data_dir
from machine import machine

from labelcon import Labelcon
from labelcon.data import LabelSpace, read_dataset
from labelcon.data.dataset import Dataset
from labelcon.data.labels import read_labels_file
from labelcon.encoders import shipped_path
from labelcon.sampling import LabelAwareBatchSampler

METRICS = ("macro_f1", "micro_f1", "macro_ap")


def sample(data: Dataset, n: int | None, seed: int) -> Dataset:
    """``n`` items of ``data`` drawn without replacement (all of them when ``n`` is None)."""
    if n is None or n >= len(data):
        return data
    return data.subset(sorted(np.random.default_rng(seed).choice(len(data), n, replace=False).tolist()))


def label_sharing_pairs(labels, seed: int) -> tuple[list[int], list[int]]:
    """(anchor, positive) indices: each item that shares a label with another item, with one
    such item drawn at random (a label of the anchor, then an item holding it)."""
    rng = np.random.default_rng(seed)
    holders = [labels[:, c].nonzero()[0] for c in range(labels.shape[1])]
    anchors, positives = [], []
    for i in range(labels.shape[0]):
        own = [c for c in labels[i].indices if len(holders[c]) > 1]
        if not own:
            continue
        members = holders[own[rng.integers(len(own))]]
        j = i
        while j == i:
            j = int(members[rng.integers(len(members))])
        anchors.append(i), positives.append(j)
    return anchors, positives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-items", type=int, default=None)
    parser.add_argument("--dev-items", type=int, default=None)
    parser.add_argument("--test-items", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--json", type=Path, default=None, help="write the figures and the settings here")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    from datasets import Dataset as HFDataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from labelcon.st import LabelconLoss, MultiLabelBatchSampler

    root = args.data_dir / "goemotions"
    train = sample(read_dataset(root / "train.jsonl"), args.train_items, args.seed)
    dev = sample(read_dataset(root / "dev.jsonl"), args.dev_items, args.seed)
    test = sample(read_dataset(root / "test.jsonl"), args.test_items, args.seed)
    space = LabelSpace(read_labels_file(root / "labels.txt"))
    y = space.encode(train.labels)
    steps = args.epochs * len(LabelAwareBatchSampler(y, args.batch_size, seed=args.seed, drop_last=True))
    print(f"{machine()}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    print(f"GoEmotions: {len(train)} train, {len(dev)} dev, {len(test)} test items; {steps} steps\n", flush=True)

    settings = dict(
        precision="float32",
        batch_size=args.batch_size,
        device="cpu",
        lr=args.lr,
        warmup_ratio=0.1,
        weight_decay=0.01,
        max_grad_norm=1.0,
        max_length=args.max_length,
        encode_max_length=args.max_length,
        min_steps=0,
        max_time_minutes=0,
        seed=args.seed,
        labels_file=str(root / "labels.txt"),
    )
    rows: list[dict] = []

    def record(name: str, model: Labelcon, seconds: float) -> None:
        rows.append({"system": name, "steps": steps, "seconds": round(seconds, 1), **model.metrics_["test"]})
        print(f"{name}: " + ", ".join(f"{k} {rows[-1][k]:.3f}" for k in METRICS), flush=True)

    tic = time.monotonic()
    own = Labelcon(encoder="minilm", objective="supcon-jaccard", temperature=0.1, epochs=args.epochs, **settings)
    own.fit(train, dev, test=test, show_progress=False)
    assert own.history_[-1]["step"] == steps, own.history_[-1]
    record("labelcon's trainer", own, time.monotonic() - tic)

    def st_run(name: str, data: HFDataset, loss_of, batch_size: int, **extra) -> None:
        model = SentenceTransformer(str(shipped_path("minilm")), device="cpu")
        model.max_seq_length = args.max_length
        with tempfile.TemporaryDirectory() as tmp:
            st_args = SentenceTransformerTrainingArguments(
                output_dir=tmp,
                max_steps=steps,
                per_device_train_batch_size=batch_size,
                learning_rate=args.lr,
                warmup_ratio=0.1,
                weight_decay=0.01,
                max_grad_norm=1.0,
                seed=args.seed,
                report_to=[],
                save_strategy="no",
                logging_steps=max(1, steps // 10),
                use_cpu=True,
                disable_tqdm=True,
                **extra,
            )
            tic = time.monotonic()
            SentenceTransformerTrainer(model=model, args=st_args, train_dataset=data, loss=loss_of(model)).train()
            model.save(str(Path(tmp) / "model"))
            staged = Labelcon(encoder=str(Path(tmp) / "model"), epochs=0, **settings)
            staged.fit(train, dev, test=test, show_progress=False)
        record(name, staged, time.monotonic() - tic)

    multi_hot = HFDataset.from_dict({"text": train.texts, "labels": y.toarray().astype(int).tolist()})
    st_run(
        "SentenceTransformerTrainer + LabelconLoss + MultiLabelBatchSampler",
        multi_hot,
        lambda model: LabelconLoss(model, "supcon-jaccard", temperature=0.1),
        args.batch_size,
        batch_sampler=MultiLabelBatchSampler,
        dataloader_drop_last=True,  # as labelcon's trainer: the same batches
    )
    anchors, positives = label_sharing_pairs(y, args.seed)
    pairs = HFDataset.from_dict(
        {"anchor": [train.texts[i] for i in anchors], "positive": [train.texts[j] for j in positives]}
    )
    st_run(
        "SentenceTransformerTrainer + MultipleNegativesRankingLoss (label-sharing pairs)",
        pairs,
        MultipleNegativesRankingLoss,
        args.batch_size // 2,
    )

    print("\n| system | steps | training and stage | macro-F1 | micro-F1 | macro-AP |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        figures = " | ".join(f"{row[k]:.3f}" for k in METRICS)
        print(f"| {row['system']} | {row['steps']} | {row['seconds'] / 60:.1f} min | {figures} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
        run = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "machine": machine()}
        args.json.write_text(json.dumps({**run, "load_at_end": os.getloadavg()[0], "settings": settings, "rows": rows}))


if __name__ == "__main__":
    main()
