"""The source-side guard over real HTTP: what it admits, and every way a token is refused."""

# No `from __future__ import annotations`: the app below is built in a function, and FastAPI
# must see the local guard in each route's evaluated annotation.

import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from connectors.guard import SourceGrant, SourceGuard
from tests.connectors.support import FHIR_AUDIENCE, TokenIssuer, served


def guarded_app(issuer: TokenIssuer, **options: Any) -> FastAPI:
    """A source with one generic route and one route fixed to lab results."""
    guard = SourceGuard(
        issuer=issuer.url, audience=FHIR_AUDIENCE, jwks_url=issuer.jwks_url, **options
    )
    app = FastAPI()
    guard.install(app)

    @app.get("/v1/clients/{subject}/{category}")
    def records(grant: Annotated[SourceGrant, Depends(guard)]) -> dict[str, Any]:
        return asdict(grant)

    @app.get("/labs")
    def labs(
        grant: Annotated[SourceGrant, Depends(guard.require("health.lab_results"))],
    ) -> dict[str, Any]:
        return asdict(grant)

    return app


@pytest.fixture(scope="module")
def source(issuer: TokenIssuer) -> Iterator[str]:
    with served(guarded_app(issuer)) as url:
        yield url


def get(url: str, token: str | None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(url, headers=headers, timeout=5)


AINO_LABS = "/v1/clients/potilas-1001/health.lab_results"


def test_a_valid_token_is_admitted_with_its_grant(source: str, issuer: TokenIssuer) -> None:
    token = issuer.mint(fields=["value", "unit"], consent_id="c-42")
    response = get(source + AINO_LABS, token)
    assert response.status_code == 200
    grant = response.json()
    assert grant["subject"] == "potilas-1001"
    assert grant["category"] == "health.lab_results"
    assert grant["fields"] == ["value", "unit"]
    assert grant["consent_id"] == "c-42"
    assert grant["purpose"] == "self_care_guidance"
    assert get(source + "/labs", token).status_code == 200


def test_a_grant_restricts_records_to_its_fields() -> None:
    grant = SourceGrant("s", "c", ("a", "b"), "c-1", "p", "j")
    assert grant.restrict({"a": 1, "b": None, "c": 3}) == {"a": 1, "b": None}
    assert grant.allows("a")
    assert not grant.allows("c")


def _long_lived(issuer: TokenIssuer) -> str:
    now = int(time.time())
    return issuer.mint(iat=now, nbf=now, exp=now + 3600)


REFUSED_401 = {
    "wrong audience": lambda i: i.mint(aud="urn:omadata:source:social-care"),
    "wrong issuer": lambda i: i.mint(iss="http://127.0.0.1:9"),
    "expired": lambda i: i.mint(
        iat=int(time.time()) - 180, nbf=int(time.time()) - 180, exp=int(time.time()) - 120
    ),
    "not yet valid": lambda i: i.mint(nbf=int(time.time()) + 120, exp=int(time.time()) + 180),
    "alg none": lambda i: i.unsigned(),
    "HS256 keyed with the public key": lambda i: i.hmac_with_public_key(),
    "unknown kid": lambda i: i.mint(key=TokenIssuer.new_key("not-published")),
    "published kid, another key": lambda i: i.mint(key=TokenIssuer.new_key(i.key.kid)),
    "no kid": lambda i: i.mint(header={"kid": None}),
    "typ JWT": lambda i: i.mint(header={"typ": "JWT"}),
    "no typ": lambda i: i.mint(header={"typ": None}),
    "tampered payload": lambda i: _tamper(i.mint()),
    "another client": lambda i: i.mint(client_id="selfcare-app"),
    "no consent_id": lambda i: i.mint(consent_id=None),
    "no fields": lambda i: i.mint(fields=None),
    "fields not a list": lambda i: i.mint(fields="value"),
    "fields empty": lambda i: i.mint(fields=[]),
    "fields not text": lambda i: i.mint(fields=["value", 3]),
    "subject not text": lambda i: i.mint(sub=1001),
    "no purpose": lambda i: i.mint(purpose=None),
    "no jti": lambda i: i.mint(jti=None),
    "no exp": lambda i: i.mint(exp=None),
    "lives an hour": _long_lived,
    "garbage": lambda i: "not.a.token",
    "two segments": lambda i: "abc.def",
    "too long": lambda i: "a" * 9000,
}


def _tamper(token: str) -> str:
    head, payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return f"{head}.{flipped}.{signature}"


@pytest.mark.parametrize("case", sorted(REFUSED_401))
def test_an_invalid_token_is_refused_with_401(source: str, issuer: TokenIssuer, case: str) -> None:
    response = get(source + AINO_LABS, REFUSED_401[case](issuer))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_no_token_is_refused_without_an_error_code(source: str) -> None:
    response = get(source + AINO_LABS, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="omadata-source"'
    assert response.json()["type"] == "/problems/no-token"
    basic = httpx.get(source + AINO_LABS, headers={"Authorization": "Basic dTpw"}, timeout=5)
    assert basic.status_code == 401


REFUSED_403 = {
    "another category in the path": (AINO_LABS.replace("lab_results", "medications"), {}),
    "another subject in the path": (AINO_LABS.replace("1001", "1002"), {}),
    "a route fixed to another category": ("/labs", {"category": "health.medications"}),
    "no source:read scope": (AINO_LABS, {"scope": "openid"}),
}


@pytest.mark.parametrize("case", sorted(REFUSED_403))
def test_a_valid_token_for_something_else_is_refused_with_403(
    source: str, issuer: TokenIssuer, case: str
) -> None:
    path, claims = REFUSED_403[case]
    response = get(source + path, issuer.mint(**claims))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "insufficient_scope" in response.headers["www-authenticate"]


def test_a_rotated_key_is_fetched_once_and_then_cached() -> None:
    issuer = TokenIssuer()
    try:
        with served(guarded_app(issuer, jwks_min_refresh=0)) as url:
            assert get(url + AINO_LABS, issuer.mint()).status_code == 200
            assert get(url + AINO_LABS, issuer.mint()).status_code == 200
            assert issuer.jwks_requests == 1
            rotated = TokenIssuer.new_key("test-key-2")
            issuer.published.append(rotated)
            assert get(url + AINO_LABS, issuer.mint(key=rotated)).status_code == 200
            assert issuer.jwks_requests == 2
    finally:
        issuer.close()


def test_unknown_kids_do_not_make_the_guard_hammer_the_jwks(
    source: str, issuer: TokenIssuer
) -> None:
    assert get(source + AINO_LABS, issuer.mint()).status_code == 200
    before = issuer.jwks_requests
    for n in range(5):
        token = issuer.mint(key=TokenIssuer.new_key(f"random-{n}"))
        assert get(source + AINO_LABS, token).status_code == 401
    assert issuer.jwks_requests == before


def test_keys_unavailable_is_503_and_known_keys_survive_an_outage() -> None:
    issuer = TokenIssuer()
    try:
        issuer.jwks_broken = True
        with served(guarded_app(issuer, jwks_min_refresh=0)) as url:
            response = get(url + AINO_LABS, issuer.mint())
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            issuer.jwks_broken = False
            assert get(url + AINO_LABS, issuer.mint()).status_code == 200
            issuer.jwks_broken = True
            other = TokenIssuer.new_key("test-key-3")
            assert get(url + AINO_LABS, issuer.mint(key=other)).status_code == 401
            assert get(url + AINO_LABS, issuer.mint()).status_code == 200
    finally:
        issuer.close()
