"""API keys of ``labelcon serve``: where they come from, which routes ask for one, the 401
answers, the constant-time comparison, and that a key never reaches a log line."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from labelcon import Labelcon  # noqa: E402
from labelcon.serve import ENV_KEY, ApiKeyError, ApiKeys, create_app, read_api_keys  # noqa: E402
from labelcon.serve import keys as keys_module  # noqa: E402
from labelcon.serve.keys import is_loopback  # noqa: E402
from tests.helpers import FAST  # noqa: E402
from tests.serving import server_process  # noqa: E402

KEY = "k3y-Zq8vX2mN4pL7wR1t"
TEXTS = ["song album band concert", "goal team coach"]


@pytest.fixture(scope="module")
def run_dir(toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("keys") / "run"
    Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], out_dir=out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def client(run_dir) -> TestClient:
    with TestClient(create_app(run_dir, api_keys=ApiKeys([KEY, "second-key"]))) as client:
        yield client


def _unauthorized(response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["type"] == "unauthorized"
    return error["message"]


def test_keys_come_from_the_environment_and_the_file(tmp_path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# team A\nfirst-key\n\n  second-key  \n", encoding="utf-8")
    keys = read_api_keys(key_file, environ={ENV_KEY: "env-key"})
    assert len(keys) == 3 and repr(keys) == "ApiKeys(3 keys)"
    assert all(keys.accepts(f"Bearer {k}") for k in ("env-key", "first-key", "second-key"))
    assert keys.accepts("bearer first-key") and not keys.accepts("Basic first-key") and not keys.accepts("first-key")
    assert not read_api_keys(None, environ={}) and not keys.accepts("Bearer # team A")


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "cannot read the key file"),
        ("# only a comment\n\n", "got no key (--api-key-file)"),
        ("good-key\nsecret with-space\n", "line 2: expected one key per line, got a line with whitespace"),
    ],
)
def test_a_bad_key_file_is_named_with_its_line_never_its_keys(tmp_path, content, expected) -> None:
    key_file = tmp_path / "keys.txt"
    if content is not None:
        key_file.write_text(content, encoding="utf-8")
    with pytest.raises(ApiKeyError) as error:
        read_api_keys(key_file, environ={})
    assert str(error.value).startswith(str(key_file)) and expected in str(error.value)
    assert "good-key" not in str(error.value) and "secret" not in str(error.value)


def test_an_empty_environment_key_is_refused() -> None:
    with pytest.raises(ApiKeyError, match=f"\\${ENV_KEY} is set but holds no key"):
        read_api_keys(None, environ={ENV_KEY: "  "})


def test_every_key_is_compared_every_time(monkeypatch) -> None:
    keys, calls = ApiKeys(["a-key", "b-key", "c-key"]), []
    compare = keys_module.hmac.compare_digest
    monkeypatch.setattr(keys_module.hmac, "compare_digest", lambda x, y: calls.append(1) or compare(x, y))
    for header in ("Bearer a-key", "Bearer c-key", "Bearer wrong", None):
        calls.clear()
        keys.accepts(header)
        assert len(calls) == 3, header


def test_every_route_but_health_asks_for_a_key(client, run_dir) -> None:
    assert client.get("/health").status_code == 200
    assert "this server asks for an API key" in _unauthorized(client.post("/v1/embeddings", json={"input": TEXTS}))
    wrong = client.post("/v1/embeddings", json={"input": TEXTS}, headers={"Authorization": "Bearer nope"})
    assert "the API key is not accepted" in _unauthorized(wrong)
    for method, route in [
        ("GET", "/info"),
        ("GET", "/metrics"),
        ("POST", "/predict"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/no-such-route"),
    ]:
        _unauthorized(client.request(method, route, json={"inputs": TEXTS}))
    answer = client.post("/v1/embeddings", json={"input": TEXTS}, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200
    vectors = np.array([row["embedding"] for row in answer.json()["data"]])
    np.testing.assert_allclose(vectors, Labelcon.load(run_dir).encode(TEXTS), atol=1e-6)
    assert client.post("/predict", json={"inputs": TEXTS}, headers={"Authorization": "Bearer second-key"}).is_success
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'status="401"' in metrics and KEY not in metrics and "nope" not in metrics


def test_the_key_of_the_environment_is_asked_for(run_dir, monkeypatch) -> None:
    monkeypatch.setenv(ENV_KEY, KEY)
    with TestClient(create_app(run_dir)) as keyed:
        _unauthorized(keyed.post("/predict", json={"inputs": TEXTS}))
        assert keyed.post("/predict", json={"inputs": TEXTS}, headers={"Authorization": f"Bearer {KEY}"}).is_success


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.2", "example.org"]))


def test_a_keyed_server_process_logs_no_key(run_dir, tmp_path) -> None:
    log = tmp_path / "server.log"
    env = {**os.environ, ENV_KEY: KEY}
    with server_process(run_dir, "--log-level", "debug", env=env, log=log) as (proc, url):
        assert httpx.post(f"{url}/predict", json={"inputs": TEXTS}).status_code == 401
        assert (
            httpx.post(
                f"{url}/predict", json={"inputs": TEXTS}, headers={"Authorization": f"Bearer {KEY}x"}
            ).status_code
            == 401
        )
        assert (
            httpx.post(f"{url}/predict", json={"inputs": TEXTS}, headers={"Authorization": f"Bearer {KEY}"}).status_code
            == 200
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert '"POST /predict HTTP/1.1" 401' in text and '"POST /predict HTTP/1.1" 200' in text
    assert KEY not in text


def test_an_open_server_on_every_interface_is_warned_about(run_dir, tmp_path) -> None:
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != ENV_KEY}
    with server_process(run_dir, "--host", "0.0.0.0", env=env, log=log) as (proc, url):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "serving on 0.0.0.0 with no API key" in log.read_text()


def test_a_missing_key_file_is_one_error_line(run_dir, tmp_path) -> None:
    from click.testing import CliRunner

    from labelcon.cli import main

    result = CliRunner().invoke(main, ["serve", str(run_dir), "--api-key-file", str(tmp_path / "keys.txt")])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'keys.txt'}: cannot read the key file" in result.output
