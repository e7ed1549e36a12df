"""Rate limits on the sign-in and OAuth endpoints, applied before any route runs.

Limited are the local password sign-in (POST /signin), the external sign-in's start and
callback (GET /signin/oidc, /signin/oidc/callback) and the OAuth endpoints (POST /oauth/token,
/introspect, /revoke, /register). Each request spends one token of its address's bucket; an
answer of 401 (a wrong password, a client that failed to authenticate) also spends from the
much smaller failure buckets of the address and, at sign-in, of the user name it named, so
guessing passwords stops long before ordinary use would. At the OAuth endpoints a client that
did authenticate spends from its own bucket, which a stranger naming its client id cannot
drain. A refused request gets 429 with Retry-After: problem+json at the OAuth endpoints, a page
in the person's language at sign-in. The counters are per process (see broker.ratelimit).
Someone guessing may pause password sign-in for a user name they target (never the external
sign-in): the price of stopping guesses spread over many addresses.

The address is the TCP peer; X-Forwarded-For is believed only from the proxies listed in
BROKER_TRUSTED_PROXIES, read from the right, up to the first address that is not one of them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.api import problems
from broker.api.body_limit import replaying
from broker.errors import TooManyRequests
from broker.oauth.endpoints import claimed_client_id
from broker.ratelimit import Limiter, RateLimits, retry_after
from broker.web.signin import too_many_attempts

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_OAUTH = frozenset({"/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/register"})
_OIDC = frozenset({"/signin/oidc", "/signin/oidc/callback"})
_FORM = "application/x-www-form-urlencoded"

_log = logging.getLogger(__name__)


def trusted_networks(proxies: Sequence[str]) -> list[Network]:
    """The networks of BROKER_TRUSTED_PROXIES; ValueError for an entry that is not one."""
    return [ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip()]


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(scope: Scope, networks: Sequence[Network]) -> str:
    """The caller's address: the TCP peer, or, behind a trusted proxy, the nearest address in
    X-Forwarded-For that is not a trusted proxy."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not networks or not _trusted(peer, networks):
        return peer
    forwarded = ",".join(Headers(scope=scope).getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (BodyLimit, outside, bounds it); None if the client went away."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class Throttle:
    """ASGI middleware applying the process's RateLimits (`app.state.runtime.limits`)."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = ()) -> None:
        self.app = app
        self.networks = trusted_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse with 429 a request over a limit; else pass it on and count its outcome."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "POST" and path == "/signin":
            area = "signin"
        elif method == "GET" and path in _OIDC:
            area = "oidc"
        elif method == "POST" and path in _OAUTH:
            area = "oauth"
        else:
            await self.app(scope, receive, send)
            return
        limits: RateLimits = scope["app"].state.runtime.limits
        address = client_address(scope, self.networks)
        principal = None
        if area != "oidc":
            body = await _read_body(receive)
            if body is None:
                return
            receive = replaying(body, receive)
            principal = self._principal(area, scope, body)
        attempts = limits.oauth if area == "oauth" else limits.signin
        checks: list[tuple[Limiter, str]] = [(attempts, address)]
        if area != "oidc":
            checks.append((limits.failures, f"address:{address}"))
        if principal is not None:
            # A client's secret or key cannot be guessed, so only user names get a failure
            # bucket of their own; strangers naming a client id must not lock the client out.
            checks.append((limits.client if area == "oauth" else limits.failures, principal))
        wait = max(limiter.wait(key) for limiter, key in checks)
        if wait > 0:
            # Neither the address nor the name tried goes into the log: both point to a person.
            _log.warning("rate limit reached at %s", path)
            await self._refuse(area, scope, retry_after(wait))(scope, receive, send)
            return
        attempts.spend(address)
        status = 0

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watching)
        if status == 401:
            limits.failures.spend(f"address:{address}")
            if area == "signin" and principal is not None:
                limits.failures.spend(principal)
        elif area == "oauth" and principal is not None:
            limits.client.spend(principal)

    @staticmethod
    def _principal(area: str, scope: Scope, body: bytes) -> str | None:
        headers = Headers(scope=scope)
        form: dict[str, str] = {}
        if headers.get("content-type", "").split(";")[0].strip().lower() == _FORM:
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if area == "signin":
            username = form.get("username", "").strip().lower()
            return f"user:{username}" if username else None
        client_id = claimed_client_id(headers.get("authorization"), form)
        return f"client:{client_id}" if client_id else None

    @staticmethod
    def _refuse(area: str, scope: Scope, seconds: int) -> ASGIApp:
        if area == "oauth":
            error = TooManyRequests(
                f"Too many requests; try again in {seconds} seconds.", retry_after=seconds
            )
            return problems.from_error(error, scope["path"])
        return too_many_attempts(Request(scope), seconds)
