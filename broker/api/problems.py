"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

This is the one place where domain errors become HTTP statuses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.errors import (
    BrokerError,
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    PayloadTooLarge,
    SourceFailed,
    SourceTimedOut,
    TooManyRequests,
)
from broker.ledger.errors import LogError
from broker.storage.database import unavailable
from broker.web.i18n import pick_language
from broker.web.my.context import error_page

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
    (PayloadTooLarge, 413),
    (TooManyRequests, 429),
    (DatabaseUnavailable, 503),
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


def from_error(error: BrokerError, instance: str) -> JSONResponse:
    """The problem response for a domain error, with the headers it calls for; also used by
    middleware that answers before any route runs."""
    response = problem(
        status_of(error), error.code, error.title, error.detail, instance, **extensions(error)
    )
    response.headers.update(error.headers)
    return response


def _posted_from_a_page(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return (
        request.method == "POST"
        and content_type.startswith("application/x-www-form-urlencoded")
        and "text/html" in request.headers.get("accept", "")
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem."""

    @app.exception_handler(BrokerError)
    async def _domain(request: Request, exc: BrokerError) -> JSONResponse:
        return from_error(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if _posted_from_a_page(request):
            # A person's form (say, a sign-in with characters a field refuses): a page in
            # their language, not JSON they cannot read.
            language = pick_language(
                request.query_params.get("lang"), request.headers.get("accept-language")
            )
            return error_page(422, language)
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
        # A driver error from a path that reaches the database outside `transaction`.
        if (translated := unavailable(exc)) is not None:
            _log.warning("database unavailable on %s: %s", request.url.path, type(exc).__name__)
            return from_error(translated, request.url.path)
        # The message may hold personal data or secrets; log the type and trace, answer plainly.
        _log.error("unhandled %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
        return problem(
            500,
            "internal-error",
            "Internal error",
            "The broker could not complete the request. Nothing was changed.",
            request.url.path,
        )


# What each status means to a client, for the OpenAPI document; the handlers above decide it.
_MEANING = {
    400: "The request is malformed",
    401: "No or invalid session or access token; WWW-Authenticate carries the challenge",
    403: "The caller may not do this (kind of caller, scope, delegation or CSRF token)",
    404: "No such resource for this caller",
    409: "The request contradicts stored state",
    413: "The request body is larger than the broker accepts",
    422: "A parameter is missing or malformed, or names things that do not fit together",
    429: "Too many requests; Retry-After says when to ask again",
    502: "The source failed; nothing was released; the failure is logged",
    503: "The database or the audit log is unavailable just now; Retry-After may say when",
    504: "The source did not answer in time; nothing was released; the failure is logged",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `type` is documented in docs/api.md.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


_HEADERS = {
    401: ("WWW-Authenticate", "The RFC 6750 (or RFC 9449) challenge"),
    429: ("Retry-After", "Seconds until asking again is likely to work"),
    503: ("Retry-After", "Seconds until asking again is likely to work"),
}


def documented(
    *statuses: int, described: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring each status as an `application/problem+json` problem;
    `described` overrides the general meaning of a status for one route."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": (described or {}).get(status, _MEANING[status]),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        if status in _HEADERS:
            name, meaning = _HEADERS[status]
            response["headers"] = {name: {"description": meaning, "schema": {"type": "string"}}}
        responses[status] = response
    return responses
