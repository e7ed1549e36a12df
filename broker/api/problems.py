"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

This is the one place where domain errors become HTTP statuses.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.errors import (
    BrokerError,
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    SourceFailed,
    SourceTimedOut,
)
from broker.ledger.errors import LogError

PROBLEM_JSON = "application/problem+json"

_STATUS: list[tuple[type[BrokerError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (SourceTimedOut, 504),
    (SourceFailed, 502),
    (NotPermitted, 403),
    (NotAuthenticated, 401),
    (LogError, 503),
]

_log = logging.getLogger(__name__)


def problem(
    status: int, code: str, title: str, detail: str, instance: str, **extra: Any
) -> JSONResponse:
    """A problem+json response; `type` is a relative URI documented in docs/api.md."""
    body = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON)


def status_of(error: BrokerError) -> int:
    """The HTTP status a domain error maps to."""
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


def extensions(error: BrokerError) -> dict[str, Any]:
    """The problem members beyond RFC 9457's own that a domain error carries."""
    extra: dict[str, Any] = {}
    problems = getattr(error, "problems", None)
    if problems:
        extra["problems"] = problems
    for name in ("reason", "log_index"):
        if getattr(error, name, None) is not None:
            extra[name] = getattr(error, name)
    return extra


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem."""

    @app.exception_handler(BrokerError)
    async def _domain(request: Request, exc: BrokerError) -> JSONResponse:
        response = problem(
            status_of(exc), exc.code, exc.title, exc.detail, request.url.path, **extensions(exc)
        )
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": list(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
        ]
        return problem(
            422,
            "invalid-request",
            "The request is not valid",
            "One or more parameters are missing or malformed.",
            request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        response = problem(
            exc.status_code, code, str(exc.detail), str(exc.detail), request.url.path
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The message may hold personal data or secrets; log the type and trace, answer plainly.
        _log.error("unhandled %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
        return problem(
            500,
            "internal-error",
            "Internal error",
            "The broker could not complete the request. Nothing was changed.",
            request.url.path,
        )
