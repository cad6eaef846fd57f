"""``labelcon serve``: the routes in-process (FastAPI's test client), the batcher, limits and
bad input, and the real server process on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from labelcon import Labelcon  # noqa: E402
from labelcon.batching import Batcher  # noqa: E402
from labelcon.config import ServeSettings  # noqa: E402
from labelcon.serve import ENV_SPEC, app_from_environment, create_app  # noqa: E402
from tests.helpers import FAST, make_items  # noqa: E402
from tests.serving import server_process  # noqa: E402

TEXTS = ["song album band concert", "goal team coach", "hotel flight beach and recipe dinner"]


@pytest.fixture(scope="module")
def run_dir(toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "run"
    model = Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], out_dir=out, show_progress=False)
    model.metrics_["test"] = model.evaluate(toy_data["test"])
    model.save(out)
    return out


@pytest.fixture(scope="module")
def model(run_dir) -> Labelcon:
    return Labelcon.load(run_dir)


@pytest.fixture(scope="module")
def client(run_dir) -> TestClient:
    settings = ServeSettings(max_items=64, max_chars=200, max_body_bytes=20_000)
    with TestClient(create_app(run_dir, settings)) as client:
        yield client


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["message"]


def test_health_and_info(client, model) -> None:
    health = client.get("/health")
    assert health.json() == {"status": "ok", "model_version": model.version_}
    assert health.headers["X-Labelcon-Model-Version"] == model.version_
    info = client.get("/info").json()
    assert info["model_version"] == model.version_
    assert info["labels"] == model.classes_ == ["food", "music", "sports", "travel"]
    assert info["embedding_dim"] == model.encoder_.dim
    assert info["encoder"]["type"] == "static"
    assert info["test_metrics"]["macro_f1"] == pytest.approx(model.metrics_["test"]["macro_f1"])
    assert info["limits"]["max_items"] == 64
    assert {"/predict", "/v1/embeddings"} <= set(client.get("/openapi.json").json()["paths"])


def test_predict_equals_predict_with_top_k(client, model) -> None:
    body = client.post("/predict", json={"inputs": TEXTS, "top_k": 2}).json()
    label_sets, ranked = model.predict_with_top_k(TEXTS, 2)
    assert [p["labels"] for p in body["predictions"]] == label_sets
    for prediction, top in zip(body["predictions"], ranked, strict=True):
        assert [s["label"] for s in prediction["scores"]] == [name for name, _ in top]
        np.testing.assert_allclose([s["score"] for s in prediction["scores"]], [v for _, v in top], atol=1e-6)
    one = client.post("/predict", json={"inputs": TEXTS[0]}).json()["predictions"]
    assert len(one) == 1 and one[0]["labels"] == label_sets[0] and len(one[0]["scores"]) == 4  # top_k 5 > 4 labels


def test_predict_raw_scores_are_every_label_in_order(client, model) -> None:
    body = client.post("/predict", json={"inputs": TEXTS, "raw_scores": True}).json()
    scores = model.predict_proba(TEXTS)
    for prediction, row in zip(body["predictions"], scores, strict=True):
        assert [s["label"] for s in prediction["scores"]] == model.classes_
        np.testing.assert_allclose([s["score"] for s in prediction["scores"]], row, atol=1e-6)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_equal_encode(client, model, encoding) -> None:
    body = client.post("/v1/embeddings", json={"input": TEXTS, "model": "x", "encoding_format": encoding}).json()
    assert body["object"] == "list" and body["model"] == "run"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and {d["object"] for d in body["data"]} == {"embedding"}
    if encoding == "base64":
        vectors = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
    else:
        vectors = np.array([d["embedding"] for d in body["data"]])
    np.testing.assert_allclose(vectors, model.encode(TEXTS), atol=1e-4)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_one_string_is_one_embedding(client, model) -> None:
    body = client.post("/v1/embeddings", json={"input": "goal team", "user": "someone"}).json()
    np.testing.assert_allclose(body["data"][0]["embedding"], model.encode(["goal team"])[0], atol=1e-4)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"inputs": []}, "empty list"),
        ({"inputs": ["ok", ""]}, "item 1 is empty"),
        ({"inputs": "   "}, "item 0 is empty"),
        ({"inputs": 5}, "got a whole number"),
        ({"inputs": ["ok", None]}, "item 1: expected a string, got null"),
        ({"inputs": [["token", "list"]]}, "item 0: expected a string, got a list"),
        ({"inputs": ["ok"], "top_k": "3"}, "top_k"),
        ({"inputs": ["ok"], "top_k": 0}, "top_k"),
        ({"inputs": ["ok"], "raw_scores": "yes"}, "raw_scores"),
        ({"inputs": ["ok"], "topk": 3}, "topk"),
        ({"text": "ok"}, "inputs"),
        (["ok"], "expected a JSON object"),
    ],
)
def test_bad_predict_bodies_are_422_with_a_message(client, body, expected) -> None:
    assert expected in _error(client.post("/predict", json=body), 422)


def test_bad_embedding_bodies_are_422_with_a_message(client) -> None:
    wrong_format = client.post("/v1/embeddings", json={"input": "a", "encoding_format": "int8"})
    assert "encoding_format" in _error(wrong_format, 422)
    assert "item 0" in _error(client.post("/v1/embeddings", json={"input": [[1, 2, 3]]}), 422)


def test_malformed_json_and_wrong_content_type(client) -> None:
    headers = {"Content-Type": "application/json"}
    assert "malformed JSON" in _error(client.post("/predict", content=b'{"inputs": [', headers=headers), 422)
    assert "JSON object" in _error(client.post("/predict", content=b""), 422)
    assert "Content-Type" in _error(
        client.post("/predict", content=b'{"inputs": "a"}', headers={"Content-Type": "text/plain"}), 422
    )


def test_limits_are_413_naming_the_flag(client) -> None:
    many = {"inputs": ["a"] * 100}
    response = client.post("/predict", json=many)
    assert "100 texts" in _error(response, 413) and response.json()["error"]["flag"] == "--max-items"
    assert "--max-chars" in _error(client.post("/v1/embeddings", json={"input": ["ok", "x" * 201]}), 413)
    assert "--max-body-bytes" in _error(client.post("/predict", json={"inputs": ["word " * 5000]}), 413)


def test_100000_texts_are_refused_under_the_default_limits(run_dir) -> None:
    with TestClient(create_app(run_dir)) as default:
        assert "100000 texts" in _error(default.post("/predict", json={"inputs": ["a"] * 100_000}), 413)


def test_a_request_past_the_timeout_is_503_naming_the_flag(run_dir) -> None:
    with TestClient(create_app(run_dir, ServeSettings(timeout=1e-4))) as hurried:
        response = hurried.post("/predict", json={"inputs": TEXTS})
        assert "--timeout" in _error(response, 503) and response.json()["error"]["type"] == "timeout"


def test_a_run_without_labels_serves_embeddings_only(tmp_path) -> None:
    texts = [item["text"] for item in make_items(80, 3)]
    Labelcon(**{**FAST, "objective": "simcse", "epochs": 1}).fit(
        (texts, [[] for _ in texts]), out_dir=tmp_path / "m", show_progress=False
    )
    with TestClient(create_app(tmp_path / "m")) as unlabelled:
        assert unlabelled.get("/info").json()["labels"] == []
        assert unlabelled.post("/v1/embeddings", json={"input": texts[:2]}).status_code == 200
        assert "the routes:" in _error(unlabelled.post("/predict", json={"inputs": texts[:2]}), 404)


def test_unknown_route_and_method(client) -> None:
    assert "POST /predict" in _error(client.get("/nowhere"), 404)
    assert _error(client.get("/predict"), 405)


def test_metrics_count_requests_and_batches(client) -> None:
    client.get("/health")
    client.post("/predict", json={"inputs": []})
    text = client.get("/metrics").text
    assert 'labelcon_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'labelcon_errors_total{route="/predict",status="422"}' in text
    assert "labelcon_request_seconds_bucket" in text and "labelcon_batch_texts_count" in text


def test_batcher_gathers_concurrent_jobs() -> None:
    batches = []

    def run(jobs):
        batches.append(len(jobs))
        time.sleep(0.05)
        return [job * 2 for job in jobs]

    async def main():
        batcher = Batcher(run, max_size=4, max_wait=0.01)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i, size=1) for i in range(9)))
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [i * 2 for i in range(9)]
    assert batches == [4, 4, 1]


def test_the_command_refuses_a_directory_without_a_model_and_bad_limits(run_dir, tmp_path) -> None:
    from click.testing import CliRunner

    from labelcon.cli import main

    result = CliRunner().invoke(main, ["serve", str(tmp_path)])
    assert result.exit_code == 2 and "not a labelcon model directory" in result.output
    result = CliRunner().invoke(main, ["serve", str(run_dir), "--max-items", "0"])
    assert result.exit_code == 2 and "--max-items: must be >= 1, got 0" in result.output


def test_sigterm_finishes_the_request_in_flight_and_exits_0(run_dir, model) -> None:
    refused: list[bool] = []
    with server_process(run_dir) as (proc, url):
        assert (
            httpx.post(f"{url}/predict", json={"inputs": TEXTS}).json()["predictions"][1]["labels"]
            == model.predict(TEXTS)[1]
        )

        def body() -> Iterator[bytes]:  # a request whose body is still coming when SIGTERM arrives
            yield b'{"inputs": ["song album'
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            for _ in range(50):  # soon the server stops taking connections
                try:
                    httpx.get(f"{url}/health", timeout=1)
                except httpx.TransportError:
                    refused.append(True)
                    break
                time.sleep(0.1)
            yield b' band concert"]}'

        response = httpx.post(
            f"{url}/predict", content=body(), headers={"Content-Type": "application/json"}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert "music" in response.json()["predictions"][0]["labels"]
        assert refused == [True], "the server still took new connections after SIGTERM"
        assert proc.wait(timeout=30) == 0, proc.stderr.read()


def test_each_workers_process_builds_its_app_from_the_environment(run_dir, monkeypatch) -> None:
    spec = {"run_dir": str(run_dir), "settings": {**ServeSettings().model_dump(), "max_items": 3}}
    monkeypatch.setenv(ENV_SPEC, json.dumps(spec))
    with TestClient(app_from_environment()) as worker:
        assert worker.get("/info").json()["limits"]["max_items"] == 3
        assert _error(worker.post("/predict", json={"inputs": ["a"] * 4}), 413)


def test_search_route_answers_when_the_run_has_an_index(run_dir, toy_data, tmp_path) -> None:
    indexed = tmp_path / "indexed"
    shutil.copytree(run_dir, indexed)
    model = Labelcon.load(indexed)
    model.index(toy_data["train"])
    model.save(indexed)
    expected = model.search(["song album band"], 3, labels=["music"])
    with TestClient(create_app(indexed)) as client:
        answer = client.post("/search", json={"inputs": "song album band", "k": 3, "labels": ["music"]})
        assert answer.status_code == 200, answer.text
        hits = answer.json()["results"][0]["hits"]
        assert [h["id"] for h in hits] == [h.id for h in expected[0]]
        assert all("music" in h["labels"] for h in hits) and answer.json()["results"][0]["query"] == "song album band"
        first = hits[0]["id"]
        by_example = client.post("/search", json={"like": [first], "k": 2}).json()["results"][0]
        assert by_example["like"] == first and first not in [h["id"] for h in by_example["hits"]]
        assert client.post("/search", json={"k": 2}).status_code == 422
        assert client.post("/search", json={"inputs": [], "like": []}).status_code == 422
    with TestClient(create_app(run_dir)) as plain:  # no index: no route
        assert plain.post("/search", json={"inputs": "x"}).status_code == 404
