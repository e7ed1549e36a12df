"""RFC 9068 JWT access tokens: issued with the broker's `token` key, verified against its JWKS.

Only the fully specified `Ed25519` algorithm (RFC 9864) is accepted; `none`, HMAC and every
other algorithm are refused before any signature check, so a token signed with a public key as
an HMAC secret cannot pass.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey
from joserfc.jwt import JWTClaimsRegistry
from sqlmodel import Session, col

from broker.errors import InsufficientScope, NotAuthenticated
from broker.storage.tables import OAuthClient, RevokedAccessToken
from keys import KeyStore, KeyUse

ALGORITHM = "Ed25519"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT type, not a credential


@dataclass(frozen=True)
class AccessToken:
    """The verified claims of an access token."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    claims: Mapping[str, Any]


def issue_access_token(
    keystore: KeyStore,
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    scopes: Sequence[str],
    now: datetime,
    lifetime: timedelta = timedelta(minutes=5),
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A signed RFC 9068 access token with a fresh `jti`."""
    key = keystore.current(KeyUse.TOKEN)
    issued = int(now.timestamp())
    claims = {
        **(extra or {}),
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "client_id": client_id,
        "scope": " ".join(scopes),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetime.total_seconds()),
        "jti": uuid.uuid4().hex,
    }
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid}
    return jwt.encode(header, claims, OKPKey.import_key(key.private_key()), algorithms=[ALGORITHM])


@dataclass(frozen=True)
class TokenHolder:
    """The client an access token was issued to, as it is registered now."""

    client_id: str
    kind: str
    service_id: str | None


# The JWK Set of each key store, rebuilt only when its keys change (a rotation here, or one
# by another process that `refresh` notices): importing it costs more than the check itself.
_key_sets: weakref.WeakKeyDictionary[KeyStore, tuple[object, KeySet]] = weakref.WeakKeyDictionary()
_key_sets_lock = threading.Lock()


def _verification_keys(keystore: KeyStore) -> KeySet:
    keystore.refresh()
    revision = keystore.revision
    with _key_sets_lock:
        cached = _key_sets.get(keystore)
    if cached is not None and cached[0] is revision:
        return cached[1]
    key_set = KeySet.import_key_set(keystore.jwks([KeyUse.TOKEN]))  # type: ignore[arg-type]
    with _key_sets_lock:
        _key_sets[keystore] = (revision, key_set)
    return key_set


def verify_access_token(
    keystore: KeyStore, token: str, *, issuer: str, audience: str, now: datetime
) -> AccessToken:
    """Verify signature, type, issuer, audience and lifetime; NotAuthenticated on any failure."""
    jwks = _verification_keys(keystore)
    try:
        decoded = jwt.decode(token, jwks, algorithms=[ALGORITHM])
    # joserfc checks some header members by using them before it checks their type: a `crit`
    # that is null or lists a number fails with TypeError, before any signature is checked.
    except (JoseError, ValueError, TypeError) as exc:
        raise NotAuthenticated(
            f"The access token is not valid: {exc.__class__.__name__}."
        ) from None
    if decoded.header.get("typ", "").lower() not in {TOKEN_TYPE, "application/at+jwt"}:
        raise NotAuthenticated("The token is not an access token (typ must be at+jwt).")
    registry = JWTClaimsRegistry(
        now=int(now.timestamp()),
        leeway=30,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        sub={"essential": True},
        client_id={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise NotAuthenticated(f"The access token is not valid: {exc.error}.") from None
    claims = decoded.claims
    return AccessToken(
        subject=str(claims["sub"]),
        client_id=str(claims["client_id"]),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        claims=claims,
    )


# One statement for both questions asked of every token presented: is it revoked, and is its
# client still registered and enabled. Built once; the API asks it on every request.
_STANDING = sa.select(
    col(OAuthClient.kind),
    col(OAuthClient.service_id),
    col(OAuthClient.disabled_at),
    sa.exists().where(col(RevokedAccessToken.jti) == sa.bindparam("jti")).label("revoked"),
).where(col(OAuthClient.client_id) == sa.bindparam("client_id"))


def holder_of(session: Session, token: AccessToken) -> TokenHolder:
    """The token's client; NotAuthenticated if the token was revoked (RFC 7009) or its client
    is no longer registered or is disabled."""
    row = session.execute(
        _STANDING, {"jti": str(token.claims.get("jti", "")), "client_id": token.client_id}
    ).one_or_none()
    if row is None or row.disabled_at is not None:
        raise NotAuthenticated("The client that holds this token is no longer registered.")
    if row.revoked:
        raise NotAuthenticated("The access token was revoked.")
    return TokenHolder(client_id=token.client_id, kind=row.kind, service_id=row.service_id)


def require_scope(token: AccessToken, scope: str) -> None:
    """InsufficientScope unless the token grants `scope`."""
    if scope not in token.scopes:
        raise InsufficientScope(f"This needs the scope {scope!r}.", scope=scope)
