"""A cap on request bodies: 413 before the body is read, or as soon as a stream passes it.

A body announced by Content-Length over the limit is refused before any of it is read. A
chunked body (no Content-Length) is read here, counting, up to the limit and handed on only
when whole, so a route never sees part of a body that is too large. Form bodies (the pages'
forms, the OAuth endpoints) have a smaller cap than the rest. Browsers get a page in the
person's language; everyone else RFC 9457 problem+json.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.api import problems
from broker.errors import PayloadTooLarge
from broker.web.i18n import pick_language, translator
from broker.web.render import render

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class BodyLimit:
    """ASGI middleware refusing bodies over `max_body` bytes (`max_form` for forms)."""

    def __init__(self, app: ASGIApp, max_body: int, max_form: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_form = max_form

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass on a request whose body fits; answer 413 to one that does not."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        limit = min(self.max_body, self.max_form) if kind in _FORMS else self.max_body
        length = headers.get("content-length")
        if length is not None:
            # The server (h11, httptools) holds the body to its Content-Length.
            if length.strip().isdigit() and int(length) > limit:
                await _refusal(scope, limit)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if "transfer-encoding" not in headers:  # HTTP/1.1 without either has no body
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _refusal(scope, limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives `body` (already read) as one message, then `receive`'s."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _refusal(scope: Scope, limit: int) -> Response:
    request = Request(scope)
    if "text/html" in request.headers.get("accept", ""):
        language = pick_language(
            request.query_params.get("lang"), request.headers.get("accept-language")
        )
        _ = translator(language)
        page = render(
            "error.html",
            language=language,
            title="Something went wrong",
            message=_("The form is too large."),
            detail=_("Please shorten what you entered and try again."),
            status=413,
        )
        page.headers["Connection"] = "close"
        return page
    response = problems.from_error(
        PayloadTooLarge(f"The request body is larger than {limit} bytes."), scope["path"]
    )
    # The unread rest of the body would otherwise be taken for the next request.
    response.headers["Connection"] = "close"
    return response
