"""``labelcon serve`` under load: many concurrent clients against one client sending one
text per request, over loopback.

    python bench/bench_serve.py [--run RUN] [--encoder static] [--route predict|embeddings]
                                [--clients 16] [--requests 25] [--texts 4] [--single 200]
                                [--workers 1] [--max-seconds 300] [--json FILE]

Starts ``python -m labelcon serve RUN`` on a free 127.0.0.1 port (without ``--run`` it
first trains a one-epoch run on the built-in demo data into a temporary directory, with
MiniLM when its offline package is installed, else the static encoder), waits for
``/health``, then measures two phases, each sending the demo's test texts to ``--route``:

- ``single``: one client, ``--single`` requests of one text each, one after another;
- ``concurrent``: ``--clients`` clients at once, each sending ``--requests`` requests of
  ``--texts`` texts one after another (the issue's bar: 16 x 25 x 4, no errors, at least
  twice the texts per second of ``single``).

Per phase: texts/s, requests/s, latency p50/p95/p99, errors (any answer but 200, or no
answer), the server's resident memory after it (``VmRSS`` of its processes, Linux), and from its
``/metrics`` how many requests each encoder batch gathered on average. Every request
has a 30 s timeout, each phase ``--max-seconds``; the server is stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from machine import machine

from labelcon.data import demo_paths, read_dataset
from labelcon.demo import default_encoder

REQUEST_TIMEOUT = 30.0


def train_demo_run(out: Path, encoder: str) -> Path:
    """A one-epoch run on the demo data: the bench measures serving, not accuracy."""
    from labelcon import Labelcon

    paths = demo_paths()
    Labelcon(encoder=encoder, epochs=1, batch_size=32, min_steps=0, labels_file=str(paths["labels"])).fit(
        paths["train"], paths["dev"], out_dir=out, show_progress=False
    )
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    run: Path, port: int, *flags: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """``labelcon serve RUN`` on 127.0.0.1:``port`` with ``flags``, once it answers /health
    (at most 120 s); its output goes to ``log`` when given."""
    command = [sys.executable, "-m", "labelcon", "serve", str(run), "--host", "127.0.0.1", "--port", str(port), *flags]
    output = {"stdout": log.open("w"), "stderr": subprocess.STDOUT} if log else {}
    server = subprocess.Popen(command, env=env, **output)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(
                f"the server exited with code {server.returncode} before answering" + (f"; see {log}" if log else "")
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    sys.exit("the server did not answer /health within 120 s")


def body(route: str, texts: list[str]) -> dict:
    return {"inputs": texts} if route == "predict" else {"input": texts}


async def client(url: str, route: str, batches: list[list[str]]) -> list[tuple[float, bool]]:
    """Send ``batches`` one after another on one connection: (seconds, ok) per request."""
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        for texts in batches:
            started = time.perf_counter()
            try:
                ok = (
                    await http.post(f"/{'predict' if route == 'predict' else 'v1/embeddings'}", json=body(route, texts))
                ).status_code == 200
            except httpx.HTTPError:
                ok = False
            results.append((time.perf_counter() - started, ok))
    return results


def phase(
    url: str, route: str, texts: list[str], clients: int, requests: int, per_request: int, max_seconds: float
) -> dict:
    """``clients`` concurrent clients x ``requests`` requests of ``per_request`` texts each."""
    rng = np.random.default_rng(0)
    plans = [
        [[texts[i] for i in rng.integers(len(texts), size=per_request)] for _ in range(requests)]
        for _ in range(clients)
    ]

    async def run() -> list[list[tuple[float, bool]]]:
        return await asyncio.wait_for(asyncio.gather(*(client(url, route, plan) for plan in plans)), max_seconds)

    started = time.perf_counter()
    results = [r for per_client in asyncio.run(run()) for r in per_client]
    wall = time.perf_counter() - started
    p50, p95, p99 = np.percentile([seconds * 1000 for seconds, _ in results], [50, 95, 99])
    ok = sum(good for _, good in results)
    return {
        "clients": clients,
        "requests": len(results),
        "texts_per_request": per_request,
        "seconds": round(wall, 3),
        "texts_per_s": round(ok * per_request / wall, 1),
        "requests_per_s": round(ok / wall, 1),
        "errors": len(results) - ok,
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
    }


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` and its descendants (``--workers``) in MiB; Linux only."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    own = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    return round(own + sum(rss_mib(int(child)) or 0 for child in children), 1)


def batch_counts(url: str) -> tuple[float, float]:
    """Total requests and encoder batches so far, from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=REQUEST_TIMEOUT).text

    def value(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    return value("labelcon_batch_requests_sum"), value("labelcon_batch_requests_count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run directory to serve (default: train one on the demo data)")
    parser.add_argument("--encoder", default=None, help="encoder of the demo run (default: minilm if installed)")
    parser.add_argument("--route", choices=["predict", "embeddings"], default="predict")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=25, help="requests per concurrent client")
    parser.add_argument("--texts", type=int, default=4, help="texts per concurrent request")
    parser.add_argument("--single", type=int, default=200, help="requests of the one-client phase")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300, help="bound on each phase")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    texts = read_dataset(demo_paths()["test"]).texts
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        run = args.run or train_demo_run(Path(tmp) / "run", args.encoder or default_encoder())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(run, port, "--workers", str(args.workers), "--log-level", "warning")
        report = {
            "machine": machine(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "run": str(args.run or f"demo ({args.encoder or default_encoder()}, 1 epoch)"),
            "route": args.route,
            "workers": args.workers,
            "load_start": os.getloadavg()[0],
            "phases": {},
        }
        try:
            phase(url, args.route, texts, 1, 10, 1, args.max_seconds)  # warm-up
            shapes = {"single": (1, args.single, 1), "concurrent": (args.clients, args.requests, args.texts)}
            for name, shape in shapes.items():
                before = batch_counts(url)
                result = phase(url, args.route, texts, *shape, args.max_seconds)
                after = batch_counts(url)
                result["requests_per_batch"] = round((after[0] - before[0]) / max(after[1] - before[1], 1), 2)
                result["server_rss_mib"] = rss_mib(server.pid)
                report["phases"][name] = result
        finally:
            server.send_signal(signal.SIGTERM)
            report["server_exit_code"] = server.wait(timeout=60)
        report["load_end"] = os.getloadavg()[0]

    single, concurrent = report["phases"]["single"], report["phases"]["concurrent"]
    report["speedup"] = round(concurrent["texts_per_s"] / single["texts_per_s"], 2)
    print(
        f"{report['machine']}; run: {report['run']}; route /{args.route}; workers {args.workers}; "
        f"load {report['load_start']:.2f} -> {report['load_end']:.2f}"
    )
    print(
        f"{'phase':<11} {'clients':>7} {'requests':>8} {'texts/req':>9} {'texts/s':>9} {'req/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'req/batch':>9} {'RSS MiB':>8}"
    )
    for name, r in report["phases"].items():
        print(
            f"{name:<11} {r['clients']:>7} {r['requests']:>8} {r['texts_per_request']:>9} {r['texts_per_s']:>9} "
            f"{r['requests_per_s']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} {r['errors']:>6} "
            f"{r['requests_per_batch']:>9} {r['server_rss_mib'] or '-':>8}"
        )
    print(f"concurrent / single texts per second: {report['speedup']}x; server exit code {report['server_exit_code']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
