"""Auditors and services get tokens by client credentials, checked by independent clients."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from broker.oauth import clients
from broker.storage import transaction
from tests.conftest import LiveBroker


def _auditor(live: LiveBroker) -> tuple[str, str]:
    with transaction(live.runtime.engine) as session:
        issued = clients.register_auditor(
            session, name="Tietosuojavaltuutettu", now=datetime.now(UTC)
        )
    assert issued.client_secret is not None
    return issued.client_id, issued.client_secret


def test_metadata_lists_every_endpoint_and_capability(live: LiveBroker) -> None:
    meta = httpx.get(f"{live.url}/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == live.url
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "registration_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
    ):
        assert meta[key].startswith(live.url)
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_details_types_supported"] == ["omadata_release"]
    assert set(meta["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "private_key_jwt",
    }
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    AuthorizationServerMetadata(meta).validate()


def test_an_auditor_reads_the_log_with_a_client_credentials_token(live: LiveBroker) -> None:
    client_id, secret = _auditor(live)
    with OAuth2Client(client_id, secret, token_endpoint_auth_method="client_secret_basic") as oauth:
        token = oauth.fetch_token(
            f"{live.url}/oauth/token", grant_type="client_credentials", scope="audit:read"
        )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 300
    jwks = KeySet.import_key_set(httpx.get(f"{live.url}/.well-known/jwks.json").json())
    decoded = jwt.decode(token["access_token"], jwks, algorithms=["Ed25519"])
    assert decoded.header["typ"] == "at+jwt"
    claims = decoded.claims
    assert claims["iss"] == live.url
    assert claims["aud"] == f"{live.url}/v1"
    assert claims["client_id"] == client_id
    assert claims["sub"] == client_id
    assert claims["scope"] == "audit:read"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]
    entries = httpx.get(
        f"{live.url}/v1/log/entries",
        params={"start": 0, "end": 100},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert entries.status_code == 200
    assert len(entries.json()) == 4  # the demo's four published agreements


def test_wrong_client_credentials_are_invalid_client(live: LiveBroker) -> None:
    client_id, _ = _auditor(live)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, "not-the-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_an_auditor_cannot_ask_for_scopes_it_was_not_given(live: LiveBroker) -> None:
    client_id, secret = _auditor(live)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "audit:read release"},
        auth=(client_id, secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_an_auditor_cannot_use_the_authorization_code_grant(live: LiveBroker) -> None:
    client_id, secret = _auditor(live)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": "x", "redirect_uri": "http://x"},
        auth=(client_id, secret),
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    "grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"]
)
def test_unsupported_grants_are_refused(live: LiveBroker, grant_type: str) -> None:
    client_id, secret = _auditor(live)
    response = httpx.post(
        f"{live.url}/oauth/token", data={"grant_type": grant_type}, auth=(client_id, secret)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
