"""The HTTP app of ``labelcon serve`` (FastAPI): its routes and what answers them.

::

    GET  /health          {"status": "ok", "model_version": ...}; the only route open without a key
    GET  /info            labels, embedding dimension, encoder, the run's test metrics, the limits
    POST /predict         {"inputs": str | [str], "top_k"?, "raw_scores"?} -> the calibrated label sets
    POST /search          {"inputs"?, "like"?, "k"?, "labels"?, "passages"?} -> nearest indexed items (with an index)
    POST /v1/embeddings   OpenAI's embeddings request and response (float or base64)
    GET  /metrics         Prometheus text format: requests, errors, latency, batch sizes

A thin layer over :meth:`Labelcon.encode <labelcon.estimator.Labelcon.encode>` and the
prediction stage (``model.stage_``): the texts of concurrent requests are gathered by one
:class:`labelcon.batching.Batcher` into one encoder batch and one stage call, run in a
thread while the event loop keeps taking requests. Routes come in routers, one per
concern, that :func:`create_app` includes (``/predict`` only when the run has labels,
``/search`` only when it has an index).

Every request passes :class:`labelcon.serve.guard.Guard` first: it is bound to one model
version (:mod:`labelcon.serve.versions`), taken when it arrives and named in the
``X-Labelcon-Model-Version`` header of its answer, while a newly published version
replaces it for later requests; it needs an accepted key when the server has API keys
(:mod:`labelcon.serve.keys`); and its body and time are held to the limits of
:class:`labelcon.config.ServeSettings`. Errors are answered as :mod:`labelcon.serve.errors` says.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import ctypes.util
import os
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from labelcon.batching import Batcher
from labelcon.config import ServeSettings
from labelcon.estimator import Labelcon
from labelcon.schemas import (
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    InfoResponse,
    LabelScore,
    Prediction,
    PredictRequest,
    PredictResponse,
    SearchHit,
    SearchPassage,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Usage,
)
from labelcon.search import Hit, fresh_index
from labelcon.serve.errors import add_error_handlers, check_texts, unsupported
from labelcon.serve.guard import Guard, Metrics
from labelcon.serve.keys import ApiKeys, read_api_keys
from labelcon.serve.versions import Served, Versions

#: Seconds between trims of the C heap (:func:`_trim_memory`).
TRIM_SECONDS = 2.0


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
    """Every job's texts encoded at once (with their windows, in the same pass, when the stage
    scores each window: :meth:`Labelcon.features`), every prediction job's scored at once."""
    texts = [text for job in jobs for text in job.texts]
    bounds = np.cumsum([0, *(len(job.texts) for job in jobs)])
    asking = [i for i, job in enumerate(jobs) if job.top_k is not None]
    results: list[Any] = [None] * len(jobs)
    scored = model.features(texts) if asking else None
    embeddings = model.encode(texts) if scored is None else scored.embeddings
    if scored is not None:
        rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in asking])
        features = scored if len(rows) == len(texts) else scored.subset(rows)
        label_sets, ranked = model.stage_.predict(features, max(jobs[i].top_k for i in asking))
        raw = model.stage_.scores(features) if any(jobs[i].raw_scores for i in asking) else None
        names, row = model.stage_.labels.names, 0
        for i in asking:
            job, predictions = jobs[i], []
            for _ in job.texts:
                scores = zip(names, raw[row], strict=True) if job.raw_scores else ranked[row][: job.top_k]
                predictions.append(
                    Prediction(labels=label_sets[row], scores=[LabelScore(label=n, score=s) for n, s in scores])
                )
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


# ---------------------------------------------------------------------- routes
def _served(request: Request) -> Served:
    """The model version the request was bound to on arrival (:class:`Guard`)."""
    return request.state.served


def _service_routes(name: str, settings: ServeSettings, metrics: Metrics) -> APIRouter:
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
        return _json(
            InfoResponse(
                model=name,
                model_version=served.version,
                labels=list(model.stage_.labels.names) if model.stage_ is not None else [],
                embedding_dim=model.encoder_.dim,
                encoder={"type": model.encoder_.encoder_type, **model.encoder_.config()},
                objective=model.objective_,
                test_metrics=model.metrics_.get("test"),
                limits=settings,
            )
        )

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
        check_texts(request.input, settings)
        job = _Job(_served(http).model, request.input)
        done: _Embedded = await batcher.submit(job, len(request.input))
        if request.encoding_format == "base64":
            vectors = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in done.vectors]
        else:
            vectors = done.vectors.tolist()
        data = [Embedding(index=i, embedding=vector) for i, vector in enumerate(vectors)]
        return _json(
            EmbeddingsResponse(data=data, model=name, usage=Usage(prompt_tokens=done.tokens, total_tokens=done.tokens))
        )

    return router


def _prediction_routes(settings: ServeSettings, batcher: Batcher) -> APIRouter:
    router = APIRouter()

    @router.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest, http: Request) -> Response:
        """Each text's labels under the run's calibrated thresholds, with the top-k (or every) label's score."""
        check_texts(request.inputs, settings)
        served = _served(http)
        if served.model.stage_ is None:
            return unsupported(served, "was trained without labels: it embeds, but predicts no labels")
        job = _Job(
            served.model, request.inputs, min(request.top_k, len(served.model.stage_.labels)), request.raw_scores
        )
        return _json(PredictResponse(predictions=await batcher.submit(job, len(request.inputs))))

    return router


def _search_routes(settings: ServeSettings) -> APIRouter:
    router = APIRouter()

    @router.post("/search", response_model=SearchResponse)
    async def search(request: SearchRequest, http: Request) -> Response:
        """The ``k`` nearest indexed items of each query text, then of each item named in ``like``."""
        if request.inputs:
            check_texts(request.inputs, settings)
        served = _served(http)
        if served.model.index_ is None:
            return unsupported(served, "has no search index: run `labelcon index RUN --corpus FILE`")
        if request.passages and not served.model.index_.has_passages:
            return unsupported(
                served,
                "has a search index without passages: they need a model that reads long texts as windows "
                "(--windows mean or max)",
            )
        results = await asyncio.to_thread(
            served.model.search,
            request.inputs,
            request.k,
            labels=request.labels,
            like=request.like,
            passages=request.passages,
        )
        asked = [{"query": text} for text in request.inputs] + [{"like": item} for item in request.like]
        return _json(
            SearchResponse(
                results=[
                    SearchResult(**who, hits=[_search_hit(hit) for hit in hits])
                    for who, hits in zip(asked, results, strict=True)
                ]
            )
        )

    return router


def _search_hit(hit: Hit) -> SearchHit:
    """A :class:`~labelcon.search.Hit` as the response holds it, its passage's text cut from the item's."""
    passage = None
    if hit.passage is not None:
        start, end, score = hit.passage
        passage = SearchPassage(start=start, end=end, text=hit.text[start:end], score=score)
    return SearchHit(id=hit.id, text=hit.text, labels=hit.labels, score=hit.score, passage=passage)


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


def create_app(
    run_dir: str | os.PathLike, settings: ServeSettings | None = None, api_keys: ApiKeys | None = None
) -> FastAPI:
    """The HTTP app serving the model in ``run_dir`` (loaded now) under ``settings``; with
    ``api_keys`` None, the keys are read from ``$LABELCON_API_KEY`` (none: an open server)."""
    settings = settings or ServeSettings()
    keys = read_api_keys() if api_keys is None else api_keys
    versions = Versions(run_dir, lambda path: load_served(path, settings.device), settings.reload_seconds)
    model, name = versions.current.model, Path(run_dir).resolve().name
    metrics = Metrics()
    batcher = Batcher(
        _run_jobs, max_size=settings.max_batch, max_wait=settings.max_wait_ms / 1000, on_batch=metrics.observe_batch
    )

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
    app = FastAPI(title="labelcon", version=version("labelcon"), lifespan=lifespan)
    app.state.versions = versions
    for router in routers:
        app.include_router(router)
    add_error_handlers(app, routes)
    app.add_middleware(
        Guard,
        settings=settings,
        metrics=metrics,
        paths={route.split()[1] for route in routes},
        keys=keys,
        versions=versions,
    )
    return app
