"""Logs: one JSON object per line (or plain text), a request id on every line, and no secret
or personal data from the libraries we use.

Only the standard library: a JSON formatter is twenty lines, and a dependency would be one
more thing that might log what it should not.

The libraries below would log secrets or personal data at INFO or DEBUG: uvicorn's access log
(full paths and query strings: authorization codes, person ids), httpx (URLs with query
strings), httpcore (response headers: Set-Cookie), SQLAlchemy (bound parameters and result
rows: names, identity codes, hashes), Authlib (every token it issues, PKCE verifiers).
`protect_library_logs` puts a filter on each of their loggers, so whatever level and handlers
an operator configures, those values never reach a record; the broker writes its own access
line (route template, status, duration) instead.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes a record may carry (through `extra`) that go into the JSON object as they are.
_FIELDS = ("request_id", "method", "route", "status", "duration_ms")
_HIDDEN = "[hidden]"


class RequestContext(logging.Filter):
    """Adds `request_id` (of the request being served, or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; give it the current request id."""
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, access fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _DropBelowWarning(logging.Filter):
    """For loggers whose debug output is made of headers, bodies and tokens (httpcore,
    uvicorn.access, Authlib)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


class _HttpxUrls(logging.Filter):
    """httpx's request line without the URL's path and query: only scheme, host and port."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_origin(a) if _looks_like_url(a) else a for a in record.args)
        return True


class _SqlParameters(logging.Filter):
    """SQLAlchemy's statements without their bound parameters or result rows."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            # The statement and the timing are strings; parameters and rows are SQLAlchemy's
            # repr wrappers (or tuples, dicts), which are exactly what must not be shown.
            record.args = tuple(
                a if isinstance(a, str | int | float) else _HIDDEN for a in record.args
            )
        elif isinstance(record.args, dict):
            record.args = dict.fromkeys(record.args, _HIDDEN)
        return True


def _looks_like_url(value: object) -> bool:
    return (hasattr(value, "scheme") and hasattr(value, "host")) or (
        isinstance(value, str) and value.startswith(("http://", "https://"))
    )


def _origin(url: object) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}/…"


_QUIET = _DropBelowWarning()
# Every existing logger under these gets _QUIET too (a filter acts only on its own logger).
_QUIET_PREFIXES = ("authlib.", "httpcore.", "httpcore2.")
_LIBRARY_FILTERS: dict[str, logging.Filter] = {
    "uvicorn.access": _QUIET,
    **{
        f"{package}.{module}": _QUIET
        for package in ("httpcore", "httpcore2")
        for module in ("connection", "http11", "http2", "proxy")
    },
    "httpx": _HttpxUrls(),
    "httpx2": _HttpxUrls(),
    "sqlalchemy.engine.Engine": _SqlParameters(),
}


def protect_library_logs() -> None:
    """Put the redacting filters on the libraries' loggers (idempotent). A filter acts only on
    records of its own logger, so every Authlib module's logger gets one: call this again
    after Authlib is imported (the app factory does)."""
    guards = dict(_LIBRARY_FILTERS)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(_QUIET_PREFIXES):
            guards[name] = _QUIET
    for name, guard in guards.items():
        logger = logging.getLogger(name)
        if guard not in logger.filters:
            logger.addFilter(guard)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` (also uvicorn's `log_config`): one stderr handler in
    `log_format` (json or text) at `level` for the broker and uvicorn alike."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContext}},
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": log_format,
                "filters": ["request"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers would print a second, unformatted copy.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Replaced by broker.access, which logs the route template instead of the path.
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }
