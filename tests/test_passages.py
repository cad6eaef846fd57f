"""Search over passages: an encoder's windows embedded in one pass, the index's window rows,
ranking by the best window with its character span, storage across formats, the CLI and
the server's /search and /predict on texts longer than the window."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from click.testing import CliRunner

from labelcon import Labelcon
from labelcon.cli import main
from labelcon.io import read_json, write_json
from labelcon.search import INDEX_DIR, Passage, SearchIndex, read_corpus
from tests.helpers import FAST, make_items, write_jsonl
from tests.test_windows import LONG, SHORT, minilm, windows  # noqa: F401 (fixtures)

#: The query's evidence, one sentence late in a long corpus item.
EVIDENCE = "The lighthouse keeper painted the copper telescope violet before the winter storm."
#: Settings of a quick windowed model: windows of 32 tokens, up to 64 per text, one epoch.
WINDOWED = {
    "encoder": "minilm",
    "windows": "mean",
    "max_length": 32,
    "encode_max_length": 32,
    "max_windows": 64,
    "window_stride": 8,
    "epochs": 1,
    "max_time_minutes": 0,
    "batch_size": 16,
    "eval_max_train": 100,
    "min_steps": 0,
}


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A saved model that reads long texts as windows of 32 tokens."""
    items = make_items(32, 0)
    out = tmp_path_factory.mktemp("passages") / "run"
    model = Labelcon(**WINDOWED).fit(([i["text"] for i in items], [i["labels"] for i in items]), show_progress=False)
    model.save(out)
    return out


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Six long items (about 430 words each, the evidence in the fifth sixth of item long-3)
    and ten short ones, with ids and labels."""
    filler = [item["text"] + "." for item in make_items(360, 5)]
    out = []
    for d in range(6):
        sentences = filler[d * 60 : (d + 1) * 60]
        if d == 3:
            sentences = [*sentences[:50], EVIDENCE, *sentences[50:]]
        out.append({"id": f"long-{d}", "text": " ".join(sentences), "labels": ["long"]})
    out += [{"id": f"short-{i}", **item} for i, item in enumerate(make_items(10, 6))]
    return out


@pytest.fixture(scope="module")
def corpus(records, tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", records)


@pytest.fixture(scope="module")
def indexed(run, corpus, tmp_path_factory) -> Path:
    """The run with its corpus indexed and saved."""
    out = shutil.copytree(run, tmp_path_factory.mktemp("indexed") / "run")
    Labelcon.load(out).index(corpus, id_field="id").save(out)
    return out


def test_encode_windows_gives_encodes_vectors_and_every_window_in_one_pass(minilm, windows):  # noqa: F811
    texts = [SHORT[0], LONG, LONG[: len(LONG) // 2], SHORT[2]]
    for rule in ("mean", "max"):
        enc = windows(rule, max_windows=50)
        for batch_size in (None, 2):
            out = enc.encode_windows(texts, batch_size)
            assert np.array_equal(out.items, enc.encode(texts, batch_size))  # bit for bit
        assert out.spans == enc.window_spans(texts)  # grouped by owner in text order, by rank
        assert len(out.windows) == len(out.spans) and np.allclose(np.linalg.norm(out.windows, axis=1), 1, atol=1e-5)
        one = [i for i, span in enumerate(out.spans) if span.owner == 0]
        assert len(one) == 1 and np.allclose(out.windows[one[0]], out.items[0], atol=1e-6)  # a short text is its window
        tail = out.spans[[s.owner for s in out.spans].index(1) + 5]
        alone = enc.encode([LONG[tail.start : tail.end]])[0]
        assert float(out.windows[out.spans.index(tail)] @ alone) > 0.99  # a window's vector is its text's
    with pytest.raises(ValueError, match=r"reads only the first window.*--windows"):
        windows("first").encode_windows(texts)


def test_passage_hits_name_the_window_holding_the_evidence(run, records) -> None:
    model = Labelcon.load(run).index([r["text"] for r in records], [r["id"] for r in records])
    index = model.index_
    assert index.has_passages and index.meta["format"] == 2
    spans = index.window_spans
    assert set(spans[:, 0].tolist()) == set(range(6))  # the long items' windows; a short item is its one window
    assert index.meta["passages"]["rows"] == len(spans) == len(index.window_embeddings)
    hits = model.search([EVIDENCE], k=4, passages=True)[0]
    best = hits[0]
    assert best.id == "long-3" and best.passage == Passage(best.passage.start, best.passage.end, best.score)
    evidence = best.text.index(EVIDENCE)
    assert best.text.index(EVIDENCE) > len(best.text) * 0.6  # late: far past the first window
    assert best.passage.start <= evidence + 10 and best.passage.end >= evidence + len(EVIDENCE) - 10
    assert "lighthouse keeper" in best.text[best.passage.start : best.passage.end]
    # the ranking is by each item's best window: against every window, by brute force
    query = model.encode([EVIDENCE])[0]
    vectors, passage_spans = index._passages
    by_item = {}
    for (item, start, end), sim in zip(passage_spans.tolist(), vectors @ query, strict=True):
        by_item[item] = max(by_item.get(item, (-2.0, 0, 0)), (float(sim), start, end))
    expected = sorted(by_item.items(), key=lambda kv: -kv[1][0])[:4]
    assert [index.corpus.ids[i] for i, _ in expected] == [hit.id for hit in hits]
    for (_, (sim, start, end)), hit in zip(expected, hits, strict=True):
        assert hit.passage[:2] == (start, end) and hit.score == pytest.approx(sim, abs=1e-5)
    short = next(hit for hit in model.search(["goal team coach"], k=16, passages=True)[0] if hit.id == "short-0")
    assert short.passage[:2] == (0, len(short.text))  # an item read in one window: the whole text


def test_default_ranking_is_the_pooled_vector_as_before(run, records) -> None:
    model = Labelcon.load(run).index([r["text"] for r in records])
    plain = SearchIndex.build(read_corpus([r["text"] for r in records]), model.encode)
    assert not plain.has_passages and plain.meta["format"] == 1
    assert np.array_equal(model.index_.embeddings, plain.embeddings)
    queries = model.encode([EVIDENCE, "song album band concert"])
    assert model.index_.search(queries, k=8) == plain.search(queries, k=8)  # ids and scores, bit for bit
    assert all(hit.passage is None for hit in model.search([EVIDENCE], k=3)[0])
    with pytest.raises(ValueError, match=r"holds no passages.*--windows"):
        plain.search(queries, k=3, passages=True)


def test_passages_with_label_filter_and_search_by_example(run, corpus) -> None:
    model = Labelcon.load(run).index(corpus, id_field="id")
    kept = model.search([EVIDENCE], k=20, labels=["long"], passages=True)[0]
    assert sorted(hit.id for hit in kept) == [f"long-{d}" for d in range(6)]
    assert kept[0].id == "long-3"
    like = model.search(like=["long-3"], k=3, passages=True)[0]
    assert len(like) == 3 and "long-3" not in [hit.id for hit in like]
    assert all(hit.passage is not None for hit in like)


def test_a_passage_index_survives_save_and_load(run, records, tmp_path) -> None:
    out = shutil.copytree(run, tmp_path / "run")
    model = Labelcon.load(out).index([r["text"] for r in records], [r["id"] for r in records])
    before = model.search([EVIDENCE, "hotel flight beach"], k=5, passages=True)
    model.save(out)
    files = {path.name for path in (out / INDEX_DIR).iterdir()}
    assert {"windows.npy", "window_spans.npy", "embeddings.npy", "index.json"} <= files
    loaded = Labelcon.load(out)
    assert loaded.index_.meta["format"] == 2 and loaded.index_.has_passages
    assert loaded.search([EVIDENCE, "hotel flight beach"], k=5, passages=True) == before
    assert np.array_equal(loaded.index_.window_spans, model.index_.window_spans)


def test_hnsw_passage_search_finds_the_evidence_as_the_exact_search_does(run, corpus, tmp_path) -> None:
    """``exact=False`` builds faiss HNSW graphs over the items and over the passages, at any
    size; their passage hits agree with the exact search's, and survive save and load."""
    out = shutil.copytree(run, tmp_path / "run")
    model = Labelcon.load(out)
    queries = [EVIDENCE, "hotel flight beach", "song album band concert"]
    exact = model.index(corpus, id_field="id", exact=True).search(queries, k=5, passages=True)
    assert model.index_.meta["backend"] == model.index_.meta["passages"]["backend"] == "exact"
    hnsw = model.index(corpus, id_field="id", exact=False).search(queries, k=5, passages=True)
    assert model.index_.meta["backend"] == model.index_.meta["passages"]["backend"] == "hnsw"
    best = hnsw[0][0]
    assert best.id == "long-3" and "lighthouse keeper" in best.text[best.passage.start : best.passage.end]
    evidence = best.text.index(EVIDENCE)
    assert best.passage.start <= evidence + 10 and best.passage.end >= evidence + len(EVIDENCE) - 10
    for by_graph, by_products in zip(hnsw, exact, strict=True):
        assert [(h.id, h.passage[:2]) for h in by_graph] == [(h.id, h.passage[:2]) for h in by_products]
        np.testing.assert_allclose([h.score for h in by_graph], [h.score for h in by_products], atol=1e-5)
        assert all(h.score == h.passage.score for h in by_graph)
    model.save(out)
    assert {"hnsw.npy", "passages_hnsw.npy"} <= {path.name for path in (out / INDEX_DIR).iterdir()}
    loaded = Labelcon.load(out)
    assert loaded.index_.meta["passages"]["backend"] == "hnsw"
    assert loaded.search(queries, k=5, passages=True) == hnsw
    # a label filter searches the passages of the items holding the labels exactly; by example, as well
    assert loaded.search([EVIDENCE], k=2, labels=["long"], passages=True)[0][0].id == "long-3"
    like = loaded.search(like=["long-3"], k=3, passages=True)[0]
    assert len(like) == 3 and "long-3" not in [hit.id for hit in like]


def test_an_index_without_window_rows_still_loads_and_searches(toy_data, corpus, tmp_path) -> None:
    """An index as earlier versions wrote it (format 1, no window files) loads and searches;
    passage search asks for the corpus to be indexed again; an unknown format is refused."""
    out = tmp_path / "run"
    model = Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    model.index(corpus, id_field="id").save(out)
    meta = read_json(out / INDEX_DIR / "index.json")
    assert meta["format"] == 1 and "passages" not in meta
    assert sorted(path.name for path in (out / INDEX_DIR).iterdir()) == ["embeddings.npy", "index.json", "items.jsonl"]
    loaded = Labelcon.load(out)
    assert loaded.search(["song album band"], k=5) == model.search(["song album band"], k=5)
    with pytest.raises(ValueError, match="holds no passages"):
        loaded.search(["song album band"], passages=True)
    write_json(out / INDEX_DIR / "index.json", {**meta, "format": 3})
    with pytest.raises(ValueError, match="expected a search index of format 1 or 2, got format 3"):
        Labelcon.load(out)


def test_cli_index_then_search_passages(run, corpus, tmp_path) -> None:
    out = shutil.copytree(run, tmp_path / "run")
    runner = CliRunner()
    indexed = runner.invoke(main, ["index", str(out), "--corpus", str(corpus), "--id-field", "id"])
    assert indexed.exit_code == 0, indexed.output
    assert "windows of long items as passages (search --passages)" in indexed.output
    found = runner.invoke(main, ["search", str(out), EVIDENCE, "--k", "2", "--passages"])
    assert found.exit_code == 0, found.output
    record = json.loads(found.output.splitlines()[0])
    best = record["hits"][0]
    assert record["query"] == EVIDENCE and best["id"] == "long-3"
    passage = best["passage"]
    assert passage["text"] == best["text"][passage["start"] : passage["end"]] and "lighthouse keeper" in passage["text"]
    assert passage["score"] == best["score"]
    plain = runner.invoke(main, ["search", str(out), EVIDENCE, "--k", "2"])
    assert plain.exit_code == 0 and all("passage" not in hit for hit in json.loads(plain.output)["hits"])


def test_server_answers_long_texts_as_the_python_api(indexed, records) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from labelcon.config import ServeSettings
    from labelcon.serve import create_app

    model = Labelcon.load(indexed)
    long_text = records[3]["text"] + " " + records[4]["text"]
    assert len(long_text.split()) > 600
    expected_sets, expected_top = model.predict_with_top_k([long_text, "goal team coach"], 3)
    expected_hits = model.search([EVIDENCE, long_text], k=3, passages=True)
    # a text as long as long_text is allowed, two of them in one body, not five
    settings = ServeSettings(max_chars=len(long_text), max_body_bytes=4 * len(long_text))
    with TestClient(create_app(indexed, settings)) as client:
        answer = client.post("/predict", json={"inputs": [long_text, "goal team coach"], "top_k": 3})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["labels"] for p in predictions] == expected_sets
        for prediction, top in zip(predictions, expected_top, strict=True):
            assert [s["label"] for s in prediction["scores"]] == [name for name, _ in top]
            np.testing.assert_allclose([s["score"] for s in prediction["scores"]], [v for _, v in top], atol=1e-6)
        answer = client.post("/search", json={"inputs": [EVIDENCE, long_text], "k": 3, "passages": True})
        assert answer.status_code == 200, answer.text
        for result, hits in zip(answer.json()["results"], expected_hits, strict=True):
            assert [h["id"] for h in result["hits"]] == [hit.id for hit in hits]
            for got, hit in zip(result["hits"], hits, strict=True):
                assert (got["passage"]["start"], got["passage"]["end"]) == hit.passage[:2]
                assert got["passage"]["text"] == hit.text[hit.passage.start : hit.passage.end]
                assert got["score"] == pytest.approx(hit.score, abs=1e-6)
        assert "lighthouse keeper" in answer.json()["results"][0]["hits"][0]["passage"]["text"]
        plain = client.post("/search", json={"inputs": [EVIDENCE], "k": 3}).json()["results"][0]["hits"]
        assert [h["id"] for h in plain] == [hit.id for hit in model.search([EVIDENCE], k=3)[0]]
        assert all("passage" not in h for h in plain)  # answers without passages are as before
        too_big = {"inputs": [long_text] * 5}  # each text within --max-chars, the body past --max-body-bytes
        for route in ("/predict", "/search"):
            response = client.post(route, json=too_big)
            assert response.status_code == 413 and response.json()["error"]["flag"] == "--max-body-bytes"
        response = client.post("/search", json={"inputs": [long_text + " more"], "passages": True})
        assert response.status_code == 413 and response.json()["error"]["flag"] == "--max-chars"


def test_server_refuses_passages_of_an_index_without_them(toy_data, corpus, tmp_path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from labelcon.serve import create_app

    out = tmp_path / "run"
    Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], show_progress=False).index(corpus, id_field="id").save(out)
    with TestClient(create_app(out)) as client:
        response = client.post("/search", json={"inputs": ["song album"], "passages": True})
        assert response.status_code == 409 and "without passages" in response.json()["error"]["message"]
