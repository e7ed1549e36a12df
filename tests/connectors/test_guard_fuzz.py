"""Hostile bearer tokens at a source: the guard answers with a grant whose claims hold, or with
SourceRefused (401/403/503), never another exception, whatever the token holds.

The broker's JWKS is served over loopback by the test issuer, so tokens signed with its key
reach every check after the signature too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.errors import JoseError

from connectors.guard import SourceGrant, SourceGuard, SourceRefused
from tests.connectors.support import FHIR_AUDIENCE, TokenIssuer

# Lone surrogates are 2048 of 1.1 million code points: asked for explicitly, or never drawn.
ANY_TEXT = st.text(
    st.characters(exclude_categories=())
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    max_size=20,
)
ODD = st.sampled_from(
    [10**400, 2**63, 1e308, 1.5, -1, 0, "", "\ud800", "x" * 300, ["a"], {"a": 1}, None, True]
)
HOSTILE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT | ODD,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def guard(issuer: TokenIssuer) -> Iterator[SourceGuard]:
    made = SourceGuard(issuer=issuer.url, audience=FHIR_AUDIENCE, jwks_url=issuer.jwks_url)
    yield made
    made.close()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _granted_or_refused(guard: SourceGuard, token: str) -> SourceGrant | None:
    try:
        return guard.verify(token)
    except SourceRefused as exc:
        refusal = exc
    assert refusal.status_code in (401, 403, 503)
    return None


@settings(max_examples=100)
@given(
    ANY_TEXT
    | st.sampled_from(["a.b.c", "..", "\ud800.a.b", _b64(b"[" * 6000) + ".e30.AA"])
    | st.builds(
        lambda header, claims, signature: (
            ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
            + "."
            + _b64(signature)
        ),
        st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit"]), HOSTILE | ODD),
        HOSTILE,
        st.binary(max_size=70),
    )
)
def test_forged_tokens_are_refused(guard: SourceGuard, token: str) -> None:
    assert _granted_or_refused(guard, token) is None


@settings(max_examples=100)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["sub", "scope", "consent_id", "category", "fields", "purpose", "iat", "exp", "jti"]
        ),
        ODD | HOSTILE,
        min_size=1,
    ),
    header=st.dictionaries(st.sampled_from(["typ", "crit", "cty"]), ODD | HOSTILE, max_size=1),
)
def test_tokens_signed_by_the_broker_with_odd_claims_are_granted_only_when_valid(
    guard: SourceGuard, issuer: TokenIssuer, changes: dict[str, Any], header: dict[str, Any]
) -> None:
    try:
        token = issuer.mint(header=header, **changes)
    except (JoseError, ValueError, TypeError):  # joserfc will not even write it
        return
    grant = _granted_or_refused(guard, token)
    if grant is None:
        return
    for text in (grant.subject, grant.category, grant.consent_id, grant.purpose, grant.token_id):
        assert isinstance(text, str)
        assert text
    assert all(isinstance(field, str) for field in grant.fields)


@pytest.mark.parametrize("iat", [1.5, 0.0, -1e308, 1e308])
@pytest.mark.parametrize("exp", [10**400, -(10**400)])
def test_a_lifetime_beyond_any_float_is_refused_not_an_overflow(
    guard: SourceGuard, issuer: TokenIssuer, iat: float, exp: int
) -> None:
    with pytest.raises(SourceRefused) as refused:
        guard.verify(issuer.mint(iat=iat, exp=exp))
    assert refused.value.status_code == 401
