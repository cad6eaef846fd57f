"""CoSENT on STS-B through labelcon against sentence-transformers' CoSENTLoss, same steps.

    python bench/bench_sts_cosent.py [--epochs 1] [--batch-size 16] [--lr 2e-5] [--max-length 64]
        [--seed 13] [--threads 1] [--data-dir ../shared/data]

Both start from all-MiniLM-L6-v2 and train on the STS-B train pairs for the same number of
steps (``epochs * (train pairs // batch size)``) with the same optimiser settings: AdamW,
learning rate ``--lr``, weight decay 0.01, linear warm-up over 10% of the steps then
linear decay, gradient clipping at 1.0, float32, ``--max-length`` tokens. labelcon:
``labelcon train --pairs stsb/train.jsonl --pair-fields text1,text2 --pair-score-field
score`` as Python (no time budget, no dev check). sentence-transformers:
``SentenceTransformerTrainer`` with ``CoSENTLoss`` (scale 20, as labelcon's). Then the
test Spearman x 100 of the cosine, by sentence-transformers' ``EmbeddingSimilarityEvaluator``
for both models (and by ``labelcon evaluate``'s function for labelcon's), and the
untrained model's for reference. ``--threads``: torch's intra-op threads for both (1 by
default: on a shared 2-core machine two threads spin-wait on each other's neighbours, and a
MiniLM step took about 6x the wall time of one thread).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from data_dir import default_data_dir
from machine import machine

from labelcon import Labelcon
from labelcon.data.pairs import read_pair_records
from labelcon.encoders import shipped_path


def st_spearman(model, test) -> float:
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    evaluator = EmbeddingSimilarityEvaluator(*test.columns, test.scores, similarity_fn_names=["cosine"])
    return 100 * evaluator(model)["spearman_cosine"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    fields = {"fields": "text1,text2", "score_field": "score"}
    train = read_pair_records(args.data_dir / "stsb" / "train.jsonl", **fields)
    test = read_pair_records(args.data_dir / "stsb" / "test.jsonl", **fields)
    steps = args.epochs * (len(train) // args.batch_size)
    print(f"{machine()}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    print(f"STS-B: {len(train)} train pairs, {len(test)} test pairs; {steps} steps of {args.batch_size} pairs\n")

    def fresh_st() -> SentenceTransformer:
        model = SentenceTransformer(str(shipped_path("minilm")), device="cpu")
        model.max_seq_length = args.max_length
        return model

    rows = [("all-MiniLM-L6-v2, untrained", "-", "-", st_spearman(fresh_st(), test), None)]
    print(f"untrained: {rows[-1]}", flush=True)

    tic = time.monotonic()
    model = Labelcon(
        encoder="minilm",
        precision="float32",
        epochs=args.epochs,
        pair_batch_size=args.batch_size,
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
        pair_fields="text1,text2",
        pair_score_field="score",
    ).fit(pairs=train, show_progress=False)
    seconds = time.monotonic() - tic
    ours = 100 * model.evaluate_pairs(test)["pairs_spearman"]
    assert model.history_[-1]["step"] == steps, model.history_[-1]
    with tempfile.TemporaryDirectory() as tmp:
        from labelcon.export import export

        model.save(Path(tmp) / "run")
        export(Path(tmp) / "run", Path(tmp) / "st", "sentence-transformers")
        exported = SentenceTransformer(str(Path(tmp) / "st"), device="cpu")
        exported.max_seq_length = args.max_length
        rows.append(("labelcon CoSENT (`--pairs`)", steps, seconds, st_spearman(exported, test), ours))
    print(f"labelcon done: {rows[-1]}", flush=True)

    tic = time.monotonic()
    st_model = fresh_st()
    data = Dataset.from_dict({"text1": train.columns[0], "text2": train.columns[1], "score": train.scores})
    with tempfile.TemporaryDirectory() as tmp:
        st_args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=args.batch_size,
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
        )
        SentenceTransformerTrainer(model=st_model, args=st_args, train_dataset=data, loss=CoSENTLoss(st_model)).train()
    seconds = time.monotonic() - tic
    rows.append(("sentence-transformers CoSENTLoss", steps, seconds, st_spearman(st_model, test), None))

    print("| system | steps | train time | test Spearman x 100 (ST evaluator) | (labelcon evaluate) |")
    print("|---|---:|---:|---:|---:|")
    for name, n, secs, spearman, own in rows:
        shown = "-" if secs == "-" else f"{secs / 60:.1f} min"
        print(f"| {name} | {n} | {shown} | {spearman:.2f} | {'-' if own is None else f'{own:.2f}'} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
