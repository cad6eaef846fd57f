"""LabelSpace: column order, sparse encoding, unknown labels, decoding, save/load."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from labelcon.data import DataError, Dataset, LabelSpace, read_dataset, train_dev_split


def test_order_is_sorted_names_or_the_labels_file(tmp_path):
    sets = [("b", "a"), ("c",), ()]
    assert LabelSpace.from_label_sets(sets).names == ("a", "b", "c")
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("c\nb\na\nunused\n")
    space = LabelSpace.from_label_sets(sets, labels_file=labels_file)
    assert space.names == ("c", "b", "a", "unused")
    assert space.index("a") == 2 and "unused" in space and len(space) == 4


def test_data_label_missing_from_labels_file_names_it_and_the_file(tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\n")
    with pytest.raises(
        DataError, match=r"labels\.txt: .*1 label\(s\) in the data that the file does not list: \['zz'\]"
    ):
        LabelSpace.from_label_sets([("a", "zz")], labels_file=labels_file)


def test_encode_matches_the_dense_definition():
    space = LabelSpace(["x", "y", "z"])
    sets = [("z", "x"), (), ("y",), ("y", "y")]
    y = space.encode(sets)
    assert isinstance(y, sp.csr_matrix) and y.dtype == np.float32 and y.has_canonical_format
    assert y.toarray().tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert [space.decode(y[i].indices) for i in range(4)] == [("x", "z"), (), ("y",), ("y",)]


def test_unknown_labels_error_or_are_dropped_and_counted():
    space = LabelSpace(["x", "y"])
    with pytest.raises(
        DataError,
        match=r"dev\.jsonl, item 2: .*got the unknown label 'new' \(2 unknown label\(s\) in all: \['new', 'odd'\]\)",
    ):
        space.encode([("x",), ("new", "x"), ("odd",)], source="dev.jsonl")
    y, unknown = space.encode([("x",), ("new", "x"), ("odd", "new")], unknown="ignore", return_unknown=True)
    assert unknown == Counter({"new": 2, "odd": 1})
    assert y.toarray().tolist() == [[1, 0], [1, 0], [0, 0]]
    with pytest.raises(ValueError, match="unknown='error' or 'ignore'"):
        space.encode([("x",)], unknown="skip")


FLAGS = (
    r"labels met outside training are an error; pass --ignore-unknown-labels \(Python: "
    r"ignore_unknown_labels=True\) to count them as misses, or --labels-file with the full label list "
    r"\(Python: labels_file=\.\.\.\)$"
)


def test_label_matrix_error_names_the_file_line_counts_and_flags(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text(
        '{"text": "a", "labels": ["x"]}\n\n{"text": "b", "labels": ["x", "new"]}\n'
        '{"text": "c", "labels": ["odd", "new"]}\n'
    )
    dev = read_dataset(path)
    assert dev.where == ["line 1", "line 3", "line 4"]
    space = LabelSpace(["x", "y"])
    with pytest.raises(
        DataError,
        match=r"dev\.jsonl, line 3: unknown label 'new' \(2 unknown labels in 2 items, "
        r"first: \['new', 'odd'\]\): " + FLAGS,
    ):
        dev.label_matrix(space)
    y, unknown = dev.label_matrix(space, ignore_unknown=True)
    assert unknown == Counter({"new": 2, "odd": 1})
    assert y.toarray().tolist() == [[1, 0], [1, 0], [0, 0]]
    assert dev.subset([2]).place(0).endswith("dev.jsonl, line 4")


def test_label_matrix_names_csv_lines_with_the_header_and_parquet_rows(tmp_path):
    csv_path = tmp_path / "test.csv"
    csv_path.write_text('text,labels\na,x\n"two\nlines",x\nc,"x,zz"\n')
    with pytest.raises(DataError, match=r"test\.csv, line 5: unknown label 'zz' \(1 unknown label in 1 item"):
        read_dataset(csv_path).label_matrix(LabelSpace(["x"]))
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet_path = tmp_path / "test.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "labels": [["x"], ["zz"]]}), parquet_path)
    with pytest.raises(DataError, match=r"test\.parquet, row 2: unknown label 'zz'"):
        read_dataset(parquet_path).label_matrix(LabelSpace(["x"]))


def test_label_matrix_of_items_not_from_a_file_names_the_item_and_keeps_places_through_splits():
    with pytest.raises(DataError, match=r"^item 2: unknown label 'zz' \(1 unknown label in 1 item, first: \['zz'\]\)"):
        Dataset(["a", "b"], [("x",), ("zz",)]).label_matrix(LabelSpace(["x"]))
    ds = Dataset([f"t{i}" for i in range(10)], [("x",)] * 10, "d.jsonl", [f"line {i + 2}" for i in range(10)])
    train, dev = train_dev_split(ds, dev_fraction=0.3, seed=0)
    assert [ds.texts.index(t) + 2 for t in dev.texts] == [int(w.split()[1]) for w in dev.where]
    with pytest.raises(ValueError, match="10 texts and 9 places"):
        Dataset(ds.texts, ds.labels, "d.jsonl", ds.where[1:])


def test_names_validation_decode_range_and_json_round_trip():
    with pytest.raises(DataError, match=r"distinct label names, got repeats: \['a'\]"):
        LabelSpace(["a", "b", "a"])
    with pytest.raises(DataError, match="non-empty strings, got int 3"):
        LabelSpace(["a", 3])
    space = LabelSpace(["a", "b"])
    with pytest.raises(IndexError, match=r"label ids in \[0, 2\), got -1"):
        space.decode([-1])
    with pytest.raises(KeyError, match="'q' is not one of the 2 labels"):
        space.index("q")
    again = LabelSpace.from_json(space.to_json())
    assert again == space and again != LabelSpace(["b", "a"])
    with pytest.raises(DataError, match="expected a label space"):
        LabelSpace.from_json({"labels": ["a"]})


def test_encode_is_cheap_at_1e5_labels():
    rng = np.random.default_rng(0)
    names = [f"label{i}" for i in range(100_000)]
    space = LabelSpace(names)
    sets = [tuple(names[j] for j in row) for row in rng.integers(100_000, size=(100_000, 3)).tolist()]
    start = time.perf_counter()
    y = space.encode(sets)
    elapsed = time.perf_counter() - start
    assert y.shape == (100_000, 100_000) and y.nnz <= 300_000
    assert elapsed < 3.0, f"encoding 1e5 items over 1e5 labels took {elapsed:.2f} s"
