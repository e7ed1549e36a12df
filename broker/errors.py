"""Domain errors. Services raise these; the API maps them to RFC 9457 problems in one place.

BrokerError
├── NotFound            something named does not exist (404)
├── Conflict            the request contradicts stored state (409)
│   └── ConsentNotActive    the consent cannot change any more
├── InvalidInput        the request itself is wrong (422)
│   └── CatalogueInvalid    a catalogue file failed validation; nothing was loaded
├── NotPermitted        the actor may not do this (403)
│   └── ReleaseDenied       no active consent covers a data request; the denial is logged
├── PayloadTooLarge     the request body is over the configured limit (413)
├── TooManyRequests     the caller is over a rate limit; Retry-After says for how long (429)
├── SourceFailed        the source service failed; nothing was released, the failure is logged (502)
│   └── SourceTimedOut      the source did not answer in time (504)
└── DatabaseUnavailable the database cannot be reached just now; retry later (503)
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error the broker's services raise on purpose."""

    code = "broker-error"
    title = "The request could not be completed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the error calls for, if any."""
        return {}


class NotFound(BrokerError):
    """A service, category, purpose, agreement, person or consent does not exist."""

    code = "not-found"
    title = "Not found"


class Conflict(BrokerError):
    """The request is well-formed but contradicts what is stored."""

    code = "conflict"
    title = "Conflict with the current state"


class ConsentNotActive(Conflict):
    """The consent is already withdrawn, refused, revoked or expired."""

    code = "consent-not-active"
    title = "The consent is no longer active"


class InvalidInput(BrokerError):
    """The request names things that do not fit together."""

    code = "invalid-input"
    title = "Invalid input"


class CatalogueInvalid(InvalidInput):
    """A catalogue file is malformed or inconsistent. Nothing from it was stored."""

    code = "catalogue-invalid"
    title = "The catalogue file is not valid"

    def __init__(self, detail: str, problems: list[str] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []


class NotPermitted(BrokerError):
    """The actor is not allowed to do this for this person."""

    code = "not-permitted"
    title = "Not permitted"


class InsufficientScope(NotPermitted):
    """The access token is valid but does not grant the scope this needs (RFC 6750)."""

    code = "insufficient-scope"
    title = "Insufficient scope"

    def __init__(self, detail: str, *, scope: str) -> None:
        super().__init__(detail)
        self.scope = scope

    @property
    def headers(self) -> dict[str, str]:
        """The RFC 6750 challenge naming the missing scope."""
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{self.scope}"'}


class NotAuthenticated(BrokerError):
    """The request carries no valid access token (RFC 6750)."""

    code = "unauthenticated"
    title = "Authentication required"

    def __init__(
        self, detail: str, *, token_given: bool = True, challenge: str | None = None
    ) -> None:
        super().__init__(detail)
        self.token_given = token_given
        self.challenge = challenge

    @property
    def headers(self) -> dict[str, str]:
        """The RFC 6750 challenge (or `challenge`, e.g. DPoP's); an error only for a token."""
        if self.challenge is not None:
            return {"WWW-Authenticate": self.challenge}
        if not self.token_given:
            return {"WWW-Authenticate": 'Bearer realm="omadata"'}
        return {"WWW-Authenticate": 'Bearer realm="omadata", error="invalid_token"'}


class ReleaseDenied(NotPermitted):
    """No active consent permits the release; `log_index` is the logged denial."""

    code = "release-denied"
    title = "No consent permits this release"

    def __init__(self, detail: str, *, reason: str, log_index: int) -> None:
        super().__init__(detail)
        self.reason = reason
        self.log_index = log_index


class PayloadTooLarge(BrokerError):
    """The request body is larger than the broker accepts; nothing of it was processed."""

    code = "payload-too-large"
    title = "The request body is too large"


class TooManyRequests(BrokerError):
    """The caller (a client or an address) made too many requests; try after `retry_after` s."""

    code = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        """RFC 9110 Retry-After, in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class SourceFailed(BrokerError):
    """The source failed or sent what cannot be trusted; `log_index` is the logged failure."""

    code = "source-failed"
    title = "The data source failed"

    def __init__(self, detail: str, *, log_index: int) -> None:
        super().__init__(detail)
        self.log_index = log_index


class SourceTimedOut(SourceFailed):
    """The source did not answer in time."""

    code = "source-timeout"
    title = "The data source did not answer in time"


class DatabaseUnavailable(BrokerError):
    """The database cannot be reached (restarting, or locked too long); the caller may retry."""

    code = "database-unavailable"
    title = "Temporarily unavailable"
    retry_after_seconds = 5

    @property
    def headers(self) -> dict[str, str]:
        """RFC 9110 Retry-After: when asking again is likely to work."""
        return {"Retry-After": str(self.retry_after_seconds)}
