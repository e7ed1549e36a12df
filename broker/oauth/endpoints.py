"""Introspection (RFC 7662), revocation (RFC 7009), dynamic registration (RFC 7591) and
private_key_jwt client authentication (RFC 7523), on Authlib's endpoint classes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from authlib.consts import default_json_headers
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from broker.auth.secrets import secret_hash
from broker.auth.tokens import AccessToken, verify_access_token
from broker.consents import service as consents
from broker.errors import BrokerError
from broker.oauth import clients as client_registry
from broker.oauth.clients import AUTH_METHODS, CODE_GRANT, Client
from broker.oauth.grants import revoke_refresh_family
from broker.oauth.replay import first_use
from broker.storage.tables import OAuthClient, RefreshToken, RevokedAccessToken, Service
from policies import ACTIVE_STATES

if TYPE_CHECKING:
    from broker.oauth.server import BrokerAuthorizationServer

# Algorithms accepted for client assertions (private_key_jwt): asymmetric only, as advertised
# in the metadata. "EdDSA" is RFC 8037's name for the Ed25519 signature (RFC 9864).
ASSERTION_ALGS = ("Ed25519", "EdDSA", "ES256", "RS256", "PS256")
_MAX_DESCRIPTION = 300


def claimed_client_id(authorization: str | None, form: Mapping[str, str]) -> str | None:
    """The client id a request to an OAuth endpoint claims, not yet authenticated: the user
    of HTTP Basic (RFC 6749 §2.3.1), else `client_id`, else the client assertion's `iss`."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(user) or None
    if form.get("client_id"):
        return form["client_id"]
    assertion = form.get("client_assertion", "")
    if assertion.count(".") == 2:
        payload = assertion.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (binascii.Error, ValueError):
            return None
        issuer = claims.get("iss") if isinstance(claims, dict) else None
        return issuer if isinstance(issuer, str) and issuer else None
    return None


def _described(text: str) -> str:
    # RFC 6749 §5.2 allows only %x20-21 / %x23-5B / %x5D-7E in error_description, and Authlib
    # raises (a 500) on anything else; our messages may quote what a client sent.
    cleaned = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)
    return cleaned[:_MAX_DESCRIPTION]


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


class InitialAccessTokenError(OAuth2Error):  # type: ignore[misc]
    """RFC 7591 §3 with RFC 6750 §3: the initial access token is missing or not valid.

    401 with a Bearer challenge; it names `invalid_token` only when a token was presented.
    """

    error = "invalid_token"
    status_code = 401

    def __init__(self, description: str, *, token_given: bool) -> None:
        super().__init__(description=description)
        self.token_given = token_given

    def get_headers(self) -> list[tuple[str, str]]:
        """The JSON headers and the RFC 6750 challenge."""
        headers: list[tuple[str, str]] = super().get_headers()
        challenge = 'Bearer realm="omadata"'
        if self.token_given:
            challenge += ', error="invalid_token"'
        headers.append(("WWW-Authenticate", challenge))
        return headers


class Registration(ClientRegistrationEndpoint):  # type: ignore[misc]
    """RFC 7591 with an operator-issued initial access token bound to one catalogue service.

    The token is used up only by a registration that succeeds, so a client that sent bad
    metadata may correct it and try again. The response holds what was registered (RFC 7591
    §3.2.1), which may be narrower than what was asked: the grants and scopes follow the
    service's roles in the catalogue.
    """

    def create_registration_response(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        request.credential = self.authenticate_token(request)
        service = _server(self).session.get(Service, request.credential)
        if service is None:  # the catalogue lost the service after the token was issued
            raise InvalidClientMetadataError("The service of this token is not in the catalogue.")
        data = request.payload.data
        if data:
            # Before Authlib's own checks, which would call a bad URI invalid_client_metadata
            # (RFC 7591 §3.2.2 has invalid_redirect_uri for it) and raise (a 500) on members of
            # the wrong JSON type.
            _check_redirect_uris(service, data.get("redirect_uris", []))
            _check_shapes(data)
            if "jwks" in data:
                try:
                    client_registry.check_client_jwks(data["jwks"])
                except BrokerError as exc:
                    raise InvalidClientMetadataError(_described(exc.detail)) from None
        metadata = self.extract_client_metadata(request)
        _check_registrable(service, metadata)
        return 201, self.save_client({}, metadata, request), default_json_headers

    def authenticate_token(self, request: Any) -> str:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InitialAccessTokenError(
                "This needs an initial access token from the operator: Authorization: Bearer.",
                token_given=False,
            )
        server = _server(self)
        request.initial_access_token = token.strip()
        service_id = client_registry.registration_token_service(
            server.session, request.initial_access_token, server.now
        )
        if service_id is None:
            raise InitialAccessTokenError(
                "The initial access token is unknown, used or expired.", token_given=True
            )
        return service_id

    def get_server_metadata(self) -> dict[str, Any]:
        return _server(self).metadata()

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any
    ) -> dict[str, Any]:
        server = _server(self)
        service = server.session.get(Service, request.credential)
        assert service is not None  # checked in create_registration_response
        redirect_uris = client_metadata.get("redirect_uris") or []
        method = client_metadata.get("token_endpoint_auth_method", "client_secret_basic")
        try:
            # One savepoint: the token is used up only if the client is registered with it.
            with server.session.begin_nested():
                if (
                    client_registry.redeem_registration_token(
                        server.session, request.initial_access_token, server.now
                    )
                    != service.id
                ):
                    raise InitialAccessTokenError(
                        "The initial access token was used a moment ago.", token_given=True
                    )
                issued = client_registry.register_service_client(
                    server.session,
                    service_id=service.id,
                    redirect_uris=redirect_uris,
                    now=server.now,
                    auth_method=method,
                    jwks=client_metadata.get("jwks"),
                )
        except BrokerError as exc:
            raise InvalidClientMetadataError(_described(exc.detail)) from None
        row = server.session.get(OAuthClient, issued.client_id)
        assert row is not None
        info = issued.as_json()
        info["client_name"] = row.client_name
        info["client_id_issued_at"] = int(server.now.timestamp())
        info["response_types"] = ["code"] if CODE_GRANT in issued.grant_types else []
        if row.jwks is not None:
            info["jwks"] = row.jwks
        if issued.client_secret is not None:
            info["client_secret_expires_at"] = 0
        return info


# RFC 7591 §2: the JSON type of each client metadata member we read or Authlib checks.
_STRING_MEMBERS = frozenset(
    {
        "client_name",
        "client_uri",
        "logo_uri",
        "tos_uri",
        "policy_uri",
        "jwks_uri",
        "scope",
        "software_id",
        "software_version",
        "token_endpoint_auth_method",
    }
)
_STRING_ARRAY_MEMBERS = frozenset({"grant_types", "response_types", "contacts"})


def _check_shapes(data: dict[str, Any]) -> None:
    for name, value in data.items():
        if name in _STRING_MEMBERS and not isinstance(value, str):
            raise InvalidClientMetadataError(f"{_described(name)} must be a string.")
        if name in _STRING_ARRAY_MEMBERS and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise InvalidClientMetadataError(f"{_described(name)} must be an array of strings.")


def _check_redirect_uris(service: Service, uris: Any) -> None:
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise InvalidRedirectURIError("redirect_uris must be an array of URIs.")
    for uri in uris:
        try:
            client_registry.check_redirect_uri(uri)
        except BrokerError as exc:
            raise InvalidRedirectURIError(_described(exc.detail)) from None
    if service.is_consumer and not uris:
        raise InvalidRedirectURIError("A consumer needs a redirect URI for the consent flow.")


def _check_registrable(service: Service, metadata: dict[str, Any]) -> None:
    """Refuse, rather than silently narrow, what this service may not have."""
    allowed = client_registry.service_grant_types(service)
    asked = metadata.get("grant_types")
    if asked is not None and (
        not isinstance(asked, list)
        or not all(isinstance(g, str) for g in asked)
        or not set(asked) <= set(allowed)
    ):
        raise InvalidClientMetadataError(
            f"This service may use only the grant types {', '.join(allowed)}."
        )
    scopes = set(client_registry.service_scopes(service))
    scope = metadata.get("scope")
    if scope is not None and (not isinstance(scope, str) or not set(scope.split()) <= scopes):
        raise InvalidClientMetadataError(
            f"This service may have only the scopes {', '.join(sorted(scopes))}."
        )
    if "jwks_uri" in metadata:
        raise InvalidClientMetadataError(
            "Send the public keys inline as jwks; jwks_uri is not used."
        )


class _AssertionAlgorithms(JWSRegistry):
    """joserfc's registry limited to ASSERTION_ALGS.

    "EdDSA" is verified by joserfc's Ed25519 algorithm: the signature is byte for byte the same,
    and asking joserfc for its deprecated "EdDSA" entry warns on every call.
    """

    def __init__(self) -> None:
        super().__init__(algorithms=[a for a in ASSERTION_ALGS if a != "EdDSA"])

    def get_alg(self, name: str) -> Any:  # joserfc does not export the model's type
        return super().get_alg("Ed25519" if name == "EdDSA" else name)


_MAX_JTI = 256  # the width of the stored jti (oauth_seen_jti.jti)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a "\ud800" escape in the JSON
        return False
    return True


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

    def extract_assertion(self, assertion: str) -> tuple[Any, dict[str, Any]]:
        # Read before any signature check, so anything may arrive here; Authlib lets a lone
        # surrogate (UnicodeEncodeError) and JSON nested too deeply (RecursionError) through,
        # and then looks the `sub` up in the database, which takes only encodable text.
        try:
            headers, claims = super().extract_assertion(assertion)
        except (ValueError, TypeError, RecursionError):
            raise InvalidClientError(description="Invalid JWT assertion.") from None
        sub = claims.get("sub")
        if isinstance(sub, str) and not _encodable(sub):
            raise InvalidClientError(description="Invalid claim: 'sub'")
        return headers, claims

    def validate_jti(self, claims: Any, jti: str) -> bool:
        # Signed by the client but otherwise as it chose: a jti that does not fit the stored
        # column, or an exp beyond any date, is the client's error, not a 500.
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI or not _encodable(jti):
            raise InvalidClientError(
                description=f"The assertion's jti must be text of 1 to {_MAX_JTI} characters."
            )
        try:
            exp = datetime.fromtimestamp(int(claims.get("exp", 0)), UTC) + timedelta(minutes=5)
        except (OverflowError, ValueError, OSError):
            raise InvalidClientError(
                description="The assertion's exp is not a usable time."
            ) from None
        return first_use(self._server.session, f"client-assertion:{claims['iss']}", jti, exp)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        # Authlib lets joserfc choose the algorithms, and its default ("recommended") is HS256,
        # RS256 and ES256: no Ed25519 or PS256 although we advertise them, and HS256 although
        # a shared secret is not private_key_jwt. Name exactly the advertised ones.
        try:
            token = jwt.decode(assertion, resolve_key, registry=_AssertionAlgorithms())
        # TypeError: joserfc uses some header members before checking their type (`crit`: null).
        except (JoseError, ValueError, TypeError) as exc:
            description = getattr(exc, "description", None) or "The client assertion is not valid."
            raise InvalidClientError(description=_described(description)) from exc
        self.verify_claims(token.claims)
        return token.claims

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.row.jwks:
            raise InvalidClientError(description="The client has no registered public keys.")
        return KeySet.import_key_set(client.row.jwks)  # type: ignore[arg-type]

    def authenticate_client(self, client: Client) -> Client:
        if client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            return client
        raise InvalidClientError(description="The client does not use private_key_jwt.")
