"""Hostile `private_key_jwt` client assertions (RFC 7523): the token endpoint's client
authentication gives the registered client or InvalidClientError (a 401), never another
exception (a 500), whatever `client_assertion` holds: garbage, forged JWS, or an assertion
validly signed by the client's own key whose claims are retyped, oversized or absurd.

The broker's real authorization server runs on a real SQLite database with the demo catalogue
(once for the module: this is client authentication, not storage, so one engine is enough).
"""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from authlib.oauth2.rfc6749 import InvalidClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlalchemy import Engine
from starlette.datastructures import Headers

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.service import load_catalogue
from broker.ledger.sequencer import unit_of_work
from broker.oauth import clients
from broker.oauth.clients import Client
from broker.oauth.requests import FormRequest
from broker.oauth.server import BrokerAuthorizationServer
from broker.runtime import Runtime
from broker.settings import Settings
from broker.storage import create_db_engine, transaction
from tests.conftest import NOW

PUBLIC_URL = "https://broker.example"
TOKEN_URL = f"{PUBLIC_URL}/oauth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY = ECKey.generate_key("P-256")
KEY.ensure_kid()

# Lone surrogates (from "\\ud800" escapes) are 2048 of 1.1 million code points: asked for
# explicitly, or they would almost never be drawn.
ANY_TEXT = st.text(
    st.characters(exclude_categories=())
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    max_size=30,
)
# Values that are almost right: the right type, at the edge of what fits.
ODD = st.sampled_from(
    [10**400, 2**63, 10**30, 1e308, -1, 0, "\ud800", "x" * 300, "", ["a"], {"a": 1}, None, True]
)
HOSTILE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 10**12, -1, 0, 1e308, -1e308, 0.5]),
    st.floats(allow_nan=False),
    ANY_TEXT,
    st.sampled_from(["", "x" * 300, "\ud800", TOKEN_URL, PUBLIC_URL, "ES256", "none", "HS256"]),
)
HOSTILE = st.recursive(
    HOSTILE_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def broker(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Runtime, str]]:
    """A runtime (not started) on a demo database, and a private_key_jwt client's id."""
    root = tmp_path_factory.mktemp("assertions")
    shutil.copy(sqlite_template, root / "broker.sqlite3")
    engine: Engine = create_db_engine(f"sqlite:///{root / 'broker.sqlite3'}")
    with unit_of_work(engine) as (session, log):
        load_catalogue(session, log, read_catalogue(demo_catalogue_path()), NOW)
    with transaction(engine) as session:
        issued = clients.register_service_client(
            session,
            service_id="patient-record",
            redirect_uris=[],
            now=NOW,
            auth_method="private_key_jwt",
            jwks={"keys": [KEY.as_dict(private=False)]},
        )
    settings = Settings(data_dir=root / "data", public_url=PUBLIC_URL)
    yield Runtime.create(settings, engine, sources={}), issued.client_id
    engine.dispose()


def _authenticate(runtime: Runtime, assertion: str) -> Client | None:
    """The authenticated client, or None when refused as invalid_client."""
    request = FormRequest(
        "POST",
        TOKEN_URL,
        Headers({}),
        [],
        [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", assertion)],
    )
    with transaction(runtime.engine) as session:
        server = BrokerAuthorizationServer(runtime, session, None, datetime.now(UTC))
        try:
            client: Client = server.authenticate_client(request, ["private_key_jwt"], "token")
        except InvalidClientError as exc:
            refusal = exc
        else:
            return client
    assert refusal.error == "invalid_client"
    return None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value).encode("ascii"))


def _claims(client_id: str) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }


@settings(max_examples=100)
@given(ANY_TEXT.filter(bool) | st.sampled_from(["a.b.c", "..", "\ud800.a.b"]))
def test_arbitrary_text_is_an_invalid_client(broker: tuple[Runtime, str], assertion: str) -> None:
    runtime, _ = broker
    assert _authenticate(runtime, assertion) is None


@settings(max_examples=100)
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jwk", "b64"]), ODD | HOSTILE
    ),
    claims=st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "jti"]), ODD | HOSTILE),
    sub_is_client=st.booleans(),
    signature=st.binary(max_size=80),
)
def test_forged_assertions_are_an_invalid_client(
    broker: tuple[Runtime, str],
    header: dict[str, Any],
    claims: dict[str, Any],
    sub_is_client: bool,
    signature: bytes,
) -> None:
    runtime, client_id = broker
    if sub_is_client:
        claims["sub"] = client_id  # so that the client is found and its keys are used
    forged = f"{_b64json(header)}.{_b64json(claims)}.{_b64(signature)}"
    assert _authenticate(runtime, forged) is None


@settings(max_examples=100)
@given(
    changes=st.dictionaries(
        st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "jti"]), ODD | HOSTILE, min_size=1
    ),
    header=st.dictionaries(st.sampled_from(["typ", "crit", "cty"]), ODD | HOSTILE, max_size=1),
)
def test_validly_signed_assertions_with_odd_claims_authenticate_only_when_valid(
    broker: tuple[Runtime, str], changes: dict[str, Any], header: dict[str, Any]
) -> None:
    runtime, client_id = broker
    claims = {**_claims(client_id), **changes}
    try:
        signed = jwt.encode({**header, "alg": "ES256", "kid": KEY.kid}, claims, KEY, ["ES256"])
    except (JoseError, ValueError, TypeError):  # joserfc will not even write it
        return
    client = _authenticate(runtime, signed)
    if client is None:
        return
    assert client.get_client_id() == client_id
    assert claims["iss"] == client_id
    assert claims["aud"] in (TOKEN_URL, PUBLIC_URL) or isinstance(claims["aud"], list)
    assert isinstance(claims["jti"], str)


def test_a_valid_assertion_authenticates_once(broker: tuple[Runtime, str]) -> None:
    runtime, client_id = broker
    signed = jwt.encode({"alg": "ES256", "kid": KEY.kid}, _claims(client_id), KEY, ["ES256"])
    client = _authenticate(runtime, signed)
    assert client is not None
    assert client.get_client_id() == client_id
    assert _authenticate(runtime, signed) is None  # its jti is spent
