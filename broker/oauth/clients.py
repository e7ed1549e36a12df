"""OAuth clients: registering services and auditors, and the view Authlib needs of a client."""

from __future__ import annotations

import base64
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.pool import Pool
from sqlmodel import Session, col, select, update

from broker.auth.secrets import new_secret, secret_hash, secret_matches
from broker.errors import InvalidInput, NotFound
from broker.storage.tables import OAuthClient, RegistrationToken, Service


class ClientKind(StrEnum):
    """What a client is: an integrated service, or an auditor of the log."""

    SERVICE = "service"
    AUDITOR = "auditor"


class Scope(StrEnum):
    """Every scope the broker grants, and who may hold it."""

    RELEASE = "release"
    CONSENTS_READ = "consents:read"
    SOURCE_CONSENTS = "source:consents"
    AUDIT_READ = "audit:read"


AUTH_METHODS = ("client_secret_basic", "private_key_jwt")
CODE_GRANT = "authorization_code"
REFRESH_GRANT = "refresh_token"
CLIENT_CREDENTIALS = "client_credentials"


@dataclass(frozen=True)
class IssuedClient:
    """Credentials as printed once to the operator or returned by registration."""

    client_id: str
    client_secret: str | None
    service_id: str | None
    scope: str
    redirect_uris: list[str]
    grant_types: list[str]
    token_endpoint_auth_method: str

    def as_json(self) -> dict[str, Any]:
        """The credentials as JSON, omitting an absent secret."""
        data: dict[str, Any] = {
            "client_id": self.client_id,
            "service_id": self.service_id,
            "scope": self.scope,
            "redirect_uris": self.redirect_uris,
            "grant_types": self.grant_types,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
        }
        if self.client_secret is not None:
            data["client_secret"] = self.client_secret
        return data


@dataclass(frozen=True)
class ClientRecord:
    """What the broker reads of an enabled client: a copy of its row, shared between threads."""

    client_id: str
    client_secret_hash: str | None
    service_id: str | None
    scope: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    token_endpoint_auth_method: str
    jwks: dict[str, Any] | None

    @classmethod
    def of(cls, row: OAuthClient) -> ClientRecord:
        """The record of a stored client row."""
        return cls(
            client_id=row.client_id,
            client_secret_hash=row.client_secret_hash,
            service_id=row.service_id,
            scope=row.scope,
            redirect_uris=tuple(row.redirect_uris),
            grant_types=tuple(row.grant_types),
            token_endpoint_auth_method=row.token_endpoint_auth_method,
            jwks=row.jwks,
        )


class Client(ClientMixin):  # type: ignore[misc]
    """A stored client as Authlib's grants and endpoints see it."""

    def __init__(self, row: ClientRecord) -> None:
        self.row = row
        self.client_id = row.client_id

    @property
    def service_id(self) -> str | None:
        """The catalogue service this client speaks for (None for auditors)."""
        return self.row.service_id

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes this client may ever be granted."""
        return frozenset(self.row.scope.split())

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.row.redirect_uris[0] if self.row.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        # None makes Authlib answer invalid_scope: a client asking for a scope it was never
        # given is refused, not silently narrowed (RFC 6749 §3.3 lets us choose; refusing
        # keeps a consumer from reading the log with `audit:read`, say).
        if not scope:
            return ""
        asked = scope.split()
        if not set(asked) <= self.scopes:
            return None
        return " ".join(dict.fromkeys(asked))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match only (RFC 9700 §2.1): no prefix or pattern matching.
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.row.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.row.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and CODE_GRANT in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types


# Every token request looks its client up. Enabled clients just read are kept this long, per
# database, so that a client_credentials request needs no database at all (on SQLite not even
# its write lock). Clients are only ever disabled or changed outside the broker's code (by the
# operator, in the database), so that takes effect for new tokens within this many seconds;
# unknown and disabled clients are never kept, so a new client works at once.
CLIENT_CACHE_SECONDS = 2.0
CLIENT_CACHE_SIZE = 1024


class _RecentClients:
    """Enabled clients of one database read in the last CLIENT_CACHE_SECONDS (at most SIZE)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, ClientRecord]] = OrderedDict()

    def get(self, client_id: str) -> ClientRecord | None:
        """The record if read recently enough, else None."""
        with self._lock:
            entry = self._entries.get(client_id)
            if entry is None:
                return None
            if time.monotonic() - entry[0] > CLIENT_CACHE_SECONDS:
                del self._entries[client_id]
                return None
            return entry[1]

    def put(self, record: ClientRecord) -> None:
        """Keep `record`, read now; the oldest entry goes when the cache is full."""
        with self._lock:
            self._entries[record.client_id] = (time.monotonic(), record)
            self._entries.move_to_end(record.client_id)
            while len(self._entries) > CLIENT_CACHE_SIZE:
                self._entries.popitem(last=False)


# By the engine's pool: an engine with other execution options shares it, a disposed one not.
_recent: weakref.WeakKeyDictionary[Pool, _RecentClients] = weakref.WeakKeyDictionary()
_recent_lock = threading.Lock()


def _recent_clients(session: Session) -> _RecentClients:
    pool = session.get_bind().engine.pool
    with _recent_lock:
        recent = _recent.get(pool)
        if recent is None:
            recent = _recent[pool] = _RecentClients()
        return recent


def find_client(session: Session, client_id: str) -> Client | None:
    """The enabled client with this id, or None (also for ids no client can have).

    May answer from a copy read up to CLIENT_CACHE_SECONDS ago (see there).
    """
    if not client_id.isprintable() or len(client_id) > 255:
        # Comes from the caller; PostgreSQL refuses NUL in text, which would be a 500.
        return None
    recent = _recent_clients(session)
    record = recent.get(client_id)
    if record is None:
        row = session.get(OAuthClient, client_id)
        if row is None or row.disabled_at is not None:
            return None
        record = ClientRecord.of(row)
        recent.put(record)
    return Client(record)


def clients_of_service(session: Session, service_id: str) -> Sequence[OAuthClient]:
    """The enabled clients registered for a service."""
    stmt = select(OAuthClient).where(
        OAuthClient.service_id == service_id, col(OAuthClient.disabled_at).is_(None)
    )
    return session.exec(stmt).all()


def service_scopes(service: Service) -> list[str]:
    """The scopes a client of this service gets, by the service's roles."""
    scopes: list[str] = []
    if service.is_consumer:
        scopes += [Scope.RELEASE, Scope.CONSENTS_READ]
    if service.is_source:
        scopes += [Scope.SOURCE_CONSENTS]
    return scopes


def service_grant_types(service: Service) -> list[str]:
    """The grant types a client of this service gets: the code flow only for consumers."""
    if service.is_consumer:
        return [CODE_GRANT, REFRESH_GRANT, CLIENT_CREDENTIALS]
    return [CLIENT_CREDENTIALS]


def register_service_client(
    session: Session,
    *,
    service_id: str,
    redirect_uris: Sequence[str],
    now: datetime,
    auth_method: str = "client_secret_basic",
    jwks: dict[str, Any] | None = None,
    webhook_url: str | None = None,
) -> IssuedClient:
    """Register an OAuth client for a catalogue service; its scopes follow the service's roles."""
    service = session.get(Service, service_id)
    if service is None:
        raise NotFound(f"There is no service {service_id!r} in the catalogue.")
    if auth_method not in AUTH_METHODS:
        raise InvalidInput(f"Client authentication must be one of {', '.join(AUTH_METHODS)}.")
    if auth_method == "private_key_jwt" and not (jwks and jwks.get("keys")):
        raise InvalidInput("private_key_jwt needs the client's public keys (a JWKS).")
    if jwks is not None:
        check_client_jwks(jwks)
    for uri in redirect_uris:
        check_redirect_uri(uri)
    if service.is_consumer and not redirect_uris:
        raise InvalidInput("A consumer needs at least one redirect URI for the consent flow.")
    grants = service_grant_types(service)
    secret = new_secret() if auth_method == "client_secret_basic" else None
    row = OAuthClient(
        client_id=f"{service_id}-{uuid.uuid4().hex[:12]}",
        client_secret_hash=secret_hash(secret) if secret else None,
        service_id=service_id,
        kind=ClientKind.SERVICE.value,
        client_name=service.name.get("en", service_id),
        redirect_uris=list(redirect_uris),
        grant_types=grants,
        scope=" ".join(service_scopes(service)),
        token_endpoint_auth_method=auth_method,
        jwks=jwks,
        webhook_url=webhook_url,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _issued(row, secret)


def register_auditor(session: Session, *, name: str, now: datetime) -> IssuedClient:
    """Register an auditor: client credentials only, scope audit:read."""
    if not name.strip():
        raise InvalidInput("An auditor needs a name.")
    secret = new_secret()
    row = OAuthClient(
        client_id=f"auditor-{uuid.uuid4().hex[:12]}",
        client_secret_hash=secret_hash(secret),
        kind=ClientKind.AUDITOR.value,
        client_name=name.strip(),
        redirect_uris=[],
        grant_types=[CLIENT_CREDENTIALS],
        scope=Scope.AUDIT_READ.value,
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _issued(row, secret)


def issue_registration_token(
    session: Session, *, service_id: str, now: datetime, lifetime: timedelta
) -> str:
    """An initial access token that lets one client of `service_id` register itself (RFC 7591)."""
    if session.get(Service, service_id) is None:
        raise NotFound(f"There is no service {service_id!r} in the catalogue.")
    token = new_secret()
    session.add(
        RegistrationToken(
            token_hash=secret_hash(token),
            service_id=service_id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def registration_token_service(session: Session, token: str, now: datetime) -> str | None:
    """The service an unused, unexpired initial access token was issued for, or None."""
    row = session.get(RegistrationToken, secret_hash(token))
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    return row.service_id


def redeem_registration_token(session: Session, token: str, now: datetime) -> str | None:
    """Use up an initial access token; the service it was issued for, or None if not valid.

    One conditional UPDATE, so that of two registrations racing with one token only one wins.
    """
    used = session.exec(
        update(RegistrationToken)
        .where(
            col(RegistrationToken.token_hash) == secret_hash(token),
            col(RegistrationToken.used_at).is_(None),
            col(RegistrationToken.expires_at) > now,
        )
        .values(used_at=now)
    )
    if used.rowcount != 1:
        return None
    row = session.get(RegistrationToken, secret_hash(token))
    return row.service_id if row is not None else None


def check_redirect_uri(uri: str) -> None:
    """InvalidInput unless `uri` is an absolute https URI, or http on loopback (RFC 8252 §7.3)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        raise InvalidInput(f"Redirect URI {uri!r} is not a URI.") from None
    loopback = host in {"127.0.0.1", "localhost", "::1"}
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise InvalidInput(f"Redirect URI {uri!r} must use https (http only on loopback).")
    if parts.fragment or "#" in uri:
        raise InvalidInput(f"Redirect URI {uri!r} must not have a fragment.")


# Signature keys a client may sign assertions with: those of the algorithms we accept
# (Ed25519, ES256, RS256, PS256). Members only a private or a symmetric key has are refused:
# the broker must never hold a client's secret key, and a shared key is not private_key_jwt.
_SIGNING_KEYS = {"OKP": "Ed25519", "EC": "P-256"}
_SECRET_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MIN_RSA_BITS = 2048


def check_client_jwks(jwks: Any) -> None:
    """InvalidInput unless `jwks` is a JWK Set of public signature keys we can verify with."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise InvalidInput("The client's keys must be a JWK Set with a keys array (RFC 7517).")
    for jwk in keys:
        if _SECRET_MEMBERS & set(jwk):
            raise InvalidInput(
                "The JWKS holds a private or symmetric key; register only the public keys."
            )
        kty = jwk.get("kty")
        if not isinstance(kty, str):
            raise InvalidInput("Each client key needs a kty (RFC 7517 §4.1).")
        if kty in _SIGNING_KEYS and jwk.get("crv") != _SIGNING_KEYS[kty]:
            raise InvalidInput(f"A {kty} key must be on {_SIGNING_KEYS[kty]}.")
        if kty not in {*_SIGNING_KEYS, "RSA"}:
            raise InvalidInput("Client keys must be Ed25519 (OKP), P-256 (EC) or RSA keys.")
        if jwk.get("use", "sig") != "sig":
            raise InvalidInput("Client keys must be signature keys (use: sig).")
        # Checked before joserfc reads the key, which only warns about a short one.
        if kty == "RSA" and _modulus_bits(jwk.get("n")) < _MIN_RSA_BITS:
            raise InvalidInput(f"RSA keys must have at least {_MIN_RSA_BITS} bits.")
    try:
        KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidInput(f"The client's JWKS is not valid: {exc.__class__.__name__}.") from None


def _modulus_bits(n: Any) -> int:
    if not isinstance(n, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def _issued(row: OAuthClient, secret: str | None) -> IssuedClient:
    return IssuedClient(
        client_id=row.client_id,
        client_secret=secret,
        service_id=row.service_id,
        scope=row.scope,
        redirect_uris=list(row.redirect_uris),
        grant_types=list(row.grant_types),
        token_endpoint_auth_method=row.token_endpoint_auth_method,
    )
