"""The authorization server: Authlib's, adapted to our requests, storage and keys.

Authlib's server is synchronous and framework-neutral. A route reads the HTTP request into an
Authlib `OAuth2Request` (async, in the event loop), then builds a server for one unit of work
(`Ledger.run`, in a worker thread) bound to that unit's session, so that a consent, its log
entry and the code or token it yields commit together.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import UnsupportedResponseTypeError
from authlib.oauth2.rfc6749.requests import JsonRequest
from sqlmodel import Session
from starlette.responses import Response

from broker.ledger.sequencer import LogAppender
from broker.oauth.clients import (
    AUTH_METHODS,
    CLIENT_CREDENTIALS,
    CODE_GRANT,
    REFRESH_GRANT,
    Client,
    Scope,
    find_client,
)
from broker.oauth.dpop import DPoPError, verify_dpop_proof
from broker.oauth.endpoints import (
    ASSERTION_ALGS,
    Introspection,
    PrivateKeyJWT,
    Registration,
    Revocation,
)
from broker.oauth.grants import (
    ClientCredentials,
    CodeGrant,
    GrantUser,
    RefreshGrant,
    S256Challenge,
)
from broker.oauth.issuer import TokenIssuer
from broker.oauth.replay import DatabaseReplayCache
from broker.oauth.requests import FormRequest
from broker.runtime import Runtime

AUTHORIZATION_DETAILS_TYPE = "omadata_release"


class BrokerAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """One request's authorization server, on one unit of work's session."""

    def __init__(
        self, runtime: Runtime, session: Session, log: LogAppender | None, now: datetime
    ) -> None:
        super().__init__(scopes_supported=[s.value for s in Scope])
        self.runtime = runtime
        self.session = session
        self.log = log
        self.now = now
        self.issuer = TokenIssuer(self)
        base = runtime.settings.effective_public_url
        self.register_client_auth_method(
            PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT(self, f"{base}/oauth/token")
        )
        self.register_grant(CodeGrant, [S256Challenge(required=True)])
        self.register_grant(RefreshGrant)
        self.register_grant(ClientCredentials)
        for endpoint in (Introspection, Revocation, Registration):
            self.register_endpoint(endpoint)

    def query_client(self, client_id: str) -> Client | None:
        return find_client(self.session, client_id)

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        # Authlib puts the request's response_type into the error_description of its
        # unsupported_response_type error and then refuses (a 500) any value with characters
        # RFC 6749 §5.2 does not allow there; describe the error without echoing the value.
        if CodeGrant.check_authorization_endpoint(request):
            return super().get_authorization_grant(request)
        redirect_uri = None
        client = self.query_client(request.payload.client_id or "")
        if client is not None:
            # Redirect only to a URI registered for the client (RFC 6749 §4.1.2.1).
            asked = request.payload.redirect_uri
            if asked is None:
                redirect_uri = client.get_default_redirect_uri()
            elif client.check_redirect_uri(asked):
                redirect_uri = asked
        raise UnsupportedResponseTypeError(
            "code", "Only response_type=code is supported.", redirect_uri=redirect_uri
        )

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        # Refresh tokens are stored when issued (issuer.issue); access tokens are JWTs that
        # need no storage.
        return None

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def create_json_request(self, request: JsonRequest) -> JsonRequest:
        return request

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        # Authlib's framework signals; we act on outcomes in the grants themselves.
        return None

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict):
            body = json.dumps(body)
        response = Response(body, status_code=status)
        for name, value in headers:
            response.headers[name] = value
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def answer(self, request: FormRequest, user: GrantUser | None, grant: Any) -> Response:
        """The redirect back to the client: a code for `user`, or access_denied for None."""
        response: Response = self.create_authorization_response(
            request, grant_user=user, grant=grant
        )
        return response

    def bind_dpop(self, request: FormRequest, proof_header: str | None) -> Response | None:
        """Verify a DPoP proof sent to the token endpoint and bind the tokens to its key.

        Returns the error response when the proof is not valid; None when there is none or it is.
        """
        if proof_header is None:
            return None
        try:
            request.dpop = verify_dpop_proof(
                proof_header,
                method=request.method,
                uri=f"{self.runtime.settings.effective_public_url}/oauth/token",
                now=self.now,
                replay=DatabaseReplayCache(self.session),
            )
        except DPoPError as error:
            body = {"error": error.error, "error_description": error.description}
            return self.handle_response(400, body, [("Content-Type", "application/json")])
        return None

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        return server_metadata(self.runtime.settings.effective_public_url)


def server_metadata(base: str) -> dict[str, Any]:
    """RFC 8414 metadata of the broker at `base`: every endpoint and what it supports."""
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "registration_endpoint": f"{base}/oauth/register",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "scopes_supported": [s.value for s in Scope],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [CODE_GRANT, REFRESH_GRANT, CLIENT_CREDENTIALS],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "authorization_details_types_supported": [AUTHORIZATION_DETAILS_TYPE],
        "dpop_signing_alg_values_supported": ["ES256", "Ed25519", "EdDSA"],
        "ui_locales_supported": ["fi", "sv", "en"],
        "service_documentation": f"{base}/docs",
    }
