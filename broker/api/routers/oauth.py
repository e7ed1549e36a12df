"""OAuth 2.0 endpoints for clients: token, introspection, revocation, registration, metadata.

Each route reads the request asynchronously, then runs Authlib's (synchronous) server in a
worker thread inside one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from broker.oauth.requests import read_form_request, read_json_request
from broker.oauth.server import BrokerAuthorizationServer, server_metadata
from broker.runtime import Runtime
from broker.storage import transaction

router = APIRouter(tags=["oauth"])

_FORM = {
    "requestBody": {
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}
    }
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _serve(runtime: Runtime, action: Any) -> Response:
    with transaction(runtime.engine) as session:
        server = BrokerAuthorizationServer(runtime, session, None, datetime.now(UTC))
        response: Response = action(server)
        return response


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 server metadata")
def metadata(request: Request) -> dict[str, Any]:
    return server_metadata(_runtime(request).settings.effective_public_url)


@router.post("/oauth/token", summary="Token endpoint (RFC 6749 §3.2)", openapi_extra=_FORM)
async def token(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    proof = request.headers.get("dpop")

    def respond(server: BrokerAuthorizationServer) -> Response:
        refused = server.bind_dpop(oauth_request, proof)
        return refused or server.create_token_response(oauth_request)

    return await run_in_threadpool(_serve, runtime, respond)


@router.post("/oauth/introspect", summary="Token introspection (RFC 7662)", openapi_extra=_FORM)
async def introspect(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    return await run_in_threadpool(
        _serve,
        runtime,
        lambda server: server.create_endpoint_response("introspection", oauth_request),
    )


@router.post("/oauth/revoke", summary="Token revocation (RFC 7009)", openapi_extra=_FORM)
async def revoke(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    return await run_in_threadpool(
        _serve, runtime, lambda server: server.create_endpoint_response("revocation", oauth_request)
    )


@router.post("/oauth/register", summary="Dynamic client registration (RFC 7591)")
async def register(request: Request) -> Response:
    runtime = _runtime(request)
    json_request = await read_json_request(request, runtime.settings.effective_public_url)
    return await run_in_threadpool(
        _serve,
        runtime,
        lambda server: server.create_endpoint_response("client_registration", json_request),
    )
