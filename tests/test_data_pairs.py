"""Reading pairs, tuples and scored pairs: formats, column names and errors that say where and what."""

from __future__ import annotations

import pytest

from labelcon.config import Config, ConfigError
from labelcon.data import DataError
from labelcon.data.pairs import as_pair_records, read_pair_records

from .test_data_records import jsonl, write


def test_tuples_and_scored_pairs_from_jsonl_csv_and_parquet(tmp_path):
    tuples = read_pair_records(
        write(
            tmp_path,
            "nli.jsonl",
            jsonl({"q": "a", "p": "b", "n1": "c", "n2": "d"}, {"q": "e", "p": "f", "n1": "g", "n2": "h"}),
        ),
        fields="q,p,n1,n2",
    )
    assert tuples.kind == "tuples" and tuples.columns == [["a", "e"], ["b", "f"], ["c", "g"], ["d", "h"]]
    assert tuples.where == ["line 1", "line 2"] and tuples.texts == list("aebfcgdh")
    scored = read_pair_records(
        write(tmp_path, "sts.csv", 's1,s2,gold\n"x, y",z,4.5\nu,v,0\n'), fields=("s1", "s2"), score_field="gold"
    )
    assert scored.kind == "scored" and scored.columns == [["x, y", "u"], ["z", "v"]] and scored.scores == [4.5, 0.0]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"anchor": ["a", "b"], "positive": ["c", "d"]}), tmp_path / "p.parquet")
    assert read_pair_records(tmp_path / "p.parquet").columns == [["a", "b"], ["c", "d"]]


def test_hugging_face_dataset_columns():
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0.5, 1.0]})
    pairs = as_pair_records(data, fields="sentence1,sentence2", score_field="label")
    assert pairs.columns == [["a", "b"], ["c", "d"]] and pairs.scores == [0.5, 1.0]
    with pytest.raises(DataError, match=r"no column 'anchor' .* --pair-fields"):
        as_pair_records(data)
    with pytest.raises(DataError, match=r"no column 'score' .* --pair-score-field"):
        as_pair_records(data, fields="sentence1,sentence2", score_field="score")


@pytest.mark.parametrize(
    "line2, fields, score_field, message",
    [
        (
            {"text1": "a", "score": 1},
            "text1,text2",
            "score",
            r"p.jsonl, line 2: expected a text column 'text2', got a record with the fields "
            r"\['score', 'text1'\]; name the text columns with --pair-fields",
        ),
        (
            {"text1": "a", "text2": "b"},
            "text1,text2",
            "score",
            r"p.jsonl, line 2: expected a score column 'score', .*--pair-score-field NAME",
        ),
        (
            {"text1": "a", "text2": "b", "score": "high"},
            "text1,text2",
            "score",
            r"p.jsonl, line 2: expected a finite number in 'score', got str 'high'",
        ),
        (
            {"text1": "a", "text2": 7, "score": 1},
            "text1,text2",
            "score",
            r"p.jsonl, line 2: expected 'text2' to be a string, got int 7",
        ),
        ({"text1": " ", "text2": "b"}, "text1,text2", None, r"p.jsonl, line 2: expected a non-empty text in 'text1'"),
    ],
)
def test_bad_records_name_the_file_the_line_and_the_setting(tmp_path, line2, fields, score_field, message):
    path = write(tmp_path, "p.jsonl", jsonl({"text1": "a", "text2": "b", "score": 1}, line2))
    with pytest.raises(DataError, match=message):
        read_pair_records(path, fields=fields, score_field=score_field)


def test_bad_column_settings_are_refused_by_the_config():
    with pytest.raises(ConfigError, match=r"expected at least two text columns .* --pair-fields"):
        Config.build({"pair_fields": "anchor"})
    with pytest.raises(ConfigError, match="scored pairs have two text columns"):
        Config.build({"pair_fields": "a,b,c", "pair_score_field": "s"})
    with pytest.raises(ConfigError, match=r"pair objective 'scored' takes \['scale'\]"):
        Config.build({"pair_fields": "a,b", "pair_score_field": "s", "pair_objective_params": {"temperature": 0.1}})
