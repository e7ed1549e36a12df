"""The consent flow driven by OAuth client libraries that are not ours, over real HTTP.

Authlib's `OAuth2Client` (on httpx) and `requests-oauthlib` (on requests) each run the whole
authorization code flow with PKCE S256; the access tokens are then checked with joserfc
against the JWKS the metadata points to, as a resource server elsewhere would, never with the
broker's own verification code. The claims are RFC 9068's, and `sub` is pairwise: one person
has one `sub` per consumer, and different consumers cannot match theirs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwt import JWTClaimsRegistry, Token
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from tests.broker.oauth.flows import (
    LABS,
    REDIRECT_URI,
    Browser,
    Consumer,
    code_flow,
    give_passwords,
    published_jwks,
    redirect_params,
    register_consumer,
)
from tests.conftest import LiveBroker

RESEARCH = [{"type": "omadata_release", "agreement": "research-diagnoses"}]


@pytest.fixture
def consumer(live: LiveBroker) -> Consumer:
    give_passwords(live, "aino-virtanen", "karin-lindqvist")
    return register_consumer(live)


@pytest.fixture
def browser(live: LiveBroker) -> Iterator[Browser]:
    b = Browser(live)
    yield b
    b.close()


def verify(live: LiveBroker, access_token: str, client_id: str) -> Token:
    """RFC 9068 §4 validation with joserfc and the published keys only."""
    meta = httpx.get(f"{live.url}/.well-known/oauth-authorization-server").json()
    decoded = jwt.decode(access_token, published_jwks(live), algorithms=["Ed25519"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["kid"] in {k["kid"] for k in published_jwks(live).as_dict()["keys"]}
    JWTClaimsRegistry(
        now=int(time.time()),
        leeway=5,
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": f"{live.url}/v1"},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        jti={"essential": True},
        client_id={"essential": True, "value": client_id},
    ).validate(decoded.claims)
    assert decoded.claims["exp"] - decoded.claims["iat"] == 300
    return decoded


def _check_release_token(live: LiveBroker, token: dict[str, Any], client_id: str) -> Token:
    decoded = verify(live, token["access_token"], client_id)
    claims = decoded.claims
    assert "scope" in claims
    detail = claims["authorization_details"][0]
    assert detail["type"] == "omadata_release"
    assert detail["agreement"] == "selfcare-labs-medications"
    assert detail["consumer"] == "selfcare-app"
    assert detail["source"] == "patient-record"
    assert "health.lab_results.value" in detail["fields"]
    assert claims["consent_id"] == detail["consent_id"]
    assert claims["sub"] != "aino-virtanen"
    assert "aino" not in json.dumps(claims)
    assert token["authorization_details"] == claims["authorization_details"]
    return decoded


def test_authlib_oauth2_client_runs_the_flow(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = code_flow(consumer, browser)
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 300
    _check_release_token(live, token, consumer.client_id)
    # Authlib's client refreshes too, and the new access token is as valid as the first.
    from authlib.integrations.httpx_client import OAuth2Client

    with OAuth2Client(
        consumer.client_id,
        consumer.client_secret,
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        newer = oauth.refresh_token(f"{live.url}/oauth/token", refresh_token=token["refresh_token"])
    assert newer["refresh_token"] != token["refresh_token"]
    again = _check_release_token(live, newer, consumer.client_id)
    assert (
        again.claims["sub"] == verify(live, token["access_token"], consumer.client_id).claims["sub"]
    )


def test_requests_oauthlib_runs_the_flow(
    live: LiveBroker, consumer: Consumer, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oauthlib refuses plain http unless told; the broker here is on loopback.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    session = OAuth2Session(consumer.client_id, redirect_uri=REDIRECT_URI, pkce="S256")
    url, state = session.authorization_url(
        f"{live.url}/oauth/authorize", authorization_details=json.dumps(LABS)
    )
    page = browser.open_consent(url, "aino-virtanen")
    assert page.status_code == 200, page.text[:300]
    answered = browser.answer(page, "approve")
    assert redirect_params(answered)["state"] == state
    token = session.fetch_token(
        f"{live.url}/oauth/token",
        authorization_response=answered.headers["location"],
        auth=HTTPBasicAuth(consumer.client_id, consumer.client_secret),
    )
    assert token["token_type"] == "Bearer"
    _check_release_token(live, dict(token), consumer.client_id)
    newer = session.refresh_token(
        f"{live.url}/oauth/token",
        refresh_token=token["refresh_token"],
        auth=HTTPBasicAuth(consumer.client_id, consumer.client_secret),
    )
    assert newer["refresh_token"] != token["refresh_token"]
    _check_release_token(live, dict(newer), consumer.client_id)


def test_requests_oauthlib_hears_access_denied_when_the_person_refuses(
    live: LiveBroker, consumer: Consumer, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oauthlib.oauth2.rfc6749.errors import AccessDeniedError

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    session = OAuth2Session(consumer.client_id, redirect_uri=REDIRECT_URI, pkce="S256")
    url, _ = session.authorization_url(
        f"{live.url}/oauth/authorize", authorization_details=json.dumps(LABS)
    )
    answered = browser.answer(browser.open_consent(url, "aino-virtanen"), "refuse")
    with pytest.raises(AccessDeniedError):
        session.fetch_token(
            f"{live.url}/oauth/token",
            authorization_response=answered.headers["location"],
            auth=HTTPBasicAuth(consumer.client_id, consumer.client_secret),
        )


def test_sub_is_pairwise_per_consumer(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    research = register_consumer(live, "research-register")
    second_client = register_consumer(live)  # another client of the same consumer service

    def sub(of: Consumer, user: str, details: list[dict[str, Any]]) -> str:
        token = code_flow(of, browser, user, details)
        return str(verify(live, token["access_token"], of.client_id).claims["sub"])

    at_selfcare = sub(consumer, "aino-virtanen", LABS)
    at_research = sub(research, "aino-virtanen", RESEARCH)
    assert at_selfcare != at_research  # two consumers cannot correlate Aino by sub
    assert sub(consumer, "aino-virtanen", LABS) == at_selfcare  # the same consumer, again
    assert sub(second_client, "aino-virtanen", LABS) == at_selfcare  # the same service
    browser.client.cookies.clear()
    karin = sub(consumer, "karin-lindqvist", LABS)
    assert karin not in {at_selfcare, at_research}
