"""The connector protocol: fetch one person's records of one category from one source.

Every failure is one of three errors, so that the broker can answer a consumer with a clear
problem and log the failure without ever releasing a partial result::

    ConnectorError              base; `.reason` is short text safe to log and show
    ├── SourceTimeout           the source did not answer in time (the broker answers 504)
    ├── SourceUnavailable       refused, reset, redirected, 5xx, 401/403 or another non-2xx (502)
    ├── SourcePayloadInvalid    the body was cut short, too large, not JSON, the wrong shape or
    │                           not valid FHIR (502)
    └── UnsupportedCategory     the connector does not serve the category asked for (a
                                configuration error on the broker's side)

A reason never holds personal data or anything from the body: only what kind of failure it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Record = dict[str, Any]
"""One record: field name -> JSON value (str, int, bool, None, list, dict; never float)."""


@dataclass(frozen=True)
class FetchRequest:
    """What the broker asks of a source: one person's records of one category, some fields."""

    subject: str
    """The person's identifier at this source (e.g. "potilas-1001")."""
    category: str
    """The data category code (e.g. "health.lab_results")."""
    fields: tuple[str, ...]
    """The permitted field names within the category; nothing else is ever returned."""
    token: str
    """A broker-issued access token, sent as `Authorization: Bearer`."""

    def __repr__(self) -> str:
        # The token is a credential and the subject links to a person: keep both out of logs.
        return f"FetchRequest(category={self.category!r}, fields={self.fields!r})"


@runtime_checkable
class Connector(Protocol):
    """A source the broker can fetch from; `fetch` is synchronous (run in a thread pool)."""

    source_id: str
    audience: str
    """The `aud` the source expects in the broker's token."""
    categories: frozenset[str]
    """The category codes this connector can fetch."""

    def fetch(self, request: FetchRequest) -> list[Record]:
        """All of the person's records of the category, with exactly the requested fields
        the connector knows; raises a ConnectorError and returns nothing on any failure."""
        ...

    def close(self) -> None:
        """Release the connector's HTTP connections."""
        ...


class ConnectorError(Exception):
    """A fetch failed; nothing was returned. `reason` is safe to log and to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceTimeout(ConnectorError):
    """The source did not answer within the connector's time budget."""


class SourceUnavailable(ConnectorError):
    """The source could not be reached or refused the request (non-2xx status)."""


class SourcePayloadInvalid(ConnectorError):
    """The source answered with a body that cannot be trusted: cut short, too large, malformed."""


class UnsupportedCategory(ConnectorError):
    """The connector has no mapping for the requested category."""
