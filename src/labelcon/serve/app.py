"""The HTTP app of ``labelcon serve`` (FastAPI on uvicorn) and the process that runs it.

::

    GET  /health          {"status": "ok", "model_version": ...}; the only route open without a key
    GET  /info            labels, embedding dimension, encoder, the run's test metrics, the limits
    POST /predict         {"inputs": str | [str], "top_k"?, "raw_scores"?} -> the calibrated label sets
    POST /search          {"inputs"?, "like"?, "k"?, "labels"?} -> nearest indexed items (runs with an index)
    POST /v1/embeddings   OpenAI's embeddings request and response (float or base64)
    GET  /metrics         Prometheus text format: requests, errors, latency, batch sizes

A thin layer over :meth:`Labelcon.encode <labelcon.estimator.Labelcon.encode>` and the
prediction stage (``model.stage_``): the texts of concurrent requests are gathered by one
:class:`labelcon.batching.Batcher` into one encoder batch and one stage call, run in a
thread while the event loop keeps taking requests. Routes come in routers, one per
concern, that :func:`create_app` includes (``/predict`` only when the run has labels,
``/search`` only when it has an index).

Every request is answered by one model version (:mod:`labelcon.serve.versions`), taken when
it arrives and named in the ``X-Labelcon-Model-Version`` header of its answer; a newly
published version replaces it for later requests. With API keys (:mod:`labelcon.serve.keys`)
a request without an accepted ``Authorization: Bearer`` key is answered 401.

Limits are :class:`labelcon.config.ServeSettings`. Too many texts, too long a text or
too large a body are answered 413, a request that outlives ``timeout`` 503, each with the
limit and its ``labelcon serve`` flag; malformed JSON, wrong types, empty lists or texts
422. Every error body is ``{"error": {"message": ..., "type": ...}}``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import ctypes
import ctypes.util
import json
import logging.config
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelcon import __version__
from labelcon.batching import Batcher
from labelcon.config import ServeSettings, error_message
from labelcon.estimator import Labelcon
from labelcon.prediction import Features
from labelcon.schemas import Embedding, EmbeddingsRequest, EmbeddingsResponse, InfoResponse, LabelScore, Prediction
from labelcon.schemas import PredictRequest, PredictResponse, SearchHit, SearchRequest, SearchResponse, SearchResult
from labelcon.schemas import Usage, json_kind
from labelcon.search import fresh_index
from labelcon.serve.keys import ENV_KEY, OPEN_ROUTES, ApiKeys, is_loopback, read_api_keys
from labelcon.serve.versions import Served, Versions, log

#: How ``run`` hands the run directory and settings to each ``--workers`` process.
ENV_SPEC = "LABELCON_SERVE"
#: Seconds between trims of the C heap (:func:`_trim_memory`).
TRIM_SECONDS = 2.0
#: The response header naming the model version that answered.
VERSION_HEADER = "X-Labelcon-Model-Version"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _json(body: BaseModel, status_code: int = 200) -> Response:
    """``body`` serialised by pydantic (NaN and infinity become null)."""
    return Response(body.model_dump_json(), status_code=status_code, media_type="application/json")


# ---------------------------------------------------------------------- the model's work, batched
@dataclass(frozen=True)
class _Job:
    """A request's texts for the model it is answered by; ``top_k`` None asks for
    embeddings, else for predictions."""

    model: Labelcon
    texts: list[str]
    top_k: int | None = None
    raw_scores: bool = False


@dataclass(frozen=True)
class _Embedded:
    vectors: np.ndarray
    tokens: int


def _run_jobs(jobs: list[_Job]) -> list[_Embedded | list[Prediction]]:
    """One batch: the jobs of each model version (one but while versions switch) run together."""
    results: list[Any] = [None] * len(jobs)
    by_model: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        by_model.setdefault(id(job.model), []).append(i)
    for members in by_model.values():
        answers = _run_model_jobs(jobs[members[0]].model, [jobs[i] for i in members])
        for i, answer in zip(members, answers, strict=True):
            results[i] = answer
    return results


def _run_model_jobs(model: Labelcon, jobs: list[_Job]) -> list[_Embedded | list[Prediction]]:
    """Every job's texts encoded at once, every prediction job's scored at once."""
    texts = [text for job in jobs for text in job.texts]
    embeddings = model.encode(texts)
    bounds = np.cumsum([0, *(len(job.texts) for job in jobs)])
    asking = [i for i, job in enumerate(jobs) if job.top_k is not None]
    results: list[Any] = [None] * len(jobs)
    if asking:
        rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in asking])
        features = Features(embeddings[rows], [texts[r] for r in rows])
        label_sets, ranked = model.stage_.predict(features, max(jobs[i].top_k for i in asking))
        raw = model.stage_.scores(features) if any(jobs[i].raw_scores for i in asking) else None
        names, row = model.stage_.labels.names, 0
        for i in asking:
            job, predictions = jobs[i], []
            for _ in job.texts:
                scores = zip(names, raw[row], strict=True) if job.raw_scores else ranked[row][: job.top_k]
                predictions.append(Prediction(labels=label_sets[row],
                                              scores=[LabelScore(label=n, score=s) for n, s in scores]))  # fmt: skip
                row += 1
            results[i] = predictions
    for i, job in enumerate(jobs):
        if job.top_k is None:
            results[i] = _Embedded(embeddings[bounds[i] : bounds[i + 1]], _token_count(model, job.texts))
    return results


def _token_count(model: Labelcon, texts: list[str]) -> int:
    """Tokens the encoder reads from ``texts`` after truncation: the ones of its attention mask
    where it has one (transformers), else its non-padding ids (the static encoder pads with 0)."""
    batch = model.encoder_.tokenize(texts)
    mask = batch["attention_mask"] if "attention_mask" in batch else batch["input_ids"] != 0
    return int(mask.sum())


# ---------------------------------------------------------------------- limits and errors
class LimitExceeded(Exception):
    """A request beyond one of the :class:`ServeSettings` limits (answered 413)."""

    def __init__(self, limit: str, value: float, message: str) -> None:
        super().__init__(message)
        self.limit, self.value = limit, value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _error(status: int, message: str, kind: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, **extra}}, status_code=status)


def _limit_error(exc: LimitExceeded) -> JSONResponse:
    return _error(413, f"{exc} (labelcon serve {_flag(exc.limit)})", "limit_exceeded",
                  limit=exc.limit, flag=_flag(exc.limit), value=exc.value)  # fmt: skip


def _unauthorized(presented: bool) -> JSONResponse:
    """401 for a request without an accepted key (the key itself is never echoed)."""
    problem = "the API key is not accepted" if presented else "this server asks for an API key"
    response = _error(401, f"{problem}: send the header 'Authorization: Bearer <key>' with a key of the server's "
                      f"${ENV_KEY} or --api-key-file", "unauthorized")  # fmt: skip
    response.headers["WWW-Authenticate"] = 'Bearer realm="labelcon"'
    return response


def _unsupported(served: Served, what: str) -> JSONResponse:
    """409 for a route the served model version cannot answer (the one served at start could)."""
    return _error(409, f"model version {served.version} {what}", "unsupported_by_model")


def _timeout_error(seconds: float) -> JSONResponse:
    return _error(503, f"the request took longer than {seconds:g} s (labelcon serve --timeout)", "timeout",
                  limit="timeout", flag="--timeout", value=seconds)  # fmt: skip


def _check_texts(texts: list[str], settings: ServeSettings) -> None:
    if len(texts) > settings.max_items:
        raise LimitExceeded("max_items", settings.max_items,
                            f"{len(texts)} texts in one request; at most {settings.max_items} are allowed")  # fmt: skip
    longest = max(range(len(texts)), key=lambda i: len(texts[i]))
    if len(texts[longest]) > settings.max_chars:
        raise LimitExceeded("max_chars", settings.max_chars, f"item {longest} has {len(texts[longest])} characters; "
                            f"at most {settings.max_chars} are allowed per text")  # fmt: skip


def _describe(errors: list[dict[str, Any]]) -> str:
    """One line from pydantic's validation errors: where, and what was wrong."""
    parts = []
    for err in errors:
        loc = [str(part) for part in err["loc"][1:]] if err["loc"][:1] == ("body",) else [str(p) for p in err["loc"]]
        if err["type"] == "json_invalid":
            return f"malformed JSON at character {loc[0]}: {err['ctx']['error']}"
        if err["type"] == "missing" and not loc:
            return "the request needs a JSON object as its body"
        if err["type"] == "model_attributes_type" and isinstance(err["input"], bytes):
            return "the body was not read as JSON: send it with Content-Type: application/json"
        if err["type"] == "model_attributes_type":
            return f"expected a JSON object as the body, got {json_kind(err['input'])}"
        message = error_message(err)
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return "; ".join(parts)


def _add_error_handlers(app: FastAPI, routes: list[str]) -> None:
    """JSON errors for bad requests (422), broken limits (413), HTTP errors (with ``routes``,
    "GET /health", ..., for 404 and 405) and anything unexpected (500)."""

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _describe(list(exc.errors())), "invalid_request")

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"{exc.detail}: {request.method} {request.url.path}"
        if exc.status_code in (404, 405):
            message += f" (the routes: {', '.join(routes)})"
        return _error(exc.status_code, message, "http_error")

    async def limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        return _limit_error(exc)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(LimitExceeded, limit)
    app.add_exception_handler(Exception, internal)


class _Metrics:
    """The server's Prometheus metrics. Each app has a registry of its own; under
    ``--workers`` (``$PROMETHEUS_MULTIPROC_DIR`` set) ``/metrics`` adds up every process's."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("labelcon_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=registry)  # fmt: skip
        self.errors = Counter("labelcon_errors", "HTTP requests answered with a status of 400 or more",
                              ["route", "status"], registry=registry)  # fmt: skip
        self.latency = Histogram("labelcon_request_seconds", "Seconds from a request's arrival to its answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=registry)  # fmt: skip
        self.batch_texts = Histogram("labelcon_batch_texts", "Texts per encoder batch",
                                     buckets=SIZE_BUCKETS, registry=registry)  # fmt: skip
        self.batch_requests = Histogram("labelcon_batch_requests", "Requests gathered into one encoder batch",
                                        buckets=SIZE_BUCKETS, registry=registry)  # fmt: skip

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


class _Guard:
    """ASGI middleware around every request: binds it to the version served now (the
    request's ``state.served``, named in its answer's ``X-Labelcon-Model-Version``); asks
    for an API key when there are keys (401 without an accepted one); reads the body whole,
    up to ``max_body_bytes`` (413 beyond); answers 503 when the request outlives
    ``timeout``; records route, status and time in the metrics (paths that are no route
    count as ``other``)."""

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: _Metrics, paths: set[str], keys: ApiKeys,
                 versions: Versions) -> None:  # fmt: skip
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
                await _timeout_error(self.settings.timeout)(scope, receive, observed)
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
                return await _unauthorized(authorization is not None)(scope, receive, send)
        limit = self.settings.max_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            message = f"the request body has {declared} bytes; at most {limit} are allowed"
            too_large = LimitExceeded("max_body_bytes", limit, message)
            return await _limit_error(too_large)(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size, more = size + len(chunks[-1]), message.get("more_body", False)
            if size > limit:
                too_large = LimitExceeded("max_body_bytes", limit, f"the request body has more than {limit} bytes")
                return await _limit_error(too_large)(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


# ---------------------------------------------------------------------- routes
def _served(request: Request) -> Served:
    """The model version the request was bound to on arrival (:class:`_Guard`)."""
    return request.state.served


def _service_routes(name: str, settings: ServeSettings, metrics: _Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health(request: Request) -> dict[str, str]:
        """Answers while the server takes requests, with the model version it serves."""
        return {"status": "ok", "model_version": _served(request).version}

    @router.get("/info", response_model=InfoResponse)
    async def describe(request: Request) -> Response:
        """The model version, labels, embedding dimension, encoder, the run's test metrics and the limits."""
        served = _served(request)
        model = served.model
        return _json(InfoResponse(
            model=name, model_version=served.version,
            labels=list(model.stage_.labels.names) if model.stage_ is not None else [],
            embedding_dim=model.encoder_.dim, encoder={"type": model.encoder_.encoder_type, **model.encoder_.config()},
            objective=model.objective_, test_metrics=model.metrics_.get("test"), limits=settings,
        ))  # fmt: skip

    @router.get("/metrics")
    async def prometheus() -> Response:
        """Requests, errors, latency and batch sizes in the Prometheus text format."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def _embedding_routes(name: str, settings: ServeSettings, batcher: Batcher) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse)
    async def embeddings(request: EmbeddingsRequest, http: Request) -> Response:
        """L2-normalised embeddings in OpenAI's format; base64 holds little-endian float32 bytes."""
        _check_texts(request.input, settings)
        job = _Job(_served(http).model, request.input)
        done: _Embedded = await batcher.submit(job, len(request.input))
        if request.encoding_format == "base64":
            vectors = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in done.vectors]
        else:
            vectors = done.vectors.tolist()
        data = [Embedding(index=i, embedding=vector) for i, vector in enumerate(vectors)]
        return _json(EmbeddingsResponse(data=data, model=name, usage=Usage(prompt_tokens=done.tokens,
                                                                           total_tokens=done.tokens)))  # fmt: skip

    return router


def _prediction_routes(settings: ServeSettings, batcher: Batcher) -> APIRouter:
    router = APIRouter()

    @router.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest, http: Request) -> Response:
        """Each text's labels under the run's calibrated thresholds, with the top-k (or every) label's score."""
        _check_texts(request.inputs, settings)
        served = _served(http)
        if served.model.stage_ is None:
            return _unsupported(served, "was trained without labels: it embeds, but predicts no labels")
        job = _Job(served.model, request.inputs, min(request.top_k, len(served.model.stage_.labels)), request.raw_scores)
        return _json(PredictResponse(predictions=await batcher.submit(job, len(request.inputs))))

    return router


def _search_routes(settings: ServeSettings) -> APIRouter:
    router = APIRouter()

    @router.post("/search", response_model=SearchResponse)
    async def search(request: SearchRequest, http: Request) -> Response:
        """The ``k`` nearest indexed items of each query text, then of each item named in ``like``."""
        if request.inputs:
            _check_texts(request.inputs, settings)
        served = _served(http)
        if served.model.index_ is None:
            return _unsupported(served, "has no search index: run `labelcon index RUN --corpus FILE`")
        results = await asyncio.to_thread(served.model.search, request.inputs, request.k, labels=request.labels,
                                          like=request.like)  # fmt: skip
        asked = [{"query": text} for text in request.inputs] + [{"like": item} for item in request.like]
        return _json(SearchResponse(results=[SearchResult(**who, hits=[SearchHit(**hit._asdict()) for hit in hits])
                                             for who, hits in zip(asked, results, strict=True)]))  # fmt: skip

    return router


def _c_heap_trimmer() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``, which hands the C heap's free pages back to the system;
    None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


async def _trim_memory(trim: Callable[[], None], every: float) -> None:
    """Trim the C heap every ``every`` seconds. Encoder batches of ever other sizes leave
    freed blocks between live ones in glibc's heaps, which it does not give back by itself:
    without this, a MiniLM server's memory grew 28% in a minute of 16 clients, steadily
    (``bench/bench_soak.py``)."""
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(trim)


def load_served(run_dir: Path, device: str) -> Served:
    """The current model version of ``run_dir``, ready to answer: its search index checked
    against its encoder (and rebuilt when stale) and one text embedded, so that neither
    happens inside a request."""
    model = Labelcon.load(run_dir, device=device)
    if model.index_ is not None:
        fresh_index(model)
    model.encode(["labelcon"])
    return Served(model.version_, model)


def create_app(run_dir: str | os.PathLike, settings: ServeSettings | None = None,
               api_keys: ApiKeys | None = None) -> FastAPI:  # fmt: skip
    """The HTTP app serving the model in ``run_dir`` (loaded now) under ``settings``; with
    ``api_keys`` None, the keys are read from ``$LABELCON_API_KEY`` (none: an open server)."""
    settings = settings or ServeSettings()
    keys = read_api_keys() if api_keys is None else api_keys
    versions = Versions(run_dir, lambda path: load_served(path, settings.device), settings.reload_seconds)
    model, name = versions.current.model, Path(run_dir).resolve().name
    metrics = _Metrics()
    batcher = Batcher(_run_jobs, max_size=settings.max_batch, max_wait=settings.max_wait_ms / 1000,
                      on_batch=metrics.observe_batch)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await batcher.start()
        tasks = [asyncio.create_task(versions.watch())] if settings.reload_seconds > 0 else []
        if (trim := _c_heap_trimmer()) is not None:
            tasks.append(asyncio.create_task(_trim_memory(trim, TRIM_SECONDS)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await batcher.stop()

    routers = [_service_routes(name, settings, metrics), _embedding_routes(name, settings, batcher)]
    if model.stage_ is not None:  # a run trained without labels embeds only
        routers.append(_prediction_routes(settings, batcher))
    if model.index_ is not None:  # `labelcon index RUN` gave the run a corpus to search
        routers.append(_search_routes(settings))
    routes = [f"{method} {route.path}" for router in routers for route in router.routes for method in route.methods]
    app = FastAPI(title="labelcon", version=__version__, lifespan=lifespan)
    app.state.versions = versions
    for router in routers:
        app.include_router(router)
    _add_error_handlers(app, routes)
    app.add_middleware(_Guard, settings=settings, metrics=metrics, paths={route.split()[1] for route in routes},
                       keys=keys, versions=versions)  # fmt: skip
    return app


# ---------------------------------------------------------------------- running
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


def run(run_dir: str | os.PathLike, settings: ServeSettings | None = None, *, host: str = "127.0.0.1",
        port: int = 8000, workers: int = 1, log_level: str = "info",
        api_key_file: str | os.PathLike | None = None) -> None:  # fmt: skip
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
        log.warning("serving on %s with no API key: anyone who reaches this address can use the server; set "
                    "$%s or pass --api-key-file", host, ENV_KEY)  # fmt: skip
    options = {"host": host, "port": port, "log_level": log_level, "timeout_graceful_shutdown": settings.timeout + 1,
               "log_config": log_config(log_level)}  # fmt: skip
    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(run_dir, settings, keys), **options))
        with _stopping_is_success():
            server.run()
        return
    Labelcon.load(run_dir, device="cpu")  # a run that does not load fails here, once, not in every process
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    spec = {"run_dir": str(run_dir), "settings": settings.model_dump(),
            "api_key_file": None if api_key_file is None else str(Path(api_key_file).resolve())}  # fmt: skip
    os.environ[ENV_SPEC] = json.dumps(spec)
    with tempfile.TemporaryDirectory(prefix="labelcon-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("labelcon.serve.app:app_from_environment", factory=True, workers=workers, **options)


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
