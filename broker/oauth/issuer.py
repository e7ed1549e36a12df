"""Issuing tokens: RFC 9068 JWT access tokens and rotating refresh tokens.

Tokens are only issued while every consent behind the grant is active at this instant; the
access token names the consents and carries the granted `authorization_details` (RFC 9396)
and, when the client proved a key, its thumbprint (`cnf.jkt`, RFC 9449).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749.errors import InvalidGrantError

from broker.auth.secrets import new_secret, pairwise_subject, server_secret
from broker.auth.tokens import issue_access_token
from broker.consents import service as consents
from broker.oauth.clients import Scope
from broker.oauth.grants import GrantUser, store_refresh_token
from policies import ACTIVE_STATES

if TYPE_CHECKING:
    from broker.oauth.server import BrokerAuthorizationServer

PAIRWISE_SECRET = "pairwise-subject"  # noqa: S105 - the name of a secret, not one


class TokenIssuer:
    """Makes the token response for one request of one authorization server."""

    def __init__(self, server: BrokerAuthorizationServer) -> None:
        self._server = server

    def issue(
        self, request: Any, *, user: GrantUser | None, scope: str, include_refresh_token: bool
    ) -> dict[str, Any]:
        """The token response body; InvalidGrantError if a consent behind it is not active."""
        server = self._server
        settings = server.runtime.settings
        client = request.client
        details: list[dict[str, Any]] = list(getattr(request, "granted_details", []) or [])
        consent_ids: list[str] = list(getattr(request, "consent_ids", []) or [])
        for consent_id in consent_ids:
            record = consents.get_consent(server.session, consent_id, server.now)
            if record.status not in ACTIVE_STATES:
                raise InvalidGrantError(
                    f"The consent behind this grant is {record.status.value}; ask again."
                )
        proof = getattr(request, "dpop", None)
        bound = getattr(request, "bound_jkt", None)
        if bound is not None and (proof is None or proof.jkt != bound):
            # RFC 9449 §5: a refresh token bound to a key is used only with a proof by that key.
            raise InvalidGrantError("This refresh token is bound to a DPoP key; prove it.")
        if consent_ids and Scope.RELEASE.value not in scope.split():
            # A consent is what opens the release API; the token says so in `scope` too.
            scope = " ".join([*scope.split(), Scope.RELEASE.value])
        extra: dict[str, Any] = {}
        if details:
            extra["authorization_details"] = details
        if consent_ids:
            extra["consent_ids"] = consent_ids
            extra["consent_id"] = consent_ids[0]
        if proof is not None:
            extra["cnf"] = {"jkt": proof.jkt}
        if user is not None:
            secret = server_secret(server.session, PAIRWISE_SECRET, server.now)
            subject = pairwise_subject(
                secret, client.service_id or client.client_id, user.person_id
            )
        else:
            subject = client.client_id
        lifetime = timedelta(seconds=settings.access_token_lifetime_seconds)
        token: dict[str, Any] = {
            "access_token": issue_access_token(
                server.runtime.keystore,
                issuer=settings.effective_public_url,
                audience=settings.api_audience,
                subject=subject,
                client_id=client.client_id,
                scopes=scope.split(),
                now=server.now,
                lifetime=lifetime,
                extra=extra,
            ),
            "token_type": "DPoP" if proof is not None else "Bearer",
            "expires_in": int(lifetime.total_seconds()),
        }
        if scope:
            token["scope"] = scope
        if details:
            token["authorization_details"] = details
        if include_refresh_token and user is not None:
            token["refresh_token"] = store_refresh_token(
                server.session,
                family_id=getattr(request, "token_family", None) or new_secret(),
                client_id=client.client_id,
                person_id=user.person_id,
                scope=scope,
                details=details,
                consent_ids=consent_ids,
                jkt=proof.jkt if proof is not None else getattr(request, "bound_jkt", None),
                now=server.now,
                lifetime=timedelta(days=settings.refresh_token_lifetime_days),
            )
        return token
