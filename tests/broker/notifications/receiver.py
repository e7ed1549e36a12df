"""A consumer's webhook receiver over real HTTP, as a consumer would write one.

It answers with scripted status codes, records every request, and verifies each notification
against the broker's published JWKS with joserfc, independently of the broker's own code.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from starlette.concurrency import run_in_threadpool

from broker.demo.stack import Served

ALGORITHM = "Ed25519"


@dataclass
class Received:
    """One request as the receiver saw it, and what verifying it found."""

    at: float
    status: int
    content_type: str
    body: str
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Receiver:
    """POST /hook: answers `script` in turn (then 200), sleeping `delay` s before each answer."""

    def __init__(self, *, script: list[int] | None = None, delay: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay = delay
        self.brokers: list[str] = []  # the broker URLs (issuers) trusted
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        app = FastAPI()
        app.add_api_route("/hook", self._hook, methods=["POST"])
        self.app = app
        self.served: Served | None = None

    def serve(self, port: int | None = None) -> Receiver:
        """Start serving on `port` (a free one if None)."""
        self.served = Served(self.app, port).start()
        return self

    @property
    def url(self) -> str:
        """The webhook URL to register."""
        assert self.served is not None
        return f"{self.served.url}/hook"

    def stop(self) -> None:
        """Stop serving."""
        if self.served is not None:
            self.served.stop()

    def verified(self) -> list[Received]:
        """The requests whose notification verified."""
        with self._lock:
            return [r for r in self.requests if r.error is None]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until `count` requests have arrived; all of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.requests)} of {count} notifications arrived in time")

    async def _hook(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = await request.body()
        with self._lock:
            status = self.script.pop(0) if self.script else 200
        received = Received(
            at=arrived,
            status=status,
            content_type=request.headers.get("content-type", ""),
            body=body.decode("ascii", "replace"),
        )
        # In a worker thread: fetching the JWKS must not block the server's event loop.
        await run_in_threadpool(self._verify, received)
        with self._lock:
            self.requests.append(received)
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=status)

    def _verify(self, received: Received) -> None:
        try:
            # The issuer must be one we trust, and its published keys must verify the signature.
            issuer = json.loads(jws.extract_compact(received.body.encode()).payload).get("iss")
            if issuer not in self.brokers:
                raise ValueError(f"untrusted issuer {issuer!r}")
            published = httpx.get(f"{issuer}/.well-known/jwks.json", timeout=10)
            jwks = KeySet.import_key_set(published.json())
            token = jwt.decode(received.body, jwks, algorithms=[ALGORITHM])
            JWTClaimsRegistry(
                iss={"essential": True, "value": issuer},
                aud={"essential": True},
                jti={"essential": True},
                sub={"essential": True},
                iat={"essential": True},
            ).validate(token.claims)
            received.header = dict(token.header)
            received.claims = dict(token.claims)
        except (JoseError, ValueError, httpx.HTTPError) as exc:
            received.error = f"{type(exc).__name__}: {exc}"
