"""OAuth 2.0 endpoints for clients: token, introspection, revocation, registration, metadata.

Each route reads the request asynchronously, then runs Authlib's (synchronous) server in a
worker thread inside one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from broker.api.problems import documented
from broker.ledger.sequencer import LogAppender
from broker.oauth.clients import AUTH_METHODS, CLIENT_CREDENTIALS, CODE_GRANT, REFRESH_GRANT
from broker.oauth.requests import read_form_request, read_json_request
from broker.oauth.server import BrokerAuthorizationServer, server_metadata
from broker.runtime import Runtime
from broker.storage import transaction

router = APIRouter(tags=["oauth"])

# The OAuth endpoints answer in their RFCs' own JSON (RFC 6749 §5.2), not problem+json, except
# where the broker refuses before OAuth runs (documented as problems).
_OAUTH_ERROR = {
    "title": "OAuthError",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
        "error_uri": {"type": "string"},
    },
}
_JSON = "application/json"
_STRING = {"type": "string"}
_AUTH_METHOD = {"type": "string", "enum": list(AUTH_METHODS)}
_GRANT = {"type": "string", "enum": [CODE_GRANT, REFRESH_GRANT, CLIENT_CREDENTIALS]}
_RESPONSE_TYPE = {"type": "string", "enum": ["code"]}
# https, or http on loopback (RFC 8252 §7.3), and no fragment.
_REDIRECT_URI = {
    "type": "string",
    "pattern": r"^(https://[^/#]+|http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?)(/[^#]*)?$",
}


def _oauth_errors(meanings: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """Responses in RFC 6749 §5.2 JSON, each status with what it means at the endpoint."""
    return {
        status: {"description": meaning, "content": {_JSON: {"schema": _OAUTH_ERROR}}}
        for status, meaning in meanings.items()
    }


def _form(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for an endpoint that reads an `application/x-www-form-urlencoded` body."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


_CLIENT_AUTH = {
    "client_id": _STRING,
    "client_assertion_type": _STRING,
    "client_assertion": _STRING,
}
_TOKEN_FORM = _form(
    ["grant_type"],
    grant_type=_GRANT,
    code=_STRING,
    redirect_uri=_STRING,
    code_verifier=_STRING,
    refresh_token=_STRING,
    scope=_STRING,
    authorization_details=_STRING,
    **_CLIENT_AUTH,
)
_TOKEN_FORM_OF_A_TOKEN = _form(
    ["token"],
    token=_STRING,
    token_type_hint={"type": "string", "enum": ["access_token", "refresh_token"]},
    **_CLIENT_AUTH,
)
_REGISTRATION = {
    "requestBody": {
        "required": True,
        "content": {
            _JSON: {
                "schema": {
                    "title": "ClientMetadata",
                    "description": "RFC 7591 §2 client metadata",
                    "type": "object",
                    "properties": {
                        "redirect_uris": {"type": "array", "items": _REDIRECT_URI},
                        "token_endpoint_auth_method": _AUTH_METHOD,
                        "grant_types": {"type": "array", "items": _GRANT},
                        "response_types": {"type": "array", "items": _RESPONSE_TYPE},
                        "client_name": _STRING,
                        "scope": _STRING,
                        "jwks": {"type": "object"},
                    },
                }
            }
        },
    }
}
_CLIENT_REFUSED = "The client is unknown or its authentication failed (invalid_client)"


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _serve(runtime: Runtime, action: Any, *, writes: bool) -> Response:
    """Run `action` on an authorization server bound to one unit of work.

    A request that always writes (a code redeemed, a refresh token rotated, a token revoked,
    a client registered) runs in the log's group-committing writer and so shares its COMMIT,
    and its wait for the disk, with the other writes of the moment. Any other runs in a
    transaction of its own in this thread, sparing the hand-off to the writer.
    """

    def unit(session: Session, log: LogAppender | None) -> Response:
        response: Response = action(
            BrokerAuthorizationServer(runtime, session, log, datetime.now(UTC))
        )
        return response

    if writes:
        return runtime.ledger.run(unit)
    with transaction(runtime.engine) as session:
        return unit(session, None)


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 server metadata")
def metadata(request: Request) -> dict[str, Any]:
    return server_metadata(_runtime(request).settings.effective_public_url)


@router.post(
    "/oauth/token",
    summary="Token endpoint (RFC 6749 §3.2)",
    openapi_extra=_TOKEN_FORM,
    responses={
        **_oauth_errors(
            {
                400: "The grant, scope, authorization details or DPoP proof is not valid",
                401: _CLIENT_REFUSED,
            }
        ),
        **documented(413, 429, 503),
    },
)
async def token(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    proof = request.headers.get("dpop")

    def respond(server: BrokerAuthorizationServer) -> Response:
        refused = server.bind_dpop(oauth_request, proof)
        return refused or server.create_token_response(oauth_request)

    # Only the grants that redeem or rotate something always write.
    writes = oauth_request.payload.grant_type in {CODE_GRANT, REFRESH_GRANT}
    return await run_in_threadpool(lambda: _serve(runtime, respond, writes=writes))


@router.post(
    "/oauth/introspect",
    summary="Token introspection (RFC 7662)",
    openapi_extra=_TOKEN_FORM_OF_A_TOKEN,
    responses={
        **_oauth_errors({400: "The request has no token", 401: _CLIENT_REFUSED}),
        **documented(413, 429, 503),
    },
)
async def introspect(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    return await run_in_threadpool(
        lambda: _serve(
            runtime,
            lambda server: server.create_endpoint_response("introspection", oauth_request),
            writes=False,
        )
    )


@router.post(
    "/oauth/revoke",
    summary="Token revocation (RFC 7009)",
    openapi_extra=_TOKEN_FORM_OF_A_TOKEN,
    responses={
        **_oauth_errors({400: "The request has no token", 401: _CLIENT_REFUSED}),
        **documented(413, 429, 503),
    },
)
async def revoke(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    return await run_in_threadpool(
        lambda: _serve(
            runtime,
            lambda server: server.create_endpoint_response("revocation", oauth_request),
            writes=True,
        )
    )


@router.post(
    "/oauth/register",
    summary="Dynamic client registration (RFC 7591)",
    status_code=201,
    openapi_extra=_REGISTRATION,
    responses={
        **_oauth_errors(
            {
                400: "The client metadata is not acceptable (RFC 7591 §3.2.2)",
                401: "No, or no valid, initial access token from the operator (invalid_token)",
            }
        ),
        **documented(413, 429, 503),
    },
)
async def register(request: Request) -> Response:
    runtime = _runtime(request)
    json_request = await read_json_request(request, runtime.settings.effective_public_url)
    return await run_in_threadpool(
        lambda: _serve(
            runtime,
            lambda server: server.create_endpoint_response("client_registration", json_request),
            writes=True,
        )
    )
