"""``labelcon serve`` soaked and faulted over loopback, with a new model version published midway.

    python bench/bench_soak.py [--run RUN] [--encoder minilm|static] [--clients 16] [--seconds 120]
                               [--publish-at 0.5] [--reload-seconds 1] [--json FILE]

Copies ``--run`` (without it, trains a one-epoch run on the built-in demo data, as
``bench_serve.py`` does) into a temporary directory, indexes the demo's training texts for
``/search``, and starts ``python -m labelcon serve`` on a free 127.0.0.1 port with an API
key in ``$LABELCON_API_KEY``. After a warm-up it runs ``--clients`` concurrent clients for
``--seconds``, each sending one request after another, drawn at random:

- ``embeddings`` (30%), ``predict`` (30%), ``search`` (15%): 1-4 demo texts, with the key;
- ``oversized`` (5%): a body over ``--max-body-bytes`` (expects 413);
- ``malformed`` (5%): broken JSON (expects 422);
- ``no_key`` (5%): a request without the key (expects 401);
- ``disconnect`` (10%): a raw socket that sends the headers and half of the body, then
  closes (no answer expected; the server must shrug it off).

At ``--publish-at`` of the time a new model version is published into the run directory
(the served model with its encoder's weights moved by 1% noise, saved with
``Labelcon.save``, so the search index must be rebuilt for it), as a retrain would.

It reports requests and answers by status per kind, dropped connections (a request of
a well-formed kind that got no HTTP answer), latency p50/p99 of the well-formed kinds, how
many answers named no version, the seconds from publishing to the first answer from the
new version, the server's resident memory after the warm-up and at the end (each once the
server has been idle for a few seconds), its peak under load (sampled every second), and whether
the key appears in the server's log. The bars of issue 32 are checked and printed; the
exit code is 1 when one fails. Every request has a 30 s timeout; the server is stopped with
SIGTERM at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import torch
from bench_serve import free_port, rss_mib, start_server, train_demo_run
from machine import machine

from labelcon import Labelcon
from labelcon.data import demo_paths, read_dataset
from labelcon.demo import default_encoder
from labelcon.serve.app import TRIM_SECONDS

REQUEST_TIMEOUT = 30.0
VERSION_HEADER = "x-labelcon-model-version"
MAX_BODY_BYTES = 200_000
#: Each kind of request and its share of the mix.
MIX = {
    "embeddings": 0.30,
    "predict": 0.30,
    "search": 0.15,
    "oversized": 0.05,
    "malformed": 0.05,
    "no_key": 0.05,
    "disconnect": 0.10,
}
WELL_FORMED = ("embeddings", "predict", "search")
SETTLE_SECONDS = 2 * TRIM_SECONDS + 1


def publish_new_version(run: Path, seed: int = 0) -> str:
    """Publish the served model again with its encoder's weights moved by 1% Gaussian noise."""
    model = Labelcon.load(run, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in model.encoder_.parameters():
            if weight.is_floating_point():
                weight.add_(0.01 * weight.std().nan_to_num() * torch.randn(weight.shape, generator=generator))
    model.save(run)
    return model.version_


def settled_rss(pid: int) -> float | None:
    """The server's resident memory once it has been idle for ``SETTLE_SECONDS``: what it
    holds, without the buffers of the batches it has just answered (it trims its C heap
    every ``labelcon.serve.app.TRIM_SECONDS``)."""
    time.sleep(SETTLE_SECONDS)
    return rss_mib(pid)


async def disconnect_midway(port: int, key: str) -> None:
    """Headers and half of a body, then the connection closes."""
    body = json.dumps({"input": ["a request that never finishes"] * 8}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    await writer.wait_closed()


async def one_request(http: httpx.AsyncClient, kind: str, texts: list[str], key: str, port: int) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"}
    if kind == "embeddings":
        return await http.post("/v1/embeddings", json={"input": texts}, headers=auth)
    if kind == "predict":
        return await http.post("/predict", json={"inputs": texts, "top_k": 3}, headers=auth)
    if kind == "search":
        return await http.post("/search", json={"inputs": texts[:1], "k": 5}, headers=auth)
    if kind == "oversized":
        return await http.post("/v1/embeddings", json={"input": ["x" * 1000] * (MAX_BODY_BYTES // 1000)}, headers=auth)
    if kind == "malformed":
        return await http.post(
            "/predict", content=b'{"inputs": ["unfinished', headers={**auth, "Content-Type": "application/json"}
        )
    if kind == "no_key":
        return await http.post("/predict", json={"inputs": texts})
    raise ValueError(kind)


async def client(port: int, key: str, texts: list[str], until: float, seed: int, records: list[dict]) -> None:
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT) as http:
        while time.monotonic() < until:
            kind = rng.choices(kinds, weights)[0]
            chosen = rng.sample(texts, rng.randint(1, 4))
            started = time.perf_counter()
            record = {"kind": kind, "sent": time.time()}
            try:
                if kind == "disconnect":
                    await disconnect_midway(port, key)
                    record["status"] = "closed"
                else:
                    response = await one_request(http, kind, chosen, key, port)
                    record["status"] = response.status_code
                    record["version"] = response.headers.get(VERSION_HEADER)
            except (httpx.HTTPError, OSError) as error:
                record["status"] = f"dropped ({type(error).__name__})"
            record["answered"] = time.time()
            record["seconds"] = time.perf_counter() - started
            records.append(record)


def soak(port: int, key: str, texts: list[str], clients: int, seconds: float) -> list[dict]:
    records: list[dict] = []
    until = time.monotonic() + seconds

    async def run() -> None:
        await asyncio.gather(*(client(port, key, texts, until, seed, records) for seed in range(clients)))

    asyncio.run(run())
    return records


def summarize(records: list[dict], published: dict, rss: dict, key_in_log: bool, exit_code: int) -> dict:
    """Counts, latencies, the switch and memory of one soak; ``published`` holds the old and new version."""
    by_kind = {kind: dict(Counter(str(r["status"]) for r in records if r["kind"] == kind)) for kind in MIX}
    good = [r for r in records if r["kind"] in WELL_FORMED]
    latency = np.array([r["seconds"] * 1000 for r in good if r["status"] == 200])
    answered = [r for r in records if isinstance(r["status"], int)]
    new = [r for r in answered if published.get("version") and r.get("version") == published["version"]]
    first_new = min((r["answered"] for r in new), default=None)
    return {
        "requests": len(records),
        "by_kind": by_kind,
        "published": "version" in published,
        "server_errors": sum(1 for r in answered if r["status"] >= 500),
        "dropped": sum(1 for r in good if str(r["status"]).startswith("dropped")),
        "unexpected": sum(1 for r in good if r["status"] != 200),
        "without_version": sum(1 for r in answered if not r.get("version")),
        "versions": dict(Counter(r.get("version") for r in answered)),
        "p50_ms": round(float(np.percentile(latency, 50)), 1),
        "p99_ms": round(float(np.percentile(latency, 99)), 1),
        "new_version_after_s": None if first_new is None else round(first_new - published["at"], 2),
        "rss_peak_mib": max(mib for _, mib in rss["series"]) if rss["series"] else None,
        "old_after_switch": sum(
            1 for r in answered if r.get("version") == published["old"] and first_new and r["sent"] > first_new
        ),
        "rss_warm_mib": rss["warm"],
        "rss_end_mib": rss["end"],
        "rss_change": round(rss["end"] / rss["warm"] - 1, 3),
        "key_in_log": key_in_log,
        "server_exit_code": exit_code,
    }


def bars(result: dict) -> dict[str, bool]:
    return {
        "no 5xx": result["server_errors"] == 0,
        "no dropped connection": result["dropped"] == 0,
        "every answer names a version": result["without_version"] == 0,
        "new version within 10 s": (result["new_version_after_s"] or 99) <= 10 if result["published"] else True,
        "memory within 20%": abs(result["rss_change"]) <= 0.20,
        "key in no log line": not result["key_in_log"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run directory to serve (copied; default: train one on the demo data)")
    parser.add_argument("--encoder", default=None, help="encoder of the demo run (default: minilm if installed)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument(
        "--publish-at",
        type=float,
        default=0.5,
        help="share of --seconds after which to publish (0: never, a control run)",
    )
    parser.add_argument("--reload-seconds", type=float, default=1.0, help="the server's --reload-seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    paths = demo_paths()
    texts = read_dataset(paths["test"]).texts
    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        run = Path(tmp) / "run"
        if args.run:
            shutil.copytree(args.run, run)
        else:
            train_demo_run(run, args.encoder or default_encoder())
        indexed = Labelcon.load(run, device="cpu")
        indexed.index(paths["train"])
        indexed.save(run)
        port, log = free_port(), Path(tmp) / "server.log"
        server = start_server(
            run,
            port,
            "--log-level",
            "info",
            "--max-body-bytes",
            str(MAX_BODY_BYTES),
            "--reload-seconds",
            str(args.reload_seconds),
            env={**os.environ, "LABELCON_API_KEY": key},
            log=log,
        )
        try:
            soak(port, key, texts, args.clients, 3)  # warm-up: every kind, every code path
            rss = {"warm": settled_rss(server.pid)}
            old = httpx.get(f"http://127.0.0.1:{port}/health", timeout=REQUEST_TIMEOUT).json()["model_version"]
            published: dict = {"old": old}

            def publisher() -> None:
                time.sleep(args.seconds * args.publish_at)
                published["version"] = publish_new_version(run)
                published["at"] = time.time()

            def sampler() -> None:
                while not stop.wait(1.0):
                    rss["series"].append((round(time.time() - started, 1), rss_mib(server.pid)))

            stop, rss["series"], started = threading.Event(), [], time.time()
            threads = [threading.Thread(target=sampler)] + [threading.Thread(target=publisher)] * (args.publish_at > 0)
            for thread in threads:
                thread.start()
            records = soak(port, key, texts, args.clients, args.seconds)
            stop.set()
            for thread in threads:
                thread.join()
            rss["end"] = settled_rss(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(timeout=60)
        server_log = log.read_text()
    result = summarize(records, published, rss, key in server_log, exit_code)
    report = {
        "machine": machine(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "run": str(args.run or f"demo ({args.encoder or default_encoder()}, 1 epoch)"),
        "clients": args.clients,
        "seconds": args.seconds,
        **result,
        "publish": published,
        "rss_series": rss["series"],
        "bars": bars(result),
        "version_log": [line for line in server_log.splitlines() if "version" in line],
    }
    print(
        f"{report['machine']}; run: {report['run']}; {args.clients} clients for {args.seconds:g} s; "
        f"published {published.get('version')} at {args.publish_at:.0%}"
    )
    print(f"{'kind':<11} {'requests':>8}  answers")
    for kind, statuses in result["by_kind"].items():
        print(f"{kind:<11} {sum(statuses.values()):>8}  {', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))}")
    print(
        f"requests {result['requests']}; 5xx {result['server_errors']}; dropped {result['dropped']}; "
        f"answers without a version {result['without_version']}; p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
    )
    print(
        f"new version first answered {result['new_version_after_s']} s after publishing; old version answers to "
        f"requests sent after that: {result['old_after_switch']}; versions: {result['versions']}"
    )
    print(
        f"server RSS {rss['warm']} MiB after warm-up, peak {result['rss_peak_mib']}, {rss['end']} MiB at the end "
        f"({result['rss_change']:+.1%}); "
        f"key in the log: {result['key_in_log']}; exit code {exit_code}"
    )
    for line in report["version_log"]:
        print(f"  log: {line}")
    for bar, ok in report["bars"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {bar}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0 if all(report["bars"].values()) else 1)


if __name__ == "__main__":
    main()
