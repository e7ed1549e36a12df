"""Introspection (RFC 7662), revocation (RFC 7009), dynamic registration (RFC 7591) and
private_key_jwt client authentication (RFC 7523), on Authlib's endpoint classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from joserfc.jwk import KeySet

from broker.auth.secrets import secret_hash
from broker.auth.tokens import AccessToken, verify_access_token
from broker.consents import service as consents
from broker.errors import BrokerError
from broker.oauth import clients as client_registry
from broker.oauth.clients import AUTH_METHODS, Client
from broker.oauth.grants import revoke_refresh_family
from broker.oauth.replay import first_use
from broker.storage.tables import RefreshToken, RevokedAccessToken
from policies import ACTIVE_STATES

if TYPE_CHECKING:
    from broker.oauth.server import BrokerAuthorizationServer


@dataclass
class AccessTokenRecord:
    """A verified access token as the endpoints see it."""

    token: AccessToken
    active: bool

    def is_expired(self) -> bool:
        return False  # verify_access_token already refused expired tokens

    def is_revoked(self) -> bool:
        return not self.active


@dataclass
class RefreshTokenRecord:
    """A stored refresh token as the endpoints see it."""

    row: RefreshToken
    active: bool

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return not self.active


TokenRecord = AccessTokenRecord | RefreshTokenRecord


def _server(endpoint: Any) -> BrokerAuthorizationServer:
    server: BrokerAuthorizationServer = endpoint.server
    return server


def find_token(
    server: BrokerAuthorizationServer, value: str, hint: str | None
) -> TokenRecord | None:
    """The access or refresh token `value` with whether it is active now, or None if unknown."""
    if hint != "refresh_token" and value.count(".") == 2:
        settings = server.runtime.settings
        try:
            token = verify_access_token(
                server.runtime.keystore,
                value,
                issuer=settings.effective_public_url,
                audience=settings.api_audience,
                now=server.now,
            )
        except BrokerError:
            return None
        revoked = server.session.get(RevokedAccessToken, str(token.claims.get("jti", "")))
        return AccessTokenRecord(token, revoked is None and _consents_active(server, token.claims))
    row = server.session.get(RefreshToken, secret_hash(value))
    if row is None:
        return None
    active = (
        row.revoked_at is None
        and row.used_at is None
        and row.expires_at > server.now
        and _consents_active(server, {"consent_ids": row.consent_ids})
    )
    return RefreshTokenRecord(row, active)


def _consents_active(server: BrokerAuthorizationServer, claims: dict[str, Any] | Any) -> bool:
    for consent_id in claims.get("consent_ids", []) or []:
        try:
            status = consents.get_consent(server.session, str(consent_id), server.now).status
        except BrokerError:
            return False
        if status not in ACTIVE_STATES:
            return False
    return True


def _sources_named(claims: Any) -> set[str]:
    return {str(d.get("source")) for d in claims.get("authorization_details", []) or []}


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662: `active` is false the moment a consent behind the token stops being active."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012 - Authlib's class attribute

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return find_token(_server(self), token_string, token_type_hint)

    def check_permission(self, token: TokenRecord, client: Client, request: Any) -> bool:
        # A client may introspect its own tokens; a source, the tokens that name it.
        if isinstance(token, RefreshTokenRecord):
            return token.row.client_id == client.client_id
        claims = token.token.claims
        if claims.get("client_id") == client.client_id:
            return True
        return client.service_id is not None and client.service_id in _sources_named(claims)

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        if isinstance(token, RefreshTokenRecord):
            row = token.row
            return {
                "active": True,
                "token_type": "refresh_token",
                "client_id": row.client_id,
                "scope": row.scope,
                "exp": int(row.expires_at.timestamp()),
                "iat": int(row.issued_at.timestamp()),
                "authorization_details": row.authorization_details,
            }
        claims = dict(token.token.claims)
        return {"active": True, "token_type": "access_token", **claims}


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: a client revokes its own access or refresh tokens."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012 - Authlib's class attribute

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        record = find_token(_server(self), token_string, token_type_hint)
        if record is None:
            return None
        return (record, token_string)

    def check_permission(self, token: Any, client: Client, request: Any) -> bool:
        record, _ = token
        if isinstance(record, RefreshTokenRecord):
            return bool(record.row.client_id == client.client_id)
        return bool(record.token.client_id == client.client_id)

    def authenticate_token(self, request: Any, client: Client) -> Any:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token and self.check_permission(token, client, request):
            return token
        return None

    def revoke_token(self, token: Any, request: Any) -> None:
        record, value = token
        server = _server(self)
        if isinstance(record, RefreshTokenRecord):
            revoke_refresh_family(server.session, value, record.row.client_id, server.now)
            return
        exp = datetime.fromtimestamp(int(record.token.claims["exp"]), UTC)
        jti = str(record.token.claims["jti"])
        if server.session.get(RevokedAccessToken, jti) is None:
            server.session.add(RevokedAccessToken(jti=jti, expires_at=exp))


class Registration(ClientRegistrationEndpoint):  # type: ignore[misc]
    """RFC 7591 with an operator-issued initial access token bound to one catalogue service."""

    def authenticate_token(self, request: Any) -> str | None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        server = _server(self)
        return client_registry.redeem_registration_token(server.session, token.strip(), server.now)

    def get_server_metadata(self) -> dict[str, Any]:
        return _server(self).metadata()

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        # The client's credentials come from our registry, in save_client.
        return {}

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any
    ) -> dict[str, Any]:
        server = _server(self)
        method = client_metadata.get("token_endpoint_auth_method", "client_secret_basic")
        try:
            issued = client_registry.register_service_client(
                server.session,
                service_id=request.credential,
                redirect_uris=client_metadata.get("redirect_uris", []),
                now=server.now,
                auth_method=method,
                jwks=client_metadata.get("jwks"),
            )
        except BrokerError as exc:
            from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError

            raise InvalidClientMetadataError(exc.detail) from None
        info = issued.as_json()
        info["client_id_issued_at"] = int(server.now.timestamp())
        if issued.client_secret is not None:
            info["client_secret_expires_at"] = 0
        client_info.update(info)
        return info


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 `private_key_jwt`: the client signs an assertion with a key in its JWKS."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: BrokerAuthorizationServer, token_url: str) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self._server = server
        self._token_url = token_url

    def get_audiences(self) -> list[str]:
        # RFC 7523 §3: the token endpoint URL; the issuer identifier is accepted too (RFC 9126).
        return [self._token_url, self._server.runtime.settings.effective_public_url]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        exp = datetime.fromtimestamp(int(claims.get("exp", 0)), UTC) + timedelta(minutes=5)
        return first_use(self._server.session, f"client-assertion:{claims['iss']}", jti, exp)

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.row.jwks:
            raise InvalidClientError(description="The client has no registered public keys.")
        return KeySet.import_key_set(client.row.jwks)  # type: ignore[arg-type]

    def authenticate_client(self, client: Client) -> Client:
        if client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            return client
        raise InvalidClientError(description="The client does not use private_key_jwt.")
