"""RFC 7591 dynamic registration with an operator's initial access token, and the operator's
own `broker service add`, `broker auditor add` and `broker registration-token`, each proven by
using what it printed over real HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey

from broker.oauth import clients
from broker.storage import transaction
from tests.broker.oauth.flows import (
    REDIRECT_URI,
    Browser,
    Consumer,
    code_flow,
    give_passwords,
)
from tests.conftest import LiveBroker

BROKER = [sys.executable, "-m", "broker.cli"]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def browser(live: LiveBroker) -> Iterator[Browser]:
    b = Browser(live)
    yield b
    b.close()


def _initial_token(
    live: LiveBroker, service_id: str = "selfcare-app", *, issued: datetime | None = None
) -> str:
    with transaction(live.runtime.engine) as session:
        return clients.issue_registration_token(
            session,
            service_id=service_id,
            now=issued or datetime.now(UTC),
            lifetime=timedelta(hours=1),
        )


def _register(live: LiveBroker, token: str | None, metadata: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{live.url}/oauth/register", json=metadata, headers=headers)


def _consumer_metadata(**changes: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "client_name": "Voimaa arkeen (test)",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    metadata.update(changes)
    return {k: v for k, v in metadata.items() if v is not None}


def _invalid(response: httpx.Response, error: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error, response.text


# --- the initial access token ----------------------------------------------------------------


def test_a_consumer_registers_and_then_completes_the_consent_flow(
    live: LiveBroker, browser: Browser
) -> None:
    give_passwords(live, "aino-virtanen")
    response = _register(live, _initial_token(live), _consumer_metadata())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"].startswith("selfcare-app-")
    assert body["client_secret"]
    assert body["client_secret_expires_at"] == 0
    assert abs(body["client_id_issued_at"] - time.time()) < 60
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert "authorization_code" in body["grant_types"]
    assert response.headers["cache-control"] == "no-store"
    token = code_flow(Consumer(live, body["client_id"], body["client_secret"]), browser)
    assert token["authorization_details"][0]["consumer"] == "selfcare-app"


def test_a_source_registers_with_private_key_jwt_and_gets_a_token(live: LiveBroker) -> None:
    key = ECKey.generate_key("P-256")
    key.ensure_kid()
    response = _register(
        live,
        _initial_token(live, "patient-record"),
        {
            "client_name": "Potilaskertomus",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert "client_secret" not in body
    assert body["grant_types"] == ["client_credentials"]
    assert body["jwks"]["keys"][0]["kid"] == key.kid
    client_id = body["client_id"]
    now = int(time.time())
    signed = jwt.encode(
        {"alg": "ES256", "kid": key.kid},
        {
            "iss": client_id,
            "sub": client_id,
            "aud": f"{live.url}/oauth/token",
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        },
        key,
        ["ES256"],
    )
    token = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "source:consents",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )
    assert token.status_code == 200, token.text


@pytest.mark.parametrize("header", [None, "Bearer", "Basic c2VsZmNhcmU6eA==", "Bearer nope"])
def test_registration_without_a_valid_initial_access_token_is_refused(
    live: LiveBroker, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = httpx.post(f"{live.url}/oauth/register", json=_consumer_metadata(), headers=headers)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    if header == "Bearer nope":
        assert 'error="invalid_token"' in challenge


def test_an_initial_access_token_works_once(live: LiveBroker) -> None:
    token = _initial_token(live)
    assert _register(live, token, _consumer_metadata()).status_code == 201
    again = _register(live, token, _consumer_metadata())
    assert again.status_code == 401
    assert 'error="invalid_token"' in again.headers["www-authenticate"]


def test_an_expired_initial_access_token_is_refused(live: LiveBroker) -> None:
    token = _initial_token(live, issued=datetime.now(UTC) - timedelta(hours=2))
    response = _register(live, token, _consumer_metadata())
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_refused_registration_does_not_use_up_the_token(live: LiveBroker) -> None:
    token = _initial_token(live)
    _invalid(
        _register(live, token, _consumer_metadata(redirect_uris=["http://example.com/cb"])),
        "invalid_redirect_uri",
    )
    assert _register(live, token, _consumer_metadata()).status_code == 201


def test_the_token_registers_only_a_client_of_its_own_service(live: LiveBroker) -> None:
    body = _register(live, _initial_token(live, "research-register"), _consumer_metadata())
    assert body.status_code == 201
    assert body.json()["client_id"].startswith("research-register-")


# --- the metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uris",
    [
        ["http://example.com/callback"],  # http only on loopback
        ["http://127.0.0.1.example.com/callback"],
        ["ftp://127.0.0.1/callback"],
        ["com.example.app:/callback"],
        ["https://app.example/callback#fragment"],
        ["not a uri"],
        ["/relative/callback"],
        ['http://evil.example/"quoted"\\back\u00e4'],  # echoed safely in error_description
        [42],
        [],  # a consumer needs one for the consent redirect
        [REDIRECT_URI, "http://example.com/callback"],
    ],
)
def test_bad_redirect_uris_are_invalid_redirect_uri(live: LiveBroker, uris: list[str]) -> None:
    response = _register(live, _initial_token(live), _consumer_metadata(redirect_uris=uris))
    _invalid(response, "invalid_redirect_uri")


@pytest.mark.parametrize(
    "uris",
    [
        ["https://app.example/callback"],
        ["http://127.0.0.1:8080/callback"],
        ["http://[::1]:8080/callback"],
        ["http://localhost/callback", "https://app.example/other?x=1"],
    ],
)
def test_https_and_loopback_redirect_uris_are_registered(live: LiveBroker, uris: list[str]) -> None:
    response = _register(live, _initial_token(live), _consumer_metadata(redirect_uris=uris))
    assert response.status_code == 201, response.text
    assert response.json()["redirect_uris"] == uris


@pytest.mark.parametrize(
    "changes",
    [
        {"grant_types": ["password"]},
        {"grant_types": ["implicit"]},
        {"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]},
        {"grant_types": "authorization_code"},
        {"response_types": ["token"]},
        {"token_endpoint_auth_method": "client_secret_post"},
        {"token_endpoint_auth_method": "none"},
        {"token_endpoint_auth_method": "client_secret_jwt"},
        {"token_endpoint_auth_method": "private_key_jwt"},  # without keys
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}},
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "XX"}]}},
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": "not an object"},
        {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example/jwks"},
        {"scope": "audit:read"},
        {"scope": "no-such-scope"},
    ],
    ids=lambda c: json.dumps(c)[:60],
)
def test_bad_client_metadata_is_invalid_client_metadata(
    live: LiveBroker, changes: dict[str, Any]
) -> None:
    response = _register(live, _initial_token(live), _consumer_metadata(**changes))
    _invalid(response, "invalid_client_metadata")


def test_a_source_cannot_register_for_the_code_flow(live: LiveBroker) -> None:
    response = _register(
        live,
        _initial_token(live, "patient-record"),
        _consumer_metadata(grant_types=["authorization_code"]),
    )
    _invalid(response, "invalid_client_metadata")


def _short_rsa_jwk() -> dict[str, Any]:
    # Made with cryptography: joserfc warns on a 1024-bit key, and warnings fail the tests.
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()  # noqa: S505

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e), "kid": "short"}


def test_private_symmetric_or_weak_keys_are_not_registered(live: LiveBroker) -> None:
    private = ECKey.generate_key("P-256")
    for jwks in (
        {"keys": [private.as_dict(private=True)]},
        {"keys": [OctKey.generate_key(256).as_dict()]},
        {"keys": [_short_rsa_jwk()]},
        {"keys": [ECKey.generate_key("P-384").as_dict(private=False)]},
        {"keys": [OKPKey.generate_key("X25519").as_dict(private=False)]},
        {"keys": [{**private.as_dict(private=False), "use": "enc"}]},
        {"keys": [{**private.as_dict(private=False), "kty": ["EC"]}]},
        {"keys": [{"x": "AAAA"}]},
    ):
        response = _register(
            live,
            _initial_token(live),
            _consumer_metadata(token_endpoint_auth_method="private_key_jwt", jwks=jwks),
        )
        _invalid(response, "invalid_client_metadata")


@pytest.mark.parametrize(
    "member",
    [
        "redirect_uris",
        "grant_types",
        "response_types",
        "token_endpoint_auth_method",
        "scope",
        "jwks",
        "jwks_uri",
        "client_name",
        "contacts",
    ],
)
def test_metadata_of_the_wrong_shape_is_refused_never_a_server_error(
    live: LiveBroker, member: str
) -> None:
    answers = set()
    for value in (None, 1, True, "x", [], [1], [[1]], [None], {}, {"keys": 1}):
        response = _register(live, _initial_token(live), {**_consumer_metadata(), member: value})
        answers.add(response.status_code)
        if response.status_code == 400:
            assert response.json()["error"] in {
                "invalid_request",
                "invalid_client_metadata",
                "invalid_redirect_uri",
            }
    assert answers <= {201, 400}, answers


def test_a_body_that_is_not_a_json_object_is_refused(live: LiveBroker) -> None:
    token = _initial_token(live)
    for body in (b"", b"[]", b"not json"):
        response = httpx.post(
            f"{live.url}/oauth/register",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] in {"invalid_request", "invalid_client_metadata"}


# --- the operator's commands -----------------------------------------------------------------


def _cli(live: LiveBroker, tmp_path: Path, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env["BROKER_DATABASE_URL"] = live.runtime.engine.url.render_as_string(hide_password=False)
    env["BROKER_DATA_DIR"] = str(tmp_path / "cli")
    result = subprocess.run(
        [*BROKER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_service_add_prints_credentials_that_work(
    live: LiveBroker, browser: Browser, tmp_path: Path
) -> None:
    give_passwords(live, "aino-virtanen")
    printed = _cli(live, tmp_path, "service", "add", "selfcare-app", "--redirect-uri", REDIRECT_URI)
    assert printed["token_endpoint_auth_method"] == "client_secret_basic"
    token = code_flow(Consumer(live, printed["client_id"], printed["client_secret"]), browser)
    assert token["token_type"] == "Bearer"


def test_service_add_with_a_jwks_file_registers_private_key_jwt(
    live: LiveBroker, tmp_path: Path
) -> None:
    key = ECKey.generate_key("P-256")
    key.ensure_kid()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}), encoding="utf-8")
    printed = _cli(live, tmp_path, "service", "add", "patient-record", "--jwks", str(path))
    assert printed["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in printed
    now = int(time.time())
    signed = jwt.encode(
        {"alg": "ES256", "kid": key.kid},
        {
            "iss": printed["client_id"],
            "sub": printed["client_id"],
            "aud": f"{live.url}/oauth/token",
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        },
        key,
        ["ES256"],
    )
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )
    assert response.status_code == 200, response.text


def test_service_add_refuses_a_private_jwks_file(live: LiveBroker, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(
        json.dumps({"keys": [ECKey.generate_key("P-256").as_dict(private=True)]}),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env["BROKER_DATABASE_URL"] = live.runtime.engine.url.render_as_string(hide_password=False)
    result = subprocess.run(
        [*BROKER, "service", "add", "patient-record", "--jwks", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "private" in result.stderr


def test_auditor_add_prints_credentials_that_read_the_log(live: LiveBroker, tmp_path: Path) -> None:
    printed = _cli(live, tmp_path, "auditor", "add", "Tietosuojavaltuutettu")
    assert set(printed) == {"client_id", "client_secret"}
    token = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "audit:read"},
        auth=(printed["client_id"], printed["client_secret"]),
    )
    assert token.status_code == 200, token.text
    entries = httpx.get(
        f"{live.url}/v1/log/entries",
        params={"start": 0, "end": 10},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert entries.status_code == 200


def test_registration_token_prints_a_token_that_registers_once(
    live: LiveBroker, tmp_path: Path
) -> None:
    printed = _cli(live, tmp_path, "registration-token", "selfcare-app", "--hours", "1")
    assert printed["service_id"] == "selfcare-app"
    token = printed["initial_access_token"]
    assert _register(live, token, _consumer_metadata()).status_code == 201
    assert _register(live, token, _consumer_metadata()).status_code == 401
