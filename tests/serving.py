"""Helpers of the serving tests: ``labelcon serve`` as a real process on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(
    run_dir: Path, *flags: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[tuple[subprocess.Popen, str]]:
    """``labelcon serve`` as a process on a free loopback port, once it answers /health;
    its stdout and stderr go to ``log`` (else stderr alone to a pipe). Killed at the end
    unless it stopped already."""
    port = free_port()
    command = [sys.executable, "-m", "labelcon", "serve", str(run_dir), "--port", str(port), *flags]
    if "--log-level" not in flags:
        command += ["--log-level", "warning"]
    output = (
        {"stdout": log.open("w"), "stderr": subprocess.STDOUT}
        if log
        else {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    )
    proc = subprocess.Popen(command, text=True, env=env, **output)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
    try:
        while True:
            assert proc.poll() is None, log.read_text() if log else proc.stderr.read()
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if log:
            output["stdout"].close()
