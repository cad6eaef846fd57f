"""New model versions while ``labelcon serve`` runs: the switch between requests, requests in
flight finishing on their version, damaged versions refused, ``--overwrite`` noticed, and
the soak bench in a short form."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from labelcon import Labelcon  # noqa: E402
from labelcon.config import ServeSettings  # noqa: E402
from labelcon.modeldir import MODEL_FILE, publish, resolve, version_name  # noqa: E402
from labelcon.serve import VERSION_HEADER, ApiKeys, create_app  # noqa: E402
from tests.helpers import FAST  # noqa: E402
from tests.serving import server_process  # noqa: E402

TEXTS = ["song album band concert", "goal team coach"]
OPEN = ApiKeys([])


@pytest.fixture(scope="module")
def trained(toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("versions") / "run"
    Labelcon(**FAST).fit(toy_data["train"], toy_data["dev"], out_dir=out, show_progress=False)
    return out


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A copy of the trained run that a test may publish into."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def publish_changed(run_dir: Path, scale: float = 0.5) -> Labelcon:
    """Publish a new version of ``run_dir`` whose encoder gives other embeddings."""
    model = Labelcon.load(run_dir)
    with torch.no_grad():
        for weight in model.encoder_.parameters():
            weight.add_(scale * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)))
    model.save(run_dir)
    return model


def _embeddings(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([row["embedding"] for row in response.json()["data"]])


def _wait_for(url_or_client, version: str, seconds: float = 10) -> float:
    """Seconds until /health names ``version``."""
    started = time.monotonic()
    get = url_or_client.get if hasattr(url_or_client, "get") else None
    while time.monotonic() - started < seconds:
        health = get("/health") if get else httpx.get(f"{url_or_client}/health", timeout=5)
        if health.json()["model_version"] == version:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"/health did not name {version} within {seconds} s")


def test_publish_draws_a_new_version_name_each_time(tmp_path) -> None:
    names = []
    for _ in range(2):
        folder = publish(tmp_path, lambda tmp: (tmp / "weights.txt").write_text("1"), {})
        names.append(version_name(folder, resolve(tmp_path)[1]))
    assert names[0].startswith("model.1-") and names[1].startswith("model.2-") and names[0][8:] != names[1][8:]


def test_a_published_version_is_served_between_requests(run_dir) -> None:
    old = Labelcon.load(run_dir)
    with TestClient(create_app(run_dir, ServeSettings(reload_seconds=0.05), OPEN)) as client:
        first = client.post("/v1/embeddings", json={"input": TEXTS})
        assert first.headers[VERSION_HEADER] == old.version_
        np.testing.assert_allclose(_embeddings(first), old.encode(TEXTS), atol=1e-6)
        new = publish_changed(run_dir)
        assert new.version_ != old.version_
        assert _wait_for(client, new.version_) < 10
        answer = client.post("/v1/embeddings", json={"input": TEXTS})
        assert answer.headers[VERSION_HEADER] == new.version_
        np.testing.assert_allclose(_embeddings(answer), new.encode(TEXTS), atol=1e-6)
        assert not np.allclose(_embeddings(answer), old.encode(TEXTS), atol=1e-3)
        predicted = client.post("/predict", json={"inputs": TEXTS})
        assert predicted.headers[VERSION_HEADER] == new.version_
        assert [p["labels"] for p in predicted.json()["predictions"]] == new.predict(TEXTS)
        assert client.get("/info").json()["model_version"] == new.version_


def test_a_request_in_flight_finishes_on_the_version_it_started_with(run_dir) -> None:
    old = Labelcon.load(run_dir)
    with server_process(run_dir, "--reload-seconds", "0.1") as (proc, url):
        new: dict[str, Labelcon] = {}

        def body() -> Iterator[bytes]:  # the body is still coming while the new version takes over
            yield b'{"input": ["song album band concert",'
            new["model"] = publish_changed(run_dir)
            _wait_for(url, new["model"].version_)
            yield b' "goal team coach"]}'

        started_before = httpx.post(
            f"{url}/v1/embeddings", content=body(), headers={"Content-Type": "application/json"}, timeout=30
        )
        assert started_before.headers[VERSION_HEADER] == old.version_
        np.testing.assert_allclose(_embeddings(started_before), old.encode(TEXTS), atol=1e-6)
        after = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS}, timeout=30)
        assert after.headers[VERSION_HEADER] == new["model"].version_
        np.testing.assert_allclose(_embeddings(after), new["model"].encode(TEXTS), atol=1e-6)


def test_a_damaged_version_is_refused_and_the_old_one_keeps_serving(run_dir, caplog) -> None:
    old = Labelcon.load(run_dir)
    app = create_app(run_dir, ServeSettings(reload_seconds=0), OPEN)  # checks by hand, below
    versions = app.state.versions
    with TestClient(app) as client:
        damaged = publish_changed(run_dir)
        folder, _ = resolve(run_dir)
        (folder / "config.yaml").write_text("encoder: [unclosed", encoding="utf-8")
        logger = logging.getLogger("labelcon.serve")  # `labelcon serve` may have stopped it propagating to caplog's
        logger.addHandler(caplog.handler)
        try:
            assert versions.check() is False
        finally:
            logger.removeHandler(caplog.handler)
        assert f"refused model version {damaged.version_}" in caplog.text and "config.yaml" in caplog.text
        assert f"still serving {old.version_}" in caplog.text
        answer = client.post("/v1/embeddings", json={"input": TEXTS})
        assert answer.headers[VERSION_HEADER] == old.version_
        np.testing.assert_allclose(_embeddings(answer), old.encode(TEXTS), atol=1e-6)
        assert versions.check() is False  # the same damaged version is not tried again
        damaged.save(run_dir)  # the same model, published whole this time
        assert versions.check() is True
        assert client.get("/health").json()["model_version"] == damaged.version_


def test_a_run_trained_again_with_overwrite_is_noticed(run_dir) -> None:
    app = create_app(run_dir, ServeSettings(reload_seconds=0), OPEN)
    versions = app.state.versions
    old = versions.current.version
    for entry in run_dir.iterdir():  # what --overwrite removes before it trains again
        if entry.name.startswith("model.") or entry.name == MODEL_FILE:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    assert versions.check() is False and versions.current.version == old  # nothing to load: keep serving
    retrained = versions.current.model
    retrained.save(run_dir)
    assert retrained.version_.startswith("model.1-") and retrained.version_ != old
    assert versions.check() is True and versions.current.version == retrained.version_


def test_the_soak_bench_in_short(tmp_path) -> None:
    out = tmp_path / "soak.json"
    bench = Path(__file__).resolve().parents[1] / "bench"
    done = subprocess.run(
        [
            sys.executable,
            "bench_soak.py",
            "--encoder",
            "static",
            "--clients",
            "4",
            "--seconds",
            "6",
            "--json",
            str(out),
        ],
        cwd=bench,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert all(result["bars"].values()), result["bars"]
    assert result["server_errors"] == 0 and result["dropped"] == 0 and result["old_after_switch"] == 0
    assert result["by_kind"]["oversized"].keys() <= {"413"} and result["by_kind"]["malformed"].keys() <= {"422"}
    assert result["by_kind"]["no_key"].keys() <= {"401"} and len(result["versions"]) == 2
