"""The ``labelcon serve`` process: uvicorn with one app, or ``--workers`` processes of their own."""

from __future__ import annotations

import copy
import json
import logging.config
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from labelcon.config import ServeSettings
from labelcon.estimator import Labelcon
from labelcon.serve.app import create_app
from labelcon.serve.keys import ENV_KEY, is_loopback, read_api_keys
from labelcon.serve.versions import log

#: How ``run`` hands the run directory and settings to each ``--workers`` process.
ENV_SPEC = "LABELCON_SERVE"


def app_from_environment() -> FastAPI:
    """The app of one ``--workers`` process: uvicorn imports it by name in each process,
    so :func:`run` hands over the run directory, settings and key file in ``$LABELCON_SERVE``
    (keys themselves travel only in ``$LABELCON_API_KEY`` and the file)."""
    spec = json.loads(os.environ[ENV_SPEC])
    return create_app(spec["run_dir"], ServeSettings(**spec["settings"]), read_api_keys(spec.get("api_key_file")))


def log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging, with labelcon's own lines (``labelcon.serve``: versions, warnings) beside its own."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["labelcon"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return config


def run(
    run_dir: str | os.PathLike,
    settings: ServeSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    api_key_file: str | os.PathLike | None = None,
) -> None:
    """Serve ``run_dir`` until SIGTERM or SIGINT; then take no new requests, finish those in
    flight (for up to ``timeout`` more seconds) and return.

    API keys come from ``$LABELCON_API_KEY`` and ``api_key_file`` (:mod:`labelcon.serve.keys`);
    without any, a ``host`` other than a loopback address is warned about.
    ``workers`` > 1 starts that many processes on the one port, each with its own copy of
    the model and ``$OMP_NUM_THREADS`` (unless set) cores / workers; their metrics are added
    up through a temporary ``$PROMETHEUS_MULTIPROC_DIR``.
    """
    settings = settings or ServeSettings()
    keys = read_api_keys(api_key_file)
    logging.config.dictConfig(log_config(log_level))
    if not keys and not is_loopback(host):
        log.warning(
            "serving on %s with no API key: anyone who reaches this address can use the server; set "
            "$%s or pass --api-key-file",
            host,
            ENV_KEY,
        )
    options = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "timeout_graceful_shutdown": settings.timeout + 1,
        "log_config": log_config(log_level),
    }
    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(run_dir, settings, keys), **options))
        with _stopping_is_success():
            server.run()
        return
    Labelcon.load(run_dir, device="cpu")  # a run that does not load fails here, once, not in every process
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    spec = {
        "run_dir": str(run_dir),
        "settings": settings.model_dump(),
        "api_key_file": None if api_key_file is None else str(Path(api_key_file).resolve()),
    }
    os.environ[ENV_SPEC] = json.dumps(spec)
    with tempfile.TemporaryDirectory(prefix="labelcon-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **options)


@contextmanager
def _stopping_is_success() -> Iterator[None]:
    """uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again so that
    the process dies of it; a stop asked for is a success here, so the raised signal meets
    a handler that does nothing and the command exits 0."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
