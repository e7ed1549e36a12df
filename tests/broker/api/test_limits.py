"""Request limits: bodies over the cap get 413, sign-ins and OAuth requests over a rate get 429."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from broker.api import create_app
from broker.api.throttle import client_address, trusted_networks
from broker.demo.browser import forms_of
from broker.oauth import clients
from broker.oauth.endpoints import claimed_client_id
from broker.people.credentials import set_password
from broker.ratelimit import Limiter, RateLimits
from broker.settings import Settings
from broker.storage import transaction
from tests.conftest import LiveBroker

# In memory: one database engine is enough for the tests that need a broker.
SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

PASSWORD = "correct horse battery staple"


@contextmanager
def served(app: Any, *addresses: str) -> Iterator[list[TestClient]]:
    """Test clients calling from `addresses`; the app's lifespan runs once, with the first."""
    with TestClient(app, client=(addresses[0], 40000)) as first:
        yield [first, *(TestClient(app, client=(a, 40000)) for a in addresses[1:])]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the limiter -----------------------------------------------------------------------------


def test_a_bucket_refuses_when_empty_and_refills_evenly() -> None:
    clock = Clock()
    limiter = Limiter(capacity=3, period=60, clock=clock)
    for _ in range(3):
        assert limiter.wait("a") == 0
        limiter.spend("a")
    assert limiter.wait("a") == pytest.approx(20)
    assert limiter.wait("b") == 0, "another key has its own bucket"
    clock.now += 19.9
    assert limiter.wait("a") > 0
    clock.now += 0.1
    assert limiter.wait("a") == 0


def test_failures_can_cost_more_and_push_the_wait_further() -> None:
    clock = Clock()
    limiter = Limiter(capacity=2, period=60, clock=clock)
    limiter.spend("a", cost=100)  # floored at minus the capacity
    assert limiter.wait("a") == pytest.approx(90)


def test_a_zero_capacity_means_no_limit() -> None:
    limiter = Limiter(capacity=0, period=60)
    for _ in range(10):
        limiter.spend("a")
    assert limiter.wait("a") == 0
    assert len(limiter) == 0


def test_memory_is_bounded_by_dropping_the_least_recently_used_keys() -> None:
    limiter = Limiter(capacity=1, period=60, clock=Clock(), max_keys=3)
    for key in ("a", "b", "c", "d", "e"):
        limiter.spend(key)
    assert len(limiter) == 3
    assert limiter.wait("a") == 0, "a dropped key starts again with a full bucket"
    assert limiter.wait("e") > 0


def test_spending_from_many_threads_loses_nothing() -> None:
    limiter = Limiter(capacity=10_000, period=3600, clock=Clock())

    def spend() -> None:
        for _ in range(500):
            limiter.spend("shared")

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.wait("shared") == 0
    limiter.spend("shared", cost=5999)
    assert limiter.wait("shared") == 0
    limiter.spend("shared")
    assert limiter.wait("shared") > 0, "exactly 4000 + 6000 tokens were spent"


# --- who is asking ---------------------------------------------------------------------------


def _scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


def test_x_forwarded_for_counts_only_from_a_trusted_proxy() -> None:
    proxies = trusted_networks(["10.0.0.0/8", "::1"])
    assert client_address(_scope("198.51.100.4", "203.0.113.9"), []) == "198.51.100.4"
    assert client_address(_scope("198.51.100.4", "203.0.113.9"), proxies) == "198.51.100.4"
    assert client_address(_scope("10.1.2.3", "203.0.113.9"), proxies) == "203.0.113.9"
    # A client may send its own X-Forwarded-For; only the proxies' own additions are believed.
    assert client_address(_scope("10.1.2.3", "1.1.1.1, 203.0.113.9, 10.9.9.9"), proxies) == (
        "203.0.113.9"
    )
    assert client_address(_scope("10.1.2.3"), proxies) == "10.1.2.3"
    with pytest.raises(ValueError, match="does not appear to be"):
        trusted_networks(["proxy.example"])


def test_the_claimed_client_is_read_from_basic_form_or_assertion() -> None:
    basic = "Basic " + base64.b64encode(b"client%3Aone:secret").decode()
    assert claimed_client_id(basic, {}) == "client:one"
    assert claimed_client_id("Basic !!!", {}) is None
    assert claimed_client_id(None, {"client_id": "two"}) == "two"
    claims = base64.urlsafe_b64encode(json.dumps({"iss": "three"}).encode()).decode().rstrip("=")
    assert claimed_client_id(None, {"client_assertion": f"e30.{claims}.sig"}) == "three"
    assert claimed_client_id(None, {"client_assertion": "e30.bm90IGpzb24.sig"}) is None
    assert claimed_client_id(None, {}) is None


# --- bodies ------------------------------------------------------------------------------------


@pytest.fixture
def live(engine: Engine, tmp_path: Path) -> Iterator[LiveBroker]:
    with LiveBroker(engine, tmp_path / "broker", max_body_bytes=4096, max_form_bytes=2048) as b:
        yield b


def _raw(live: LiveBroker, head: str) -> bytes:
    """Send only a request head (no body at all) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=15) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@SQLITE
def test_a_body_announced_too_large_is_refused_before_it_is_sent(live: LiveBroker) -> None:
    # The body never comes: only an answer given without reading it can arrive.
    answer = _raw(
        live,
        "POST /oauth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 50000000\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["type"] == "/problems/payload-too-large"
    assert problem["status"] == 413


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 1000):
        yield b"x" * 1000


@SQLITE
def test_a_streamed_body_is_counted_and_refused_once_over(live: LiveBroker) -> None:
    response = httpx.post(
        f"{live.url}/oauth/register",
        content=_chunks(20_000),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers  # it really was chunked
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    small = httpx.post(
        f"{live.url}/oauth/register",
        content=iter([b'{"redirect_uris":', b' ["https://a.example/cb"]}']),
        headers={"Content-Type": "application/json"},
    )
    assert small.status_code == 401, "a small streamed body reaches the route (no token: 401)"


@SQLITE
def test_forms_have_a_smaller_cap_and_browsers_a_readable_page(live: LiveBroker) -> None:
    form = {"username": "aino", "password": "x" * 3000, "csrf": "c"}
    api = httpx.post(f"{live.url}/oauth/token", data=form)
    assert api.status_code == 413
    assert api.json()["detail"] == "The request body is larger than 2048 bytes."
    page = httpx.post(
        f"{live.url}/signin",
        data=form,
        headers={"Accept": "text/html", "Accept-Language": "fi"},
    )
    assert page.status_code == 413
    assert page.headers["content-type"].startswith("text/html")
    assert "Lomake on liian suuri." in page.text
    json_under_cap = httpx.post(
        f"{live.url}/oauth/register", json={"client_name": "y" * 3000}, timeout=15
    )
    assert json_under_cap.status_code == 401, "JSON bodies up to max_body_bytes pass"


@SQLITE
def test_a_form_the_routes_refuse_gets_a_readable_page_and_the_api_a_problem(
    live: LiveBroker,
) -> None:
    form = {"username": "a" * 201, "password": "x", "csrf": "c"}  # a user name over its 200
    page = httpx.post(
        f"{live.url}/signin",
        data=form,
        headers={"Accept": "text/html", "Accept-Language": "sv"},
    )
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert "Kontrollera det du skrev." in page.text
    api = httpx.post(f"{live.url}/signin", data=form)
    assert api.status_code == 422
    assert api.headers["content-type"] == "application/problem+json"


# --- rates -------------------------------------------------------------------------------------


def _app(engine: Engine, tmp_path: Path, clock: Clock, **limits: Any) -> Any:
    settings = Settings(data_dir=tmp_path / "broker", **limits)
    app = create_app(settings, engine=engine)
    app.state.runtime.limits = RateLimits.from_settings(settings, clock=clock)
    return app


def _sign_in(client: TestClient, username: str, password: str) -> httpx2.Response:
    page = client.get("/signin")
    form = forms_of(page.text)[0]
    data = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("type") == "hidden"}
    data.update(username=username, password=password)
    return client.post(
        "/signin", data=data, headers={"Accept-Language": "sv"}, follow_redirects=False
    )


@SQLITE
def test_failed_sign_ins_are_limited_per_address_and_per_user_name(
    demo: Engine, tmp_path: Path
) -> None:
    with transaction(demo) as session:
        for person in ("aino-virtanen", "karin-lindqvist"):
            set_password(session, person, PASSWORD, datetime.now(UTC))
    clock = Clock()
    app = _app(demo, tmp_path, clock, rate_failures_per_hour=3, rate_signin_per_minute=100)
    with served(app, "203.0.113.7", "198.51.100.8") as (first, second):
        assert _sign_in(first, "aino-virtanen", PASSWORD).status_code == 303, "successes are free"
        for _ in range(3):
            assert _sign_in(first, "Aino-Virtanen", "guess").status_code == 401
        refused = _sign_in(first, "aino-virtanen", PASSWORD)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) == 1200  # one failure back per 20 minutes
        assert "För många inloggningsförsök." in refused.text
        # Another address may not go on guessing Aino's password either ...
        assert _sign_in(second, "aino-virtanen", PASSWORD).status_code == 429
        # ... but it may sign in as someone else; the first address may not, at all.
        assert _sign_in(second, "karin-lindqvist", PASSWORD).status_code == 303
        assert _sign_in(first, "karin-lindqvist", PASSWORD).status_code == 429
        clock.now += 1200
        assert _sign_in(first, "aino-virtanen", PASSWORD).status_code == 303


@SQLITE
def test_sign_in_requests_are_limited_per_address(demo: Engine, tmp_path: Path) -> None:
    clock = Clock()
    app = _app(demo, tmp_path, clock, rate_signin_per_minute=2)
    with served(app, "203.0.113.7", "198.51.100.8") as (first, second):
        assert _sign_in(first, "nobody", "x").status_code == 401
        assert _sign_in(first, "nobody", "x").status_code == 401
        refused = _sign_in(first, "nobody", "x")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert _sign_in(second, "nobody", "x").status_code == 401
        oidc = first.get("/signin/oidc", follow_redirects=False)
        assert oidc.status_code == 429, "the external sign-in's start shares the bucket"
        clock.now += 30
        assert _sign_in(first, "nobody", "x").status_code == 401


def _token(client: TestClient, client_id: str, secret: str) -> httpx2.Response:
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "audit:read"},
        auth=(client_id, secret),
    )


@SQLITE
def test_the_token_endpoint_limits_each_client_and_strangers_cannot_drain_it(
    demo: Engine, tmp_path: Path
) -> None:
    clock = Clock()
    app = _app(demo, tmp_path, clock, rate_client_per_minute=2, rate_failures_per_hour=100)
    with transaction(demo) as session:
        auditor = clients.register_auditor(session, name="Auditor", now=datetime.now(UTC))
        other = clients.register_auditor(session, name="Other", now=datetime.now(UTC))
    assert auditor.client_secret is not None
    assert other.client_secret is not None
    with served(app, "203.0.113.7", "198.51.100.66") as (client, stranger):
        for _ in range(5):
            assert _token(stranger, auditor.client_id, "wrong").status_code == 401
        assert _token(client, auditor.client_id, auditor.client_secret).status_code == 200
        assert _token(client, auditor.client_id, auditor.client_secret).status_code == 200
        refused = _token(client, auditor.client_id, auditor.client_secret)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["type"] == "/problems/too-many-requests"
        assert _token(client, other.client_id, other.client_secret).status_code == 200
        clock.now += 30
        assert _token(client, auditor.client_id, auditor.client_secret).status_code == 200


@SQLITE
def test_failed_client_authentication_is_limited_per_address(demo: Engine, tmp_path: Path) -> None:
    app = _app(demo, tmp_path, Clock(), rate_failures_per_hour=2)
    with served(app, "203.0.113.7", "198.51.100.8") as (guesser, other):
        for _ in range(2):
            assert _token(guesser, "some-client", "guess").status_code == 401
        assert _token(guesser, "some-client", "guess").status_code == 429
        assert guesser.post("/oauth/introspect", data={"token": "t"}).status_code == 429
        assert _token(other, "some-client", "guess").status_code == 401


@SQLITE
def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(
    demo: Engine, tmp_path: Path
) -> None:
    app = _app(demo, tmp_path, Clock(), rate_oauth_per_minute=1, trusted_proxies=["192.0.2.1"])
    with served(app, "192.0.2.1", "198.51.100.8") as (proxy, direct):
        first = {"X-Forwarded-For": "203.0.113.1"}
        assert proxy.post("/oauth/revoke", data={}, headers=first).status_code != 429
        assert proxy.post("/oauth/revoke", data={}, headers=first).status_code == 429
        second = {"X-Forwarded-For": "203.0.113.2"}
        assert proxy.post("/oauth/revoke", data={}, headers=second).status_code != 429
        # An untrusted peer's header is ignored: its own address is counted.
        assert direct.post("/oauth/revoke", data={}, headers=first).status_code != 429
        assert direct.post("/oauth/revoke", data={}, headers=second).status_code == 429
