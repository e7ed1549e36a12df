"""Real servers on loopback for the connector tests: a token issuer with its JWKS, any ASGI app
under uvicorn, and a hostile source that misbehaves on purpose at the socket level."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import hmac
import json
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import OKPKey

from broker.demo.sources.fhir import dumps
from tests.conftest import free_port

FHIR_AUDIENCE = "urn:omadata:source:patient-record"
SOCIAL_AUDIENCE = "urn:omadata:source:social-care"


def b64(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """A stand-in for the broker's token side: Ed25519 keys, a JWKS over HTTP, source tokens."""

    def __init__(self) -> None:
        self.key = self.new_key("test-key-1")
        self.published: list[OKPKey] = [self.key]
        self.jwks_requests = 0
        self.jwks_broken = False
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.jwks_requests += 1
                if issuer.jwks_broken or self.path != "/.well-known/jwks.json":
                    self.send_error(503 if issuer.jwks_broken else 404)
                    return
                body = json.dumps({"keys": [k.as_dict(private=False) for k in issuer.published]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_url = f"{self.url}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def new_key(kid: str) -> OKPKey:
        """A fresh Ed25519 key with `kid`."""
        return OKPKey.generate_key("Ed25519", parameters={"kid": kid, "use": "sig"})

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """The claims of a valid source token for Aino's lab results, with `overrides`."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": FHIR_AUDIENCE,
            "sub": "potilas-1001",
            "client_id": "omadata-broker",
            "scope": "source:read",
            "consent_id": "c-1",
            "category": "health.lab_results",
            "fields": ["test_name", "value", "unit", "taken_at"],
            "purpose": "self_care_guidance",
            "iat": now,
            "nbf": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def mint(
        self, *, key: OKPKey | None = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A source token signed with `key` (the published key by default)."""
        key = key or self.key
        head = {"alg": "Ed25519", "typ": "at+jwt", "kid": key.kid, **(header or {})}
        head = {name: value for name, value in head.items() if value is not None}
        return jwt.encode(head, self.claims(**claims), key, algorithms=["Ed25519"])

    def unsigned(self, **claims: Any) -> str:
        """The same claims under `alg: none`, with an empty signature."""
        head = {"alg": "none", "typ": "at+jwt", "kid": self.key.kid}
        return (
            f"{b64(json.dumps(head).encode())}.{b64(json.dumps(self.claims(**claims)).encode())}."
        )

    def hmac_with_public_key(self, **claims: Any) -> str:
        """HS256 keyed with the published public key's raw bytes: the key-confusion attack."""
        head = {"alg": "HS256", "typ": "at+jwt", "kid": self.key.kid}
        signing_input = (
            f"{b64(json.dumps(head).encode())}.{b64(json.dumps(self.claims(**claims)).encode())}"
        )
        secret = base64.urlsafe_b64decode(self.key.as_dict(private=False)["x"] + "==")
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    def close(self) -> None:
        """Stop the JWKS server."""
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- a hostile source -----------------------------------------------------------------------

Behaviour = Callable[[socket.socket, str], None]


def _respond(
    sock: socket.socket,
    body: bytes,
    *,
    status: str = "200 OK",
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
    length: int | None = None,
) -> None:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines += [f"{name}: {value}" for name, value in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def json_body(document: Any) -> Behaviour:
    """Answer 200 with `document` as JSON (Decimals as exact numbers)."""
    return raw_body(dumps(document).encode())


def raw_body(body: bytes) -> Behaviour:
    """Answer 200 with `body` as it is."""
    return lambda sock, _: _respond(sock, body)


def _slow(sock: socket.socket, _: str) -> None:
    time.sleep(3)
    _respond(sock, b"[]")


def _drip(sock: socket.socket, _: str) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: 100000\r\n\r\n[")  # fmt: skip
    for _ in range(60):
        time.sleep(0.1)
        sock.sendall(b" ")


def _reset(sock: socket.socket, _: str) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _chunked_huge(sock: socket.socket, _: str) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    chunk = b"[" + b"0," * 32767 + b"0"
    try:
        for _ in range(200):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    except OSError:
        pass  # the client hung up, as it should


def _gzip_bomb(sock: socket.socket, _: str) -> None:
    body = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")
    _respond(sock, body, headers=[("Content-Encoding", "gzip")])


BEHAVIOURS: dict[str, Behaviour] = {
    "slow": _slow,
    "drip": _drip,
    "error": lambda sock, _: _respond(sock, b'{"error": "boom"}', status="500 Internal Error"),
    "unavailable": lambda sock, _: _respond(sock, b"", status="503 Service Unavailable"),
    "unauthorised": lambda sock, _: _respond(sock, b"{}", status="401 Unauthorized"),
    "forbidden": lambda sock, _: _respond(sock, b"{}", status="403 Forbidden"),
    "redirect": lambda sock, _: _respond(
        sock, b"", status="302 Found", headers=[("Location", "http://127.0.0.1:9/elsewhere")]
    ),
    "reset": _reset,
    "hangup": lambda sock, _: None,
    "truncated": lambda sock, _: _respond(sock, b'{"resourceType": "Bundle", "type": "sea'),
    "short": lambda sock, _: _respond(sock, b'{"records": [', length=5000),
    "not-json": lambda sock, _: _respond(sock, b"<html>hello</html>", content_type="text/html"),
    "nan": lambda sock, _: _respond(sock, b'{"records": [{"value": NaN}]}'),
    "huge": lambda sock, _: _respond(sock, b"[" + b"0," * (1024 * 1024) + b"0]"),
    "huge-declared": lambda sock, _: _respond(sock, b"[]", length=3 * 1024 * 1024),
    "huge-chunked": _chunked_huge,
    "gzip-bomb": _gzip_bomb,
}


class HostileSource:
    """A raw HTTP server whose behaviour is chosen by the first path segment of each request.

    `routes` adds behaviours (e.g. FHIR bundles) beside BEHAVIOURS; `requests` records the
    request heads received, so tests can see what a connector sent.
    """

    def __init__(self, routes: dict[str, Behaviour] | None = None) -> None:
        self.routes = {**BEHAVIOURS, **(routes or {})}
        self.requests: list[str] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                head = b""
                while b"\r\n\r\n" not in head:
                    data = sock.recv(65536)
                    if not data:
                        return
                    head += data
                text = head.decode("latin-1")
                owner.requests.append(text)
                target = text.split(" ", 2)[1]
                name = target.lstrip("/").split("/", 1)[0].split("?", 1)[0]
                with contextlib.suppress(OSError):  # the client may give up first
                    owner.routes.get(name, owner.routes["error"])(sock, target)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
