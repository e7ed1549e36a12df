"""The auditor's HTTP fetch against a broker that answers without end: refused, not buffered.

A real HTTP server on loopback serves a valid page, an oversized checkpoint and an endless
entries body; the auditor stops reading at its cap and says why.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from broker.ledger.fetch import MAX_CHECKPOINT_BYTES, FetchError, HttpLogSource

CHUNK = b"[" + b" " * 65_535


class _Hostile(BaseHTTPRequestHandler):
    sent = 0  # bytes of the endless body written before the client hung up

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/v1/log/checkpoint":
            self._answer(b"x" * (MAX_CHECKPOINT_BYTES + 1))
        elif query.get("start") == ["0"]:
            page = [{"index": 0, "leaf": base64.b64encode(b"leaf").decode()}]
            self._answer(json.dumps(page).encode())
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while _Hostile.sent < 1 << 30:  # stops the server's side after 1 GiB at most
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                    _Hostile.sent += len(CHUNK)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def hostile_broker() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_within_the_cap_is_read(hostile_broker: str) -> None:
    source = HttpLogSource(hostile_broker, None, max_page_bytes=1 << 20)
    try:
        assert source.entries(0, 1) == [(0, b"leaf")]
    finally:
        source.close()


def test_an_endless_page_is_refused_at_the_cap(hostile_broker: str) -> None:
    _Hostile.sent = 0
    source = HttpLogSource(hostile_broker, None, max_page_bytes=1 << 20)
    try:
        with pytest.raises(FetchError, match="more than 1,048,576 bytes"):
            source.entries(1, 2)
    finally:
        source.close()
    # The auditor stopped reading soon after the cap (what the kernel buffers aside).
    assert _Hostile.sent < 64 << 20


def test_an_oversized_checkpoint_is_refused(hostile_broker: str) -> None:
    source = HttpLogSource(hostile_broker, None)
    try:
        with pytest.raises(FetchError, match="checkpoint answered more than"):
            source.checkpoint()
    finally:
        source.close()
