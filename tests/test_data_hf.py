"""Hugging Face ``datasets.Dataset`` as input to fit, evaluate and index."""

from __future__ import annotations

import pytest

from labelcon import Labelcon
from labelcon.data import DataError, as_dataset
from tests.helpers import FAST, make_items

datasets = pytest.importorskip("datasets")


def _hf(items: list[dict], names: list[str]):
    """Items as a datasets.Dataset whose label column holds class-label integers."""
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "tags": datasets.Sequence(datasets.ClassLabel(names=names))}
    )
    return datasets.Dataset.from_dict(
        {"sentence": [i["text"] for i in items], "tags": [[names.index(n) for n in i["labels"]] for i in items]},
        features=features,
    )


def test_class_label_integers_become_names_and_columns_are_named_like_files() -> None:
    items = make_items(6, 0)
    names = sorted({n for i in items for n in i["labels"]})
    data = as_dataset(_hf(items, names), text_field="sentence", labels_field="tags")
    assert data.texts == [i["text"] for i in items] and data.labels == [tuple(i["labels"]) for i in items]
    single = datasets.Dataset.from_dict(
        {"text": ["a", "b"], "label": [1, 0]},
        features=datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
        ),
    )
    assert as_dataset(single, labels_field="label").labels == [("pos",), ("neg",)]
    assert as_dataset(single, labels_field=None).labels == [(), ()]
    with pytest.raises(DataError, match=r"no column 'text' .*--text-field"):
        as_dataset(_hf(items, names))
    with pytest.raises(DataError, match=r"no column 'labels' .*--labels-field"):
        as_dataset(single)


def test_fit_evaluate_and_index_take_a_hf_dataset(toy_data) -> None:
    train, dev = make_items(120, 0), make_items(40, 1)
    names = sorted({n for i in train + dev for n in i["labels"]})
    model = Labelcon(**{**FAST, "text_field": "sentence", "labels_field": "tags"})
    model.fit(_hf(train, names), _hf(dev, names), show_progress=False)
    assert model.classes_ == names and model.evaluate(_hf(dev, names))["n_items"] == 40
    model.index(_hf(dev, names))
    hits = model.search(["goal team coach"], 3)[0]
    assert len(hits) == 3 and all(isinstance(hit.labels, (list, tuple)) for hit in hits)
