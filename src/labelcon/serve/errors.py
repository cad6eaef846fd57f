"""The error answers of ``labelcon serve``: every error body is ``{"error": {"message": ..., "type": ...}}``.

Too many texts, too long a text or too large a body are answered 413, a request that
outlives ``timeout`` 503, each with the limit and its ``labelcon serve`` flag; malformed
JSON, wrong types, empty lists or texts 422; a request without an accepted API key 401; a
route the served model version cannot answer 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from labelcon.config import ServeSettings, error_message
from labelcon.io import json_kind
from labelcon.serve.keys import ENV_KEY
from labelcon.serve.versions import Served


class LimitExceeded(Exception):
    """A request beyond one of the :class:`ServeSettings` limits (answered 413)."""

    def __init__(self, limit: str, value: float, message: str) -> None:
        super().__init__(message)
        self.limit, self.value = limit, value


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def error_response(status: int, message: str, kind: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, **extra}}, status_code=status)


def limit_error(exc: LimitExceeded) -> JSONResponse:
    return error_response(
        413,
        f"{exc} (labelcon serve {flag_of(exc.limit)})",
        "limit_exceeded",
        limit=exc.limit,
        flag=flag_of(exc.limit),
        value=exc.value,
    )


def unauthorized(presented: bool) -> JSONResponse:
    """401 for a request without an accepted key (the key itself is never echoed)."""
    problem = "the API key is not accepted" if presented else "this server asks for an API key"
    response = error_response(
        401,
        f"{problem}: send the header 'Authorization: Bearer <key>' with a key of the server's "
        f"${ENV_KEY} or --api-key-file",
        "unauthorized",
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="labelcon"'
    return response


def unsupported(served: Served, what: str) -> JSONResponse:
    """409 for a route the served model version cannot answer (the one served at start could)."""
    return error_response(409, f"model version {served.version} {what}", "unsupported_by_model")


def timeout_error(seconds: float) -> JSONResponse:
    return error_response(
        503,
        f"the request took longer than {seconds:g} s (labelcon serve --timeout)",
        "timeout",
        limit="timeout",
        flag="--timeout",
        value=seconds,
    )


def check_texts(texts: list[str], settings: ServeSettings) -> None:
    if len(texts) > settings.max_items:
        raise LimitExceeded(
            "max_items",
            settings.max_items,
            f"{len(texts)} texts in one request; at most {settings.max_items} are allowed",
        )
    longest = max(range(len(texts)), key=lambda i: len(texts[i]))
    if len(texts[longest]) > settings.max_chars:
        raise LimitExceeded(
            "max_chars",
            settings.max_chars,
            f"item {longest} has {len(texts[longest])} characters; at most {settings.max_chars} are allowed per text",
        )


def describe_errors(errors: list[dict[str, Any]]) -> str:
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


def add_error_handlers(app: FastAPI, routes: list[str]) -> None:
    """JSON errors for bad requests (422), broken limits (413), HTTP errors (with ``routes``,
    "GET /health", ..., for 404 and 405) and anything unexpected (500)."""

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, describe_errors(list(exc.errors())), "invalid_request")

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"{exc.detail}: {request.method} {request.url.path}"
        if exc.status_code in (404, 405):
            message += f" (the routes: {', '.join(routes)})"
        return error_response(exc.status_code, message, "http_error")

    async def limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        return limit_error(exc)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(LimitExceeded, limit)
    app.add_exception_handler(Exception, internal)
