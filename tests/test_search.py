"""Similar-item search: hits, label filters, search by example, storage, rebuilding, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from labelcon import Labelcon
from labelcon.cli import main
from labelcon.data import DataError
from labelcon.search import INDEX_DIR, Hit, fresh_index, read_corpus
from tests.helpers import FAST, make_items, write_jsonl


@pytest.fixture(scope="module")
def run(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], out_dir=out, show_progress=False)
    return out


@pytest.fixture()
def run_copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    items = [{"id": f"doc-{i}", **item} for i, item in enumerate(make_items(120, 5))]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", items)


def test_hits_are_the_nearest_items_best_first(run, corpus) -> None:
    model = Labelcon.load(run).index(corpus, id_field="id")
    records = [json.loads(line) for line in corpus.read_text().splitlines()]
    results = model.search([records[0]["text"], "song album band concert"], k=5)
    assert [len(hits) for hits in results] == [5, 5]
    first = results[0][0]
    assert isinstance(first, Hit) and first.id == "doc-0" and first.score == pytest.approx(1.0, abs=1e-5)
    assert first.labels == records[0]["labels"]
    for hits in results:
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all("music" in hit.labels for hit in results[1])


def test_neighbours_share_labels_with_the_query(run, corpus, toy_data) -> None:
    model = Labelcon.load(run).index(corpus)
    queries = [json.loads(line) for line in toy_data["test"].read_text().splitlines()]
    results = model.search([q["text"] for q in queries], k=5)
    shared = [
        bool(set(q["labels"]) & set(hit.labels)) for q, hits in zip(queries, results, strict=True) for hit in hits
    ]
    assert np.mean(shared) > 0.8


def test_label_filter_keeps_items_holding_any_label(run, corpus) -> None:
    model = Labelcon.load(run).index(corpus)
    hits = model.search(["goal team match"], k=10, labels=["food", "travel"])[0]
    assert len(hits) == 10 and all({"food", "travel"} & set(hit.labels) for hit in hits)
    with pytest.raises(ValueError, match="no indexed item holds any of the labels.*--label"):
        model.search(["goal"], labels=["weather"])


def test_search_by_example_leaves_the_item_out(run, corpus) -> None:
    model = Labelcon.load(run).index(corpus, id_field="id")
    by_text = model.search([model.index_.corpus.texts[3]], k=4)[0]
    by_id = model.search(like=["doc-3"], k=3)[0]
    assert "doc-3" not in [hit.id for hit in by_id]
    assert [hit.id for hit in by_id] == [hit.id for hit in by_text if hit.id != "doc-3"][:3]
    with pytest.raises(ValueError, match="not in the index.*--like"):
        model.search(like=["doc-999"])


def test_corpus_from_python_texts_ids_and_pairs(run) -> None:
    model = Labelcon.load(run)
    model.index(["hotel beach flight", "bake dinner recipe"], ids=["h", "b"])
    assert model.search(["spicy dinner"], k=1)[0][0].id == "b"
    model.index((["hotel beach", "goal team"], [["travel"], "sports"]))
    assert model.search(["coach league"], k=1)[0][0][:3] == (1, "goal team", ["sports"])
    with pytest.raises(ValueError, match="one id per item"):
        model.index(["a text"], ids=["x", "y"])
    with pytest.raises(DataError, match="repeats the id"):
        model.index(["one", "two"], ids=["x", "x"])


def test_approximate_index_survives_save_and_load(run_copy, corpus) -> None:
    model = Labelcon.load(run_copy).index(corpus, id_field="id", exact=False)
    assert model.index_.meta["backend"] == "hnsw"
    before = model.search(["flight hotel passport"], k=5)
    model.save(run_copy)
    assert (run_copy / INDEX_DIR / "hnsw.npy").is_file()
    saved = json.loads((run_copy / INDEX_DIR / "index.json").read_text())
    assert saved["model"] == "model.2" and saved["items"] == 120 and saved["source"]["path"] == str(corpus.resolve())
    loaded = Labelcon.load(run_copy)
    assert fresh_index(loaded)[1] is None
    after = loaded.search(["flight hotel passport"], k=5)
    assert [h.id for h in after[0]] == [h.id for h in before[0]]
    np.testing.assert_allclose([h.score for h in after[0]], [h.score for h in before[0]], atol=1e-5)


def test_index_is_rebuilt_when_the_corpus_file_changes(run_copy, tmp_path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "hotel beach flight", "labels": ["travel"]}])
    Labelcon.load(run_copy).index(path).save(run_copy)
    write_jsonl(
        path, [{"text": "hotel beach flight", "labels": ["travel"]}, {"text": "bake dinner", "labels": ["food"]}]
    )
    result = CliRunner().invoke(main, ["search", str(run_copy), "spicy dinner recipe", "--k", "1"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the search index: the corpus file" in result.output
    assert json.loads(result.output.splitlines()[-1])["hits"][0]["text"] == "bake dinner"
    assert json.loads((run_copy / INDEX_DIR / "index.json").read_text())["items"] == 2
    touched = Labelcon.load(run_copy)
    path.write_text(path.read_text())  # a new modification time, the same bytes
    assert fresh_index(touched)[1] is None


def test_index_is_rebuilt_for_another_model(run_copy, corpus) -> None:
    Labelcon.load(run_copy).index(corpus).save(run_copy)
    model = Labelcon.load(run_copy)
    model.encoder_.embedding.weight.data.normal_()
    index, reason = fresh_index(model)
    assert reason == "the model is not the one that indexed the corpus"
    np.testing.assert_allclose(index.embeddings, model.encode(index.corpus.texts), atol=1e-6)


def test_cli_index_and_search(run_copy, corpus, tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(run_copy), "--corpus", str(corpus), "--id-field", "id"])
    assert result.exit_code == 0, result.output
    assert "indexed 120 items (120 labelled)" in result.output and "exact search" in result.output
    queries = write_jsonl(tmp_path / "q.jsonl", [{"text": "song album"}, {"text": "goal team"}])
    result = runner.invoke(
        main,
        [
            "search",
            str(run_copy),
            "hotel beach",
            "--input",
            str(queries),
            "--k",
            "3",
            "--label",
            "music",
            "--label",
            "sports",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["query"] for r in records] == ["hotel beach", "song album", "goal team"]
    for record in records:
        assert len(record["hits"]) == 3
        assert all(set(hit) == {"id", "text", "labels", "score"} for hit in record["hits"])
        assert all({"music", "sports"} & set(hit["labels"]) for hit in record["hits"])
    result = runner.invoke(main, ["search", str(run_copy), "--like", "doc-7", "--k", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["like"] == "doc-7" and "doc-7" not in [hit["id"] for hit in record["hits"]]


def test_cli_errors_name_the_flag_or_file(run_copy, tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["search", str(run_copy), "anything"])
    assert result.exit_code == 2 and "no search index" in result.output and "labelcon index" in result.output
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": 1, "text": "a"}, {"text": "b"}])
    result = runner.invoke(main, ["index", str(run_copy), "--corpus", str(bad), "--id-field", "id"])
    assert result.exit_code == 2 and "bad.jsonl, line 2" in result.output and "--id-field" in result.output
    twice = write_jsonl(tmp_path / "twice.jsonl", [{"id": 1, "text": "a"}, {"id": "1", "text": "b"}])
    result = runner.invoke(main, ["index", str(run_copy), "--corpus", str(twice), "--id-field", "id"])
    assert result.exit_code == 2 and "twice.jsonl, line 2" in result.output and "line 1" in result.output
    result = runner.invoke(main, ["index", str(run_copy), "--corpus", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "--corpus" in result.output
    assert runner.invoke(main, ["index", str(run_copy), "--corpus", str(twice), "-q"]).exit_code == 0
    result = runner.invoke(main, ["search", str(run_copy), "--like", "nope"])
    assert result.exit_code == 2 and "--like" in result.output


def test_read_corpus_of_a_text_file(tmp_path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("first line\n\nsecond line\n")
    corpus = read_corpus(path)
    assert corpus.ids == [0, 1] and corpus.texts == ["first line", "second line"] and corpus.labels == [(), ()]
    assert corpus.source["sha256"] and corpus.source["read"]["id_field"] is None
