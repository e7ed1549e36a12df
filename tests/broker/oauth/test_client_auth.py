"""Client authentication at the token endpoint: `private_key_jwt` (RFC 7523) end to end, and
`client_secret_basic`, exactly as the metadata says (RFC 8414 `token_endpoint_auth_methods_*`).

Each test makes its own key, registers its public half as the client's JWKS, and signs the
client assertion with joserfc, as a service would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from broker.oauth import clients
from broker.storage import transaction
from tests.broker.oauth.flows import (
    REDIRECT_URI,
    Browser,
    Consumer,
    code_flow,
    give_passwords,
    new_verifier,
    redirect_params,
    register_consumer,
)
from tests.conftest import LiveBroker

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Every algorithm the metadata advertises, with a key that signs with it.
KEYS: dict[str, Any] = {
    "ES256": lambda: ECKey.generate_key("P-256"),
    "Ed25519": lambda: OKPKey.generate_key("Ed25519"),
    "RS256": lambda: RSAKey.generate_key(2048),
    "PS256": lambda: RSAKey.generate_key(2048),
}


def _key(alg: str) -> Key:
    key: Key = KEYS[alg]()
    key.ensure_kid()
    return key


def _public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def _register(
    live: LiveBroker, service_id: str, key: Key, redirect_uris: list[str] | None = None
) -> str:
    with transaction(live.runtime.engine) as session:
        issued = clients.register_service_client(
            session,
            service_id=service_id,
            redirect_uris=redirect_uris or [],
            now=datetime.now(UTC),
            auth_method="private_key_jwt",
            jwks=_public_jwks(key),
        )
    assert issued.client_secret is None
    assert issued.token_endpoint_auth_method == "private_key_jwt"
    return issued.client_id


def assertion(
    live: LiveBroker, client_id: str, key: Key, alg: str = "ES256", **changes: Any
) -> str:
    """A client assertion (RFC 7523 §3) for the token endpoint; None in `changes` drops a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{live.url}/oauth/token",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    header = {"alg": alg, "kid": key.kid}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key, [alg])


def _token(live: LiveBroker, signed: str, **data: str) -> httpx.Response:
    return httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
            **data,
        },
    )


def _refused(response: httpx.Response) -> None:
    # RFC 6749 §5.2: invalid_client, 401 (400 is allowed when no Authorization header was sent).
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] == "invalid_client", response.text


@pytest.fixture
def browser(live: LiveBroker) -> Iterator[Browser]:
    b = Browser(live)
    yield b
    b.close()


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_a_source_gets_a_token_with_a_signed_assertion(live: LiveBroker, alg: str) -> None:
    key = _key(alg)
    client_id = _register(live, "patient-record", key)
    response = _token(live, assertion(live, client_id, key, alg), scope="source:consents")
    assert response.status_code == 200, response.text
    claims = jwt.decode(
        response.json()["access_token"],
        KeySet.import_key_set(httpx.get(f"{live.url}/.well-known/jwks.json").json()),
        algorithms=["Ed25519"],
    ).claims
    assert claims["client_id"] == client_id
    assert claims["scope"] == "source:consents"


def test_every_advertised_algorithm_is_tested(live: LiveBroker) -> None:
    meta = httpx.get(f"{live.url}/.well-known/oauth-authorization-server").json()
    advertised = set(meta["token_endpoint_auth_signing_alg_values_supported"])
    # EdDSA is RFC 8037's name for Ed25519 (tested below); the rest each have a key here.
    assert advertised - {"EdDSA"} == set(KEYS)


def test_the_rfc_8037_name_eddsa_is_accepted_for_ed25519(live: LiveBroker) -> None:
    key = _key("Ed25519")
    client_id = _register(live, "patient-record", key)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{live.url}/oauth/token",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    # Signed by hand: joserfc warns on "EdDSA", which is deprecated by RFC 9864.
    import base64
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "EdDSA", "kid": key.kid}).encode())
    body = b64(json.dumps(claims).encode())
    signature = key.private_key.sign(f"{head}.{body}".encode())  # type: ignore[union-attr]
    assert _token(live, f"{head}.{body}.{b64(signature)}").status_code == 200


def test_a_consumer_runs_the_code_flow_with_private_key_jwt(
    live: LiveBroker, browser: Browser
) -> None:
    give_passwords(live, "aino-virtanen")
    key = _key("ES256")
    client_id = _register(live, "selfcare-app", key, [REDIRECT_URI])
    consumer = Consumer(live, client_id, "")
    verifier = new_verifier()
    url, _ = consumer.authorization_url(
        [{"type": "omadata_release", "agreement": "selfcare-immunisations"}], verifier
    )
    answered = browser.answer(browser.open_consent(url, "aino-virtanen"), "approve")
    code = redirect_params(answered)["code"]
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(live, client_id, key),
        },
    )
    assert response.status_code == 200, response.text
    token = response.json()
    refreshed = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(live, client_id, key),
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    # Introspection and revocation take the same assertion, with the issuer as audience too.
    introspected = httpx.post(
        f"{live.url}/oauth/introspect",
        data={
            "token": refreshed.json()["access_token"],
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(live, client_id, key, aud=live.url),
        },
    )
    assert introspected.status_code == 200, introspected.text
    assert introspected.json()["active"] is True


def test_a_replayed_assertion_is_refused(live: LiveBroker) -> None:
    key = _key("ES256")
    client_id = _register(live, "patient-record", key)
    signed = assertion(live, client_id, key)
    assert _token(live, signed).status_code == 200
    _refused(_token(live, signed))


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://other.example/oauth/token"},
        {"aud": "http://127.0.0.1:1/oauth/token"},
        {"aud": None},
        {"exp": int(time.time()) - 600, "iat": int(time.time()) - 660},
        {"exp": None},
        {"jti": None},
        {"iss": "someone-else"},
        {"sub": None},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_an_assertion_with_wrong_claims_is_refused(
    live: LiveBroker, changes: dict[str, Any]
) -> None:
    key = _key("ES256")
    client_id = _register(live, "patient-record", key)
    _refused(_token(live, assertion(live, client_id, key, **changes)))


def test_an_assertion_signed_by_another_key_is_refused(live: LiveBroker) -> None:
    key = _key("ES256")
    client_id = _register(live, "patient-record", key)
    other = ECKey.generate_key("P-256", parameters={"kid": key.kid})
    _refused(_token(live, assertion(live, client_id, other)))
    stranger = _key("Ed25519")
    _refused(_token(live, assertion(live, client_id, stranger, "Ed25519")))


def test_an_assertion_naming_another_client_is_refused(live: LiveBroker) -> None:
    mine, theirs = _key("ES256"), _key("ES256")
    client_id = _register(live, "patient-record", mine)
    other_id = _register(live, "social-care", theirs)
    _refused(_token(live, assertion(live, other_id, mine)))
    _refused(_token(live, assertion(live, other_id, mine, iss=client_id)))
    assert _token(live, assertion(live, client_id, mine)).status_code == 200


def test_an_unsigned_or_hmac_assertion_is_refused(live: LiveBroker) -> None:
    import base64
    import hashlib
    import hmac
    import json

    key = _key("ES256")
    client_id = _register(live, "patient-record", key)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{live.url}/oauth/token",
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    body = b64(json.dumps(claims).encode())
    none = b64(json.dumps({"alg": "none"}).encode())
    _refused(_token(live, f"{none}.{body}."))
    hs = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
    secret = json.dumps(key.as_dict(private=False)).encode()
    mac = hmac.new(secret, f"{hs}.{body}".encode(), hashlib.sha256).digest()
    _refused(_token(live, f"{hs}.{body}.{b64(mac)}"))


def test_a_basic_client_cannot_switch_to_an_assertion(live: LiveBroker) -> None:
    consumer = register_consumer(live)
    key = _key("ES256")
    _refused(_token(live, assertion(live, consumer.client_id, key)))


def test_a_private_key_jwt_client_cannot_use_a_secret(live: LiveBroker) -> None:
    key = _key("ES256")
    client_id = _register(live, "patient-record", key)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, ""),
    )
    _refused(response)


# --- client_secret_basic, and the methods the metadata does not list -------------------------


def test_client_secret_basic_works_and_client_secret_post_is_refused(
    live: LiveBroker, browser: Browser
) -> None:
    give_passwords(live, "aino-virtanen")
    consumer = register_consumer(live)
    meta = httpx.get(f"{live.url}/.well-known/oauth-authorization-server").json()
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    assert "client_secret_post" not in meta["token_endpoint_auth_methods_supported"]
    for endpoint in ("introspection", "revocation"):
        assert "client_secret_post" not in meta[f"{endpoint}_endpoint_auth_methods_supported"]
    token = code_flow(consumer, browser)  # Authlib's client, client_secret_basic
    posted = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": consumer.client_id,
            "client_secret": consumer.client_secret,
        },
    )
    _refused(posted)
    for path in ("/oauth/introspect", "/oauth/revoke"):
        _refused(
            httpx.post(
                f"{live.url}{path}",
                data={
                    "token": token["refresh_token"],
                    "client_id": consumer.client_id,
                    "client_secret": consumer.client_secret,
                },
            )
        )
    # The refresh token was not spent by the refused attempt.
    assert consumer.refresh(token["refresh_token"]).status_code == 200


def test_a_public_client_without_credentials_is_refused(live: LiveBroker) -> None:
    consumer = register_consumer(live)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": consumer.client_id},
    )
    _refused(response)
