"""The ASGI middleware around every request of ``labelcon serve`` (:class:`Guard`) and its metrics."""

from __future__ import annotations

import asyncio
import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelcon.config import ServeSettings
from labelcon.serve.errors import LimitExceeded, limit_error, timeout_error, unauthorized
from labelcon.serve.keys import OPEN_ROUTES, ApiKeys
from labelcon.serve.versions import Versions

#: The response header naming the model version that answered.
VERSION_HEADER = "X-Labelcon-Model-Version"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The server's Prometheus metrics. Each app has a registry of its own; under
    ``--workers`` (``$PROMETHEUS_MULTIPROC_DIR`` set) ``/metrics`` adds up every process's."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "labelcon_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "labelcon_errors",
            "HTTP requests answered with a status of 400 or more",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "labelcon_request_seconds",
            "Seconds from a request's arrival to its answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_texts = Histogram(
            "labelcon_batch_texts", "Texts per encoder batch", buckets=SIZE_BUCKETS, registry=registry
        )
        self.batch_requests = Histogram(
            "labelcon_batch_requests",
            "Requests gathered into one encoder batch",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, requests: int, texts: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_texts.observe(texts)

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


class Guard:
    """ASGI middleware around every request: binds it to the version served now (the
    request's ``state.served``, named in its answer's ``X-Labelcon-Model-Version``); asks
    for an API key when there are keys (401 without an accepted one); reads the body whole,
    up to ``max_body_bytes`` (413 beyond); answers 503 when the request outlives
    ``timeout``; records route, status and time in the metrics (paths that are no route
    count as ``other``)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ServeSettings,
        metrics: Metrics,
        paths: set[str],
        keys: ApiKeys,
        versions: Versions,
    ) -> None:
        self.app, self.settings, self.metrics, self.paths = app, settings, metrics, paths
        self.keys, self.versions = keys, versions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), None
        served = self.versions.current
        scope.setdefault("state", {})["served"] = served
        version_header = (VERSION_HEADER.encode("latin-1"), served.version.encode("latin-1"))

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), version_header]}
            await send(message)

        try:
            await asyncio.wait_for(self._answer(scope, receive, observed), self.settings.timeout)
        except asyncio.TimeoutError:
            if status is None:  # else the answer had begun: it cannot be replaced
                await timeout_error(self.settings.timeout)(scope, receive, observed)
        except Exception:
            status = status or 500
            raise
        finally:  # 499: the client left before an answer (nginx's code)
            route = scope["path"] if scope["path"] in self.paths else "other"
            self.metrics.observe_request(route, scope["method"], status or 499, time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys and (scope["method"], scope["path"]) not in OPEN_ROUTES:
            authorization = Headers(scope=scope).get("authorization")
            if not self.keys.accepts(authorization):
                return await unauthorized(authorization is not None)(scope, receive, send)
        limit = self.settings.max_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            message = f"the request body has {declared} bytes; at most {limit} are allowed"
            too_large = LimitExceeded("max_body_bytes", limit, message)
            return await limit_error(too_large)(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size, more = size + len(chunks[-1]), message.get("more_body", False)
            if size > limit:
                too_large = LimitExceeded("max_body_bytes", limit, f"the request body has more than {limit} bytes")
                return await limit_error(too_large)(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
