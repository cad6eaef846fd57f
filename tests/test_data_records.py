"""Reading labelled files: formats, label rules, and error messages that say where and what."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from labelcon.data import DataError, Dataset, as_dataset, read_dataset, read_labels_file, read_pairs, read_texts


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# ---------------------------------------------------------------------- formats and label rules
def test_jsonl_label_forms_and_empty_sets(tmp_path):
    path = write(
        tmp_path,
        "d.jsonl",
        jsonl(
            {"text": "a", "labels": ["x", "y"]},
            {"text": "b", "labels": None},
            {"text": "c"},
            {"text": "d", "labels": []},
            {"text": "e", "labels": " x "},
            {"text": "f", "labels": "x,y"},
            {"text": "g", "labels": ["y", "x", "y"]},
        ),
    )
    ds = read_dataset(path)
    assert ds.texts == list("abcdefg")
    assert ds.labels == [("x", "y"), (), (), (), ("x",), ("x,y",), ("y", "x")]
    assert ds.source == str(path)
    assert read_dataset(path, label_sep=",").labels[5] == ("x", "y")


def test_csv_tsv_cells_split_quote_and_list_literals(tmp_path):
    csv_path = write(
        tmp_path, "d.csv", 'text,labels\n"hi, you","a, b"\nplain,\nj,"[""a"", ""c""]"\np,"[\'a\', \'b\']"\n'
    )
    assert read_dataset(csv_path).labels == [("a", "b"), (), ("a", "c"), ("a", "b")]
    assert read_dataset(csv_path).texts[0] == "hi, you"
    tsv_path = write(tmp_path, "d.tsv", "tags\tbody\na|b\tfirst\n\tsecond\n")
    ds = read_dataset(tsv_path, text_field="body", labels_field="tags", label_sep="|")
    assert ds.texts == ["first", "second"] and ds.labels == [("a", "b"), ()]


@pytest.mark.parametrize("labels_field", [None, ""])
def test_no_labels_field_reads_every_item_unlabelled(tmp_path, labels_field):
    path = write(tmp_path, "d.csv", "text,tags\na,x\nb,y\n")
    ds = read_dataset(path, labels_field=labels_field)
    assert ds.texts == ["a", "b"] and ds.labels == [(), ()]


def test_format_override_txt_and_read_texts(tmp_path):
    path = write(tmp_path, "items.data", jsonl({"body": "x"}, {"body": "y"}))
    assert read_texts(path, text_field="body", format="jsonl") == ["x", "y"]
    txt = write(tmp_path, "t.txt", "first line\n\n  second line\r\n")
    ds = read_dataset(txt)
    assert ds.texts == ["first line", "  second line"] and ds.labels == [(), ()]


def test_parquet_list_and_string_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "labels": [["x"], [], None], "tags": ["x;y", "", None]}), path)
    assert read_dataset(path).labels == [("x",), (), ()]
    assert read_dataset(path, labels_field="tags", label_sep=";").labels == [("x", "y"), (), ()]


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        read_dataset(write(tmp_path, "d.parquet", b"PAR1", "wb"))


def test_pairs_and_labels_file(tmp_path):
    path = write(
        tmp_path,
        "p.jsonl",
        jsonl({"text1": "a", "text2": "b", "score": 4}, {"text1": "c", "text2": "d", "score": "0.5"}),
    )
    pairs = read_pairs(path)
    assert (pairs.texts1, pairs.texts2, pairs.scores, len(pairs)) == (["a", "c"], ["b", "d"], [4.0, 0.5], 2)
    assert read_labels_file(write(tmp_path, "l.txt", "b\n a \n\nc\n")) == ["b", "a", "c"]


def test_dataset_subset_and_length_check():
    ds = Dataset(["a", "b", "c"], [("x",), (), ("y",)], "src")
    sub = ds.subset([2, 0])
    assert (sub.texts, sub.labels, sub.source, len(sub)) == (["c", "a"], [("y",), ("x",)], "src", 2)
    with pytest.raises(ValueError, match="2 texts and 1 label sets"):
        Dataset(["a", "b"], [()])


def test_as_dataset_reads_each_label_set_form_from_python():
    texts = ["a", "b", "c", "d", "e", "f", "g"]
    label_sets = ["sports", None, "", [" x ", "y", "x"], ("y",), {"z", "a"}, np.array(["m", "n"])]
    ds = as_dataset((texts, label_sets))
    assert ds.texts == texts and ds.source is None and ds.where is None
    assert ds.labels == [("sports",), (), (), ("x", "y"), ("y",), ("a", "z"), ("m", "n")]


def test_as_dataset_passes_a_dataset_through_and_reads_a_path_with_the_field_options(tmp_path):
    ds = Dataset(["a"], [("x",)])
    assert as_dataset(ds) is ds
    path = write(tmp_path, "d.jsonl", jsonl({"body": "a", "tags": "x|y"}))
    read = as_dataset(path, text_field="body", labels_field="tags", label_sep="|")
    assert (read.texts, read.labels, read.where) == (["a"], [("x", "y")], ["line 1"])


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (
            (["a", "b"], ["x", 3]),
            r"^label_sets\[1\]: expected a label set: a list, tuple or set of label names, "
            r"one name as a string, or None; got int 3$",
        ),
        (
            (["a"], [["x", ["y"]]]),
            r"^label_sets\[0\]: expected label names as strings, got a list holding list \['y'\]$",
        ),
        ((["a"], [("x", 2.5)]), r"^label_sets\[0\]: expected label names as strings, got a tuple holding float 2\.5$"),
        ((["a"], [["x", " "]]), r"^label_sets\[0\]: expected non-empty label names"),
        ((["a", "b", "c"], ["x", "y"]), r"^expected one label set per text, got 3 texts and 2 label sets$"),
        ((["a", 7], ["x", "y"]), r"^texts\[1\]: expected a non-empty string, got int 7$"),
        ((["a", " "], ["x", "y"]), r"^texts\[1\]: expected a non-empty string, got str ' '$"),
        (("ab", ["x", "y"]), r"^expected texts as a sequence with one entry per item, got a single string 'ab'$"),
        ((["a"], "x"), r"^expected label_sets as a sequence with one entry per item, got a single string 'x'$"),
    ],
)
def test_as_dataset_errors_name_the_index_what_was_expected_and_what_came(data, pattern):
    with pytest.raises(DataError, match=pattern):
        as_dataset(data)


def test_as_dataset_refuses_other_kinds_of_data():
    with pytest.raises(TypeError, match=r"a path, a Dataset or a \(texts, label_sets\) pair, got list"):
        as_dataset([["a"], ["x"]])


# ---------------------------------------------------------------------- errors: file, line, expected, got
@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        (
            "d.jsonl",
            '{"text": "a"}\n\n{"text": "b", \n',
            r"d\.jsonl, line 3: expected a JSON object, got malformed JSON",
        ),
        ("d.jsonl", '{"text": "a"}\n["text"]\n', r"line 2: expected a JSON object, got list \['text'\]"),
        (
            "d.jsonl",
            '{"body": "a", "labels": []}\n',
            r"line 1: expected a text field 'text', got a record with the fields \['body', 'labels'\]",
        ),
        ("d.jsonl", '{"text": 7, "labels": []}\n', r"line 1: expected 'text' to be a string, got int 7"),
        ("d.jsonl", '{"text": "  ", "labels": []}\n', r"line 1: expected a non-empty text in 'text', got '  '"),
        (
            "d.jsonl",
            '{"text": "a", "labels": 3}\n',
            r"line 1: expected 'labels' to be a list of strings or a string, got int 3",
        ),
        (
            "d.jsonl",
            '{"text": "a", "labels": ["x", 2]}\n',
            r"line 1: expected 'labels' to be a list of strings, got a list holding int 2",
        ),
        ("d.jsonl", '{"text": "a", "labels": ["x", " "]}\n', r"line 1: expected non-empty label names"),
        (
            "d.jsonl",
            '{"text": "a", "label": ["x"]}\n',
            r"d\.jsonl: expected a labels field 'labels', got records with the fields "
            r"\['label', 'text'\]; name the labels field with --labels-field NAME \(Python: labels_field=NAME\), "
            r"or pass --labels-field '' \(Python: labels_field=None\) to read the texts as unlabelled "
            r"\(for --objective simcse\)$",
        ),
        (
            "d.jsonl",
            '{"text": "a"}\n{"text": "b\n',
            r"d\.jsonl, line 2: expected a JSON object, got malformed JSON "
            r"\(Unterminated string starting at column 10\)",
        ),
        (
            "d.jsonl",
            '{"text": "a\tb"}\n',
            r"d\.jsonl, line 1: expected a JSON object, got malformed JSON "
            r"\(Invalid control character at column 12\)",
        ),
        ("d.jsonl", "\n  \n", r"d\.jsonl: the file holds no records; expected one JSON object per line"),
        (
            "d.csv",
            "text,labels\na,x\nb,x,extra\n",
            r"d\.csv, line 3: expected 2 fields as in the header \['text', 'labels'\], got 3",
        ),
        ("d.csv", 'text,labels\n"a"b,x\n', r"d\.csv, line 2: expected a well-formed CSV row"),
        ("d.csv", "text,labels\n", r"d\.csv: the file holds no records"),
        ("d.csv", "text,text\na,b\n", r"line 1: expected distinct column names, got \['text'\] twice"),
        ("d.csv", 'text,labels\na,"x,,y"\n', r"d\.csv, line 2: expected non-empty label names"),
        ("d.csv", 'text,labels\na,"[1, oops]"\n', r"line 2: expected 'labels' as a list literal"),
        ("d.xlsx", "", r"cannot tell the format from the extension '\.xlsx'"),
    ],
)
def test_errors_name_file_line_expected_and_got(tmp_path, name, content, pattern):
    with pytest.raises(DataError, match=pattern):
        read_dataset(write(tmp_path, name, content))


def test_csv_line_numbers_count_multiline_quoted_rows(tmp_path):
    path = write(tmp_path, "d.csv", 'text,labels\n"two\nlines",x\n"",y\n')
    with pytest.raises(DataError, match=r"line 4: expected a non-empty text"):
        read_dataset(path)


def test_bad_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "d.jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n', "wb")
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: expected UTF-8 text"):
        read_dataset(path, labels_field=None)


def test_labels_file_repeat_and_bad_scores(tmp_path):
    with pytest.raises(DataError, match=r"l\.txt, line 3: expected each label once, got 'a' again \(first on line 1\)"):
        read_labels_file(write(tmp_path, "l.txt", "a\nb\na\n"))
    with pytest.raises(DataError, match=r"line 1: expected a finite number in 'score', got str 'high'"):
        read_pairs(write(tmp_path, "p.jsonl", jsonl({"text1": "a", "text2": "b", "score": "high"})))
