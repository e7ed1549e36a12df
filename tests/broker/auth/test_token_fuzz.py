"""Hostile access tokens: whatever arrives in `Authorization`, verification answers only with an
AccessToken whose claims hold, or NotAuthenticated (a 401), never another exception (a 500).

The key store is real (a fresh Ed25519 `token` key on disk); no database is needed.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from broker.auth.tokens import AccessToken, verify_access_token
from broker.errors import NotAuthenticated
from keys import KeyStore, KeyUse
from tests.hostile import any_text

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ISSUER = "https://broker.example"
AUDIENCE = "https://broker.example/v1"
FUZZ = settings(max_examples=150)

ANY_TEXT = any_text(40)
HOSTILE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -1, 0, 1e308, -1e308]),
    st.floats(allow_nan=False),
    ANY_TEXT,
    st.sampled_from(["Ed25519", "EdDSA", "none", "HS256", "at+jwt", "application/at+jwt", ""]),
)
HOSTILE_JSON = st.recursive(
    HOSTILE_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
HEADER_NAMES = st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jwk", "jku", "x5u", "zip"])
CLAIM_NAMES = st.sampled_from(["iss", "aud", "sub", "client_id", "exp", "nbf", "iat", "scope"])


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """A key store with one token key, as the broker has."""
    store = KeyStore.open(Path(tmp_path_factory.mktemp("keys")), None, production=False)
    store.ensure(KeyUse.TOKEN, NOW)
    return store


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _verified_or_refused(keystore: KeyStore, token: str) -> AccessToken | None:
    try:
        verified = verify_access_token(keystore, token, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    except NotAuthenticated as exc:
        refusal = exc
    else:
        return verified
    assert refusal.detail
    assert "WWW-Authenticate" in refusal.headers
    return None


@FUZZ
@given(ANY_TEXT | st.binary().map(lambda b: b.hex()) | st.sampled_from(["\ud800.a.b", "a.b.c"]))
def test_arbitrary_text_is_refused_as_unauthenticated(keystore: KeyStore, token: str) -> None:
    assert _verified_or_refused(keystore, token) is None


@FUZZ
@given(
    header=st.dictionaries(HEADER_NAMES, HOSTILE_JSON, max_size=5),
    claims=HOSTILE_JSON,
    signature=st.binary(max_size=80),
    segments=st.sampled_from([3, 3, 3, 2, 5]),
)
def test_forged_tokens_are_refused_as_unauthenticated(
    keystore: KeyStore, header: dict[str, Any], claims: Any, signature: bytes, segments: int
) -> None:
    parts = [_b64json(header), _b64json(claims), _b64(signature), "", ""][:segments]
    assert _verified_or_refused(keystore, ".".join(parts)) is None


@FUZZ
@given(
    header=st.dictionaries(st.sampled_from(["typ", "cty", "x-extra"]), HOSTILE_JSON, max_size=2),
    claims=st.dictionaries(CLAIM_NAMES, HOSTILE_JSON, max_size=4),
)
def test_tokens_signed_with_our_key_but_odd_content_verify_only_when_valid(
    keystore: KeyStore, header: dict[str, Any], claims: dict[str, Any]
) -> None:
    # The checks after the signature are fuzzed too: a well-signed token with strange claims.
    key = keystore.current(KeyUse.TOKEN)
    good = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "pairwise-1",
        "client_id": "client-1",
        "exp": int(NOW.timestamp()) + 60,
        "scope": "release",
    }
    head = {"typ": "at+jwt", **header, "alg": "Ed25519", "kid": key.kid}
    try:
        token = jwt.encode(
            head, {**good, **claims}, OKPKey.import_key(key.private_key()), algorithms=["Ed25519"]
        )
    except (JoseError, ValueError, TypeError):  # joserfc will not write it (typ not a string)
        return
    verified = _verified_or_refused(keystore, token)
    if verified is None:
        return
    assert verified.claims["iss"] == ISSUER
    assert verified.claims["aud"] == AUDIENCE or AUDIENCE in verified.claims["aud"]
    assert isinstance(verified.subject, str)
    assert isinstance(verified.client_id, str)
