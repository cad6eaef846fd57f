"""Many processes: two gloo processes train like one process on the concatenated batch,
and ``labelcon train --nproc 2`` writes a run directory whose model predicts."""

from __future__ import annotations

import gc
import inspect
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.multiprocessing as mp
import yaml

import labelcon
from labelcon.config import Config
from labelcon.data import LabelSpace
from labelcon.objectives import build_objective
from labelcon.sampling import LabelAwareBatchSampler
from labelcon.training import distributed
from labelcon.training.labels import batch_labels
from labelcon.training.settings import TrainingSettings
from labelcon.training.trainer import Trainer
from tests.helpers import FAST

# Each spawned process imports this module: it stays light (no transformers, labelcon's
# estimator and CLI are imported where used).
WORLD = 2
FAST_SEED = Config().seed
LABEL_NAMES = ["food", "music", "sports", "travel"]
#: Two global batches of 8 items, 4 per process. Every label is held by at least two items
#: of each, so every anchor has a positive; in the second batch both halves also hold as
#: many (item, label) pairs. So every objective averages over as many anchor units on both
#: processes, the condition for exact equality (see labelcon.training.trainer).
BATCHES = [
    [
        ("goal team coach", [2]),
        ("song album", [1]),
        ("recipe bake", [0]),
        ("hotel flight beach", [3]),
        ("league match score", [2, 3]),
        ("band concert guitar", [1, 0]),
        ("dinner spicy kitchen", [0]),
        ("passport luggage trip", [3, 1]),
    ],
    [
        ("coach league", [2]),
        ("lyrics band", [1]),
        ("flavour recipe", [0, 2]),
        ("trip hotel", [3]),
        ("score goal team", [2, 3]),
        ("album song concert", [1]),
        ("bake dinner", [0]),
        ("beach flight", [3]),
    ],
]
#: (objective, mini_batch_size, queue_size, sparse labels): plain, GradCache, two streams,
#: label texts, a queue of labelled keys (dense and sparse labels), ESimCSE-style negatives.
CASES = [
    ("supcon-jaccard", None, None, False),
    ("supcon-jaccard", 3, None, False),
    ("simcse", None, None, False),
    ("simcse", 3, None, False),
    ("label_contrast", None, None, False),
    ("supcon-any", None, 12, False),
    ("mulsupcon", 2, 12, True),
    ("simcse", 2, 12, False),
]


class WordBag(torch.nn.Module):
    """A tiny text encoder for the step tests: the mean of word embeddings, then a linear map."""

    dim = 6

    def __init__(self, words: Sequence[str]) -> None:
        super().__init__()
        self.ids = {word: i + 1 for i, word in enumerate(sorted(set(words)))}
        torch.manual_seed(0)
        self.embedding = torch.nn.EmbeddingBag(len(self.ids) + 1, 10, mode="mean", padding_idx=0)
        self.projection = torch.nn.Linear(10, self.dim)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = [[self.ids[word] for word in text.split()] for text in texts]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return {"input_ids": ids}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.projection(self.embedding(batch["input_ids"]))


def _batch(index: int, rows: slice, sparse: bool) -> tuple[list[str], torch.Tensor]:
    """Texts and label rows ``rows`` of global batch ``index``, labels dense or sparse CSR
    (as the trainer gives them for many labels)."""
    texts = [text for text, _ in BATCHES[index]][rows]
    y = np.zeros((8, len(LABEL_NAMES)), dtype=np.float32)
    for i, (_, labels) in enumerate(BATCHES[index]):
        y[i, labels] = 1
    labels = batch_labels(sp.csr_matrix(y), np.arange(8)[rows])
    return texts, labels.to_sparse_csr() if sparse else labels


def _steps(case: tuple, rows: slice) -> dict:
    """The trainer's own step on the rows ``rows`` of each global batch (gradients zeroed
    between steps, as the optimizer does); the last step's loss (averaged over the
    processes, as the logging interval reads it) and gradients, and the queue."""
    objective, mini_batch, queue_size, sparse = case
    encoder = WordBag([word for batch in BATCHES for text, _ in batch for word in text.split()] + LABEL_NAMES)
    config = Config(objective=objective, mini_batch_size=mini_batch, queue_size=queue_size, temperature=0.2)
    trainer = Trainer(
        encoder,
        build_objective(objective, temperature=0.2),
        TrainingSettings.from_config(config),
        label_texts=LABEL_NAMES,
        show_progress=False,
    )
    trainer._start(_batch(0, rows, sparse)[0])
    for index in range(len(BATCHES) if queue_size else 1):
        encoder.zero_grad(set_to_none=True)
        loss = trainer._loss(*_batch(index, rows, sparse))
    out = {
        "loss": distributed.mean_over_processes(loss),
        "grads": {n: p.grad.clone() for n, p in encoder.named_parameters()},
    }
    if trainer.queue is not None:
        out["queue"] = (trainer.queue.keys.clone(), trainer.queue.labels.to_dense())
    return out


def _worker(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    whole = [_steps(case, slice(None)) for case in CASES]  # one process, before joining
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        for case, want in zip(CASES, whole):
            got = _steps(case, slice(4 * rank, 4 * rank + 4))
            torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-5, atol=1e-7, msg=f"{case}: loss")
            scale = max(g.abs().max().item() for g in want["grads"].values())
            assert scale > 0, case
            for name, grad in want["grads"].items():
                torch.testing.assert_close(
                    got["grads"][name], grad, rtol=1e-5, atol=1e-5 * scale, msg=f"{case}: gradient of {name}"
                )
            if "queue" in want:
                for mine, reference in zip(got["queue"], want["queue"]):
                    torch.testing.assert_close(mine.float(), reference.float(), msg=f"{case}: queue")
    finally:
        gc.collect()  # the steps' DDP wrappers go before the process group does
        torch.distributed.destroy_process_group()


class WordBagWithSpare(WordBag):
    """WordBag with a parameter its embeddings never reach, like a Hugging Face model's pooler."""

    def __init__(self, words: Sequence[str]) -> None:
        super().__init__(words)
        self.spare = torch.nn.Linear(self.dim, self.dim)


def _finds_unused_parameters(encoder: WordBag, texts: list[str], labels: torch.Tensor) -> bool:
    """Whether the trainer's DDP wrapper looks for unused parameters, after two steps (DDP
    fails in the second one when it was told wrong)."""
    trainer = Trainer(
        encoder, build_objective("supcon-jaccard"), TrainingSettings.from_config(Config()), show_progress=False
    )
    trainer._start(texts)
    for _ in range(2):
        trainer._loss(texts, labels)
        encoder.zero_grad(set_to_none=True)
    found = trainer.model.find_unused_parameters
    del trainer  # the DDP wrapper and its reducer go before the process group does
    gc.collect()
    return found


def _ddp_worker(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    texts, labels = _batch(0, slice(4 * rank, 4 * rank + 4), sparse=False)
    words = [word for batch in BATCHES for text, _ in batch for word in text.split()]
    try:
        assert not _finds_unused_parameters(WordBag(words), texts, labels)
        assert _finds_unused_parameters(WordBagWithSpare(words), texts, labels)
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_looks_for_unused_parameters_only_when_the_encoder_has_some() -> None:
    mp.spawn(_ddp_worker, args=(_free_port(),), nprocs=WORLD, join=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_step_like_one_process_on_the_concatenated_batch() -> None:
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)


@pytest.fixture(scope="module")
def two_process_run(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    command = [
        sys.executable,
        "-m",
        "labelcon",
        "train",
        "--train",
        str(toy_data["train"]),
        "--dev",
        str(toy_data["dev"]),
        "--test",
        str(toy_data["test"]),
        "--out",
        str(out),
        "--encoder",
        "static",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--max-length",
        "16",
        "--queue-size",
        "32",
        "--nproc",
        "2",
        "--min-steps",
        "0",
        "--quiet",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (out.parent / "stderr.txt").write_text(done.stderr)
    return out


def test_nproc_run_is_quiet_under_quiet(two_process_run) -> None:
    """No warnings from the collectives (deprecated all-gathers) or DDP (find_unused_parameters)."""
    stderr = (two_process_run.parent / "stderr.txt").read_text()
    assert "Warning" not in stderr and "find_unused_parameters" not in stderr, stderr[-3000:]


def test_nproc_run_writes_a_working_run_directory(two_process_run, toy_data) -> None:
    out = two_process_run
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["nproc"] == 2 and config["queue_size"] == 32
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2 and checkpoint["state"]["finished"]
    assert checkpoint["queue"]["count"] == 32
    # two processes of 16 items run the global batches of one process of 32
    items = [json.loads(line) for line in toy_data["train"].read_text().splitlines()]
    y = LabelSpace.from_label_sets([item["labels"] for item in items]).encode([item["labels"] for item in items])
    steps = len(LabelAwareBatchSampler(y, 32, seed=FAST_SEED, drop_last=True))
    assert [h["step"] for h in checkpoint["state"]["history"]] == [steps, 2 * steps]
    model = labelcon.Labelcon.load(out)
    assert model.evaluate(toy_data["test"])["macro_ap"] > 0.8
    assert "music" in model.predict(["song album band concert"])[0]
    assert (out / "predictions_test.jsonl").exists()


def test_resume_with_another_process_count_says_so(two_process_run, toy_data) -> None:
    from click.testing import CliRunner

    from labelcon.cli import main

    args = ["train", "--train", str(toy_data["train"]), "--out", str(two_process_run), "--resume", "--nproc", "1", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "holds a finished run; nothing to resume" in result.output
    state = json.loads((two_process_run / "run.json").read_text())
    (two_process_run / "run.json").write_text(json.dumps({**state, "status": "running"}))  # as if interrupted
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "nproc: 2 in the run, 1 now" in result.output


def test_nproc_without_torchrun_from_python_says_how(toy_data) -> None:
    with pytest.raises(ValueError, match="torchrun --nproc-per-node 2"):
        labelcon.Labelcon(**{**FAST, "nproc": 2}).fit(toy_data["train"], toy_data["dev"], show_progress=False)


def test_constant_buffers_keyword_is_one_this_torch_accepts(monkeypatch) -> None:
    """``forward_sync_buffers`` only where DDP takes it (torch >= 2.13), else ``broadcast_buffers``."""
    from torch.nn.parallel import DistributedDataParallel

    option = distributed.constant_buffers_option()
    assert option == {"forward_sync_buffers": False} or option == {"broadcast_buffers": False}
    assert set(option) <= set(inspect.signature(DistributedDataParallel.__init__).parameters)

    class OlderDDP:  # the signature of torch 2.3 to 2.12
        def __init__(self, module, device_ids=None, broadcast_buffers=True, find_unused_parameters=False):
            pass

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", OlderDDP)
    assert distributed.constant_buffers_option() == {"broadcast_buffers": False}
