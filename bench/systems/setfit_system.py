"""SetFit (the ``setfit`` library itself, 1.x) on all-MiniLM-L6-v2, in the few-shot regime.

SetFit's own recipe and defaults: contrastive fine-tuning of the sentence encoder on
pairs of training texts with ``CosineSimilarityLoss`` (target 1 for a positive pair, 0
for a negative one), then a one-vs-rest ``LogisticRegression`` head on the fine-tuned
embeddings (``multi_target_strategy="one-vs-rest"``). For multi-label data SetFit calls
two texts a positive pair when their label sets share at least one label. Settings are
those of the SetFit paper and README: ``num_iterations=20`` (20 positive and 20 negative
pairs per training text), 1 epoch, batch 16, SetFit's default body learning rate (2e-5)
and warmup, max_length from the model (256). Dev is not used for training (SetFit has no
dev-based model selection); the harness calibrates thresholds on it as for everyone.

SetFit enumerates all O(n^2) pairs of the training set before sampling, so it is only run
with ``--shots N``.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import setfit
from datasets import Dataset as HFDataset
from setfit import SetFitModel, Trainer, TrainingArguments

from labelcon.encoders import shipped_path
from systems.common import Result, Task

NAME = "setfit"
DESCRIPTION = "SetFit 1.x (pair positive if it shares a label, cosine-similarity loss, 20 iterations) + one-vs-rest LR"
NUM_ITERATIONS = 20
NUM_EPOCHS = 1
BATCH_SIZE = 16


def run(task: Task) -> Result:
    """Contrastive fine-tuning + head fit on the few-shot train set; score dev and test."""
    if not task.shots:
        raise ValueError("the setfit system runs in the few-shot regime only: pass --shots N")
    started = time.perf_counter()
    model = SetFitModel.from_pretrained(
        str(shipped_path("minilm")), multi_target_strategy="one-vs-rest", local_files_only=True
    )
    train = HFDataset.from_dict({"text": task.train.texts, "label": task.y_train.toarray().astype(int).tolist()})
    with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            batch_size=BATCH_SIZE,
            num_epochs=NUM_EPOCHS,
            num_iterations=NUM_ITERATIONS,
            seed=task.seed,
            save_strategy="no",
            report_to="none",
            show_progress_bar=task.show_progress,
        )
        Trainer(model=model, args=args, train_dataset=train).train()
    train_seconds = time.perf_counter() - started

    def score(texts: list[str]) -> np.ndarray:
        probs = model.predict_proba(texts, batch_size=64, as_numpy=True, show_progress_bar=task.show_progress)
        return np.asarray(probs, dtype=np.float32).reshape(len(texts), len(task.labels))

    notes = {
        "num_iterations": NUM_ITERATIONS,
        "epochs": NUM_EPOCHS,
        "batch_size": BATCH_SIZE,
        "pairs": 2 * NUM_ITERATIONS * len(task.train),
        "setfit_version": setfit.__version__,
    }
    return Result(score(task.dev.texts), score(task.test.texts), train_seconds, notes)
