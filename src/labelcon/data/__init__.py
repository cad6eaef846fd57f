"""Data: reading labelled files, label spaces, splits, registered and demo data sets.

>>> from labelcon.data import LabelSpace, demo_paths, read_dataset, train_dev_split
>>> train = read_dataset(demo_paths()["train"])
>>> space = LabelSpace.from_label_sets(train.labels, labels_file=demo_paths()["labels"])
>>> y = space.encode(train.labels)
>>> y.shape == (len(train), len(space))
True
>>> part_train, part_dev = train_dev_split(train, dev_fraction=0.1, seed=13)
>>> len(part_train) + len(part_dev) == len(train)
True
"""

from labelcon.data.dataset import (
    Dataset,
    PairDataset,
    as_dataset,
    label_texts,
    read_dataset,
    read_label_descriptions,
    read_pairs,
    read_texts,
)
from labelcon.data.labels import LabelSpace, read_labels_file
from labelcon.data.records import DataError
from labelcon.data.registry import DATASETS, demo_paths, load_split, registered_names, resolve_dataset
from labelcon.data.splits import sample_shots, train_dev_split

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "LabelSpace",
    "PairDataset",
    "as_dataset",
    "label_texts",
    "demo_paths",
    "load_split",
    "read_dataset",
    "read_label_descriptions",
    "read_labels_file",
    "read_pairs",
    "read_texts",
    "registered_names",
    "resolve_dataset",
    "sample_shots",
    "train_dev_split",
]
