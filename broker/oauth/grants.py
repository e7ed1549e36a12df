"""Our grants on Authlib's: authorization code with S256 PKCE, rotating refresh tokens bound to
their consents, and client credentials. Tokens come from `issuer.issue_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge
from sqlmodel import Session, col, update

from broker.auth.secrets import new_secret, secret_hash
from broker.oauth.clients import AUTH_METHODS
from broker.storage.tables import AuthorizationCode, RefreshToken

if TYPE_CHECKING:
    from broker.oauth.server import BrokerAuthorizationServer

CODE_LIFETIME = timedelta(minutes=1)


@dataclass(frozen=True)
class GrantUser:
    """Whose data the grant is about (`person_id`) and who approved it (`actor_id`)."""

    person_id: str
    actor_id: str

    def get_user_id(self) -> str:
        """Authlib asks for the user's id."""
        return self.person_id


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE, required for every client, and only with S256 (no `plain`, no default)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - Authlib's class attribute

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier' (PKCE is required).")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: CodeRecord) -> str:
        return authorization_code.row.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: CodeRecord) -> str:
        return authorization_code.row.code_challenge_method


class CodeRecord:
    """A stored authorization code as Authlib sees it."""

    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())


class RefreshRecord:
    """A stored refresh token as Authlib sees it."""

    def __init__(self, row: RefreshToken, now: datetime) -> None:
        self.row = row
        self._now = now

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.row.client_id)

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return max(0, int((self.row.expires_at - self._now).total_seconds()))

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None

    def is_expired(self) -> bool:
        return self.row.expires_at <= self._now


def _server(grant: Any) -> BrokerAuthorizationServer:
    server: BrokerAuthorizationServer = grant.server
    return server


class _PersonTokens:
    """Grants made for a person: our issuer makes the access and refresh tokens."""

    request: Any

    def generate_token(
        self,
        user: GrantUser | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return _server(self).issuer.issue(
            self.request, user=user, scope=scope or "", include_refresh_token=True
        )


class CodeGrant(_PersonTokens, grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """Authorization code; the consent behind the code was recorded when the person approved."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012 - Authlib's class attribute

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: Any) -> str:
        # Authlib's error repeats the URI in error_description and then refuses (a 500) one
        # with characters RFC 6749 §5.2 does not allow there, such as a quote.
        asked = request.payload.redirect_uri
        if asked and not client.check_redirect_uri(asked):
            raise InvalidRequestError("The redirect_uri is not registered for this client.")
        redirect_uri: str = grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(
            request, client
        )
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        server = _server(self)
        user: GrantUser = request.user
        data = request.payload.data
        server.session.add(
            AuthorizationCode(
                code_hash=secret_hash(code),
                client_id=request.client.get_client_id(),
                person_id=user.person_id,
                actor_id=user.actor_id,
                redirect_uri=request.payload.redirect_uri or "",
                # The scope Authlib allowed this client (request.scope), never the raw request.
                scope=request.scope or "",
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
                authorization_details=request.granted_details,
                consent_ids=request.consent_ids,
                auth_time=server.now,
                expires_at=server.now + CODE_LIFETIME,
            )
        )

    def query_authorization_code(self, code: str, client: Any) -> CodeRecord | None:
        server = _server(self)
        row = server.session.get(AuthorizationCode, secret_hash(code))
        if row is None or row.client_id != client.get_client_id():
            return None
        if row.used_at is not None:
            # A replayed code: the tokens it gave may be in an attacker's hands (RFC 6749
            # §4.1.2), so the refresh tokens issued from it are revoked.
            _revoke_family(server.session, row.code_hash, server.now)
            return None
        if row.expires_at <= server.now:
            return None
        return CodeRecord(row)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        # Kept, marked used, so that a replay is recognised rather than "unknown".
        authorization_code.row.used_at = _server(self).now
        _server(self).session.add(authorization_code.row)

    def authenticate_user(self, authorization_code: CodeRecord) -> GrantUser:
        row = authorization_code.row
        self.request.granted_details = row.authorization_details
        self.request.consent_ids = row.consent_ids
        self.request.token_family = row.code_hash
        return GrantUser(person_id=row.person_id, actor_id=row.actor_id)


class RefreshGrant(_PersonTokens, grants.RefreshTokenGrant):  # type: ignore[misc]
    """Refresh tokens rotate on every use; a reused one revokes its whole family."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012 - Authlib's class attribute
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        server = _server(self)
        row = server.session.get(RefreshToken, secret_hash(refresh_token))
        if row is None:
            return None
        if row.used_at is not None and row.revoked_at is None:
            # Reuse of a rotated token: someone else holds a copy. Revoke the family.
            _revoke_family(server.session, row.family_id, server.now)
            return None
        record = RefreshRecord(row, server.now)
        if record.is_revoked() or record.is_expired():
            return None
        return record

    def authenticate_user(self, refresh_token: RefreshRecord) -> GrantUser:
        row = refresh_token.row
        self.request.granted_details = row.authorization_details
        self.request.consent_ids = row.consent_ids
        self.request.token_family = row.family_id
        self.request.bound_jkt = row.dpop_jkt
        return GrantUser(person_id=row.person_id, actor_id=row.person_id)

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        refresh_token.row.used_at = _server(self).now
        _server(self).session.add(refresh_token.row)


class ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """A client acting for itself: auditors, sources, consumers reading their consents."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012 - Authlib's class attribute

    def validate_token_request(self) -> None:
        super().validate_token_request()
        # Refuse rather than silently narrow: a client asking for more than it was given has a
        # configuration error that it should hear about.
        asked = set((self.request.payload.scope or "").split())
        if not asked <= self.request.client.scopes:
            extra = ", ".join(sorted(asked - self.request.client.scopes))
            raise InvalidScopeError(f"This client may not have: {extra}.")

    def generate_token(
        self,
        user: GrantUser | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        return _server(self).issuer.issue(
            self.request, user=None, scope=scope or "", include_refresh_token=False
        )


def _revoke_family(session: Session, family_id: str, now: datetime) -> None:
    session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


def store_refresh_token(
    session: Session,
    *,
    family_id: str,
    client_id: str,
    person_id: str,
    scope: str,
    details: list[dict[str, Any]],
    consent_ids: list[str],
    jkt: str | None,
    now: datetime,
    lifetime: timedelta,
) -> str:
    """Create and store a refresh token; returns its value (shown to the client once)."""
    value = new_secret()
    session.add(
        RefreshToken(
            token_hash=secret_hash(value),
            family_id=family_id,
            client_id=client_id,
            person_id=person_id,
            scope=scope,
            authorization_details=details,
            consent_ids=consent_ids,
            dpop_jkt=jkt,
            issued_at=now,
            expires_at=now + lifetime,
        )
    )
    return value


def revoke_refresh_family(session: Session, token: str, client_id: str, now: datetime) -> bool:
    """Revoke the family of a refresh token owned by `client_id`; False if not theirs or unknown."""
    row = session.get(RefreshToken, secret_hash(token))
    if row is None or row.client_id != client_id:
        return False
    _revoke_family(session, row.family_id, now)
    return True
