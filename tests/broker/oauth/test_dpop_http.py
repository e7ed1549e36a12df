"""DPoP (RFC 9449) end to end over real HTTP: proofs made with joserfc, as a client would.

A client that sends a proof to the token endpoint gets a `DPoP` token bound to its key
(`cnf.jkt`); the resource then refuses that token as a plain Bearer token and accepts it only
with a fresh proof by the same key, over the request's method and URI, carrying the token's
hash. Refresh tokens issued with a proof stay bound to that key.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey

from tests.broker.oauth.flows import (
    LABS,
    REDIRECT_URI,
    Browser,
    Consumer,
    b64url,
    give_passwords,
    new_verifier,
    published_jwks,
    redirect_params,
    register_auditor,
    register_consumer,
)
from tests.conftest import LiveBroker

ENTRIES = "/v1/log/entries"


def _es256() -> ECKey:
    return ECKey.generate_key("P-256")


def proof(
    key: Key,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    alg: str = "ES256",
    **changes: Any,
) -> str:
    """A DPoP proof JWT (RFC 9449 §4.2) signed by `key`, whose public half is in its header."""
    claims: dict[str, Any] = {
        "jti": uuid.uuid4().hex,
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
    }
    if access_token is not None:
        claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
    claims.update(changes)
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key, [alg])


def _auditor_token(live: LiveBroker, key: Key | None, alg: str = "ES256") -> httpx.Response:
    client_id, secret = register_auditor(live)
    headers = {}
    if key is not None:
        headers["DPoP"] = proof(key, "POST", f"{live.url}/oauth/token", alg=alg)
    return httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "audit:read"},
        auth=(client_id, secret),
        headers=headers,
    )


def _entries(live: LiveBroker, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{live.url}{ENTRIES}", params={"start": 0, "end": 10}, headers=headers)


def _dpop(live: LiveBroker, key: Key, token: str, **changes: Any) -> dict[str, str]:
    return {
        "Authorization": f"DPoP {token}",
        "DPoP": proof(key, "GET", f"{live.url}{ENTRIES}", access_token=token, **changes),
    }


def _invalid(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert "error=" in challenge, challenge
    assert "invalid_token" in challenge or "invalid_dpop_proof" in challenge, challenge


@pytest.mark.parametrize(("make", "alg"), [(_es256, "ES256"), (OKPKey.generate_key, "Ed25519")])
def test_a_proof_at_the_token_endpoint_binds_the_token_to_the_key(
    live: LiveBroker, make: Any, alg: str
) -> None:
    key = make()
    response = _auditor_token(live, key, alg)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    claims = jwt.decode(body["access_token"], published_jwks(live), algorithms=["Ed25519"]).claims
    assert claims["cnf"] == {"jkt": key.thumbprint()}
    token = body["access_token"]
    # As a plain Bearer token it is refused (RFC 9449 §7.2) ...
    _invalid(_entries(live, {"Authorization": f"Bearer {token}"}))
    # ... and under the DPoP scheme with a fresh proof by the same key it is accepted, twice.
    for _ in range(2):
        accepted = _entries(live, _dpop(live, key, token, alg=alg))
        assert accepted.status_code == 200, accepted.text


def test_a_token_without_a_proof_stays_a_bearer_token(live: LiveBroker) -> None:
    response = _auditor_token(live, None)
    body = response.json()
    assert body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], published_jwks(live), algorithms=["Ed25519"]).claims
    assert "cnf" not in claims
    token = body["access_token"]
    assert _entries(live, {"Authorization": f"Bearer {token}"}).status_code == 200
    # An unbound token under the DPoP scheme is refused, even with a valid proof.
    _invalid(_entries(live, _dpop(live, _es256(), token)))


def test_the_resource_refuses_every_proof_that_does_not_fit(live: LiveBroker) -> None:
    key = _es256()
    token = _auditor_token(live, key).json()["access_token"]
    url = f"{live.url}{ENTRIES}"
    replayed = _dpop(live, key, token)
    assert _entries(live, replayed).status_code == 200
    refusals = {
        "replayed": replayed,
        "no proof": {"Authorization": f"DPoP {token}"},
        "another key": _dpop(live, _es256(), token),
        "no ath": {
            "Authorization": f"DPoP {token}",
            "DPoP": proof(key, "GET", url),
        },
        "ath of another token": {
            "Authorization": f"DPoP {token}",
            "DPoP": proof(key, "GET", url, access_token=token + "x"),
        },
        "another method": {
            "Authorization": f"DPoP {token}",
            "DPoP": proof(key, "POST", url, access_token=token),
        },
        "another URI": {
            "Authorization": f"DPoP {token}",
            "DPoP": proof(key, "GET", f"{live.url}/v1/audit/counts", access_token=token),
        },
        "too old": _dpop(live, key, token, iat=int(time.time()) - 600),
        "from the future": _dpop(live, key, token, iat=int(time.time()) + 600),
        "not a JWT": {"Authorization": f"DPoP {token}", "DPoP": "not-a-proof"},
    }
    wrong = {}
    for name, headers in refusals.items():
        response = _entries(live, headers)
        challenge = response.headers.get("www-authenticate", "")
        # RFC 9449 §7.1: the challenge is a DPoP one, naming the error and the algorithms.
        if response.status_code != 401 or not (
            challenge.startswith("DPoP ") and "error=" in challenge and "algs=" in challenge
        ):
            wrong[name] = (response.status_code, response.headers.get("www-authenticate"))
    assert wrong == {}


def test_a_bad_proof_at_the_token_endpoint_is_invalid_dpop_proof(live: LiveBroker) -> None:
    client_id, secret = register_auditor(live)
    key = _es256()
    for bad in (
        proof(key, "POST", f"{live.url}/oauth/introspect"),
        proof(key, "GET", f"{live.url}/oauth/token"),
        proof(key, "POST", f"{live.url}/oauth/token", iat=int(time.time()) - 3600),
        "garbage",
    ):
        response = httpx.post(
            f"{live.url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "audit:read"},
            auth=(client_id, secret),
            headers={"DPoP": bad},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_dpop_proof"


@pytest.fixture
def browser(live: LiveBroker) -> Iterator[Browser]:
    b = Browser(live)
    yield b
    b.close()


def test_a_consumer_gets_dpop_bound_tokens_through_the_code_flow(
    live: LiveBroker, browser: Browser
) -> None:
    give_passwords(live, "aino-virtanen")
    consumer: Consumer = register_consumer(live)
    auth = (consumer.client_id, consumer.client_secret)
    key = _es256()
    verifier = new_verifier()
    url, _ = consumer.authorization_url(LABS, verifier)
    answered = browser.answer(browser.open_consent(url, "aino-virtanen"), "approve")
    token_url = f"{live.url}/oauth/token"
    response = httpx.post(
        token_url,
        data={
            "grant_type": "authorization_code",
            "code": redirect_params(answered)["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=auth,
        headers={"DPoP": proof(key, "POST", token_url)},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    claims = jwt.decode(body["access_token"], published_jwks(live), algorithms=["Ed25519"]).claims
    assert claims["cnf"]["jkt"] == key.thumbprint()
    assert claims["authorization_details"][0]["agreement"] == "selfcare-labs-medications"

    def refresh(refresh_token: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            token_url,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=auth,
            headers=headers,
        )

    # The refresh token is bound too: no proof, or a proof by another key, is invalid_grant.
    for headers in ({}, {"DPoP": proof(_es256(), "POST", token_url)}):
        refused = refresh(body["refresh_token"], headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_grant"
    renewed = refresh(body["refresh_token"], {"DPoP": proof(key, "POST", token_url)})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["token_type"] == "DPoP"
    again = jwt.decode(
        renewed.json()["access_token"], published_jwks(live), algorithms=["Ed25519"]
    ).claims
    assert again["cnf"]["jkt"] == key.thumbprint()
