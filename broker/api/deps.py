"""Dependencies shared by routers: the runtime, a database session, the caller's token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from broker.auth.tokens import AccessToken, TokenHolder, holder_of, verify_access_token
from broker.errors import NotAuthenticated
from broker.oauth.dpop import DPoPError, check_binding, verify_dpop_proof, www_authenticate
from broker.oauth.replay import DatabaseReplayCache
from broker.oauth.requests import public_uri
from broker.runtime import Runtime
from broker.storage import transaction


# async: no I/O here, and a plain `def` dependency costs a hop to the thread pool per request.
async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def _read_session(runtime: RuntimeDep) -> Iterator[Session]:
    with transaction(runtime.engine, readonly=True) as session:
        yield session


ReadSession = Annotated[Session, Depends(_read_session)]


@dataclass(frozen=True)
class Bearer:
    """A verified access token and the client it was issued to, as registered now."""

    token: AccessToken
    holder: TokenHolder


def _bearer(request: Request, runtime: RuntimeDep) -> Bearer:
    """The verified access token, not revoked, of a client still registered and enabled:
    `Bearer`, or `DPoP` with a proof by the token's key."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token, scheme = value.strip(), scheme.lower()
    if scheme not in {"bearer", "dpop"} or not token:
        raise NotAuthenticated(
            "This needs an access token: Authorization: Bearer <token>.", token_given=False
        )
    settings = runtime.settings
    now = datetime.now(UTC)
    verified = verify_access_token(
        runtime.keystore,
        token,
        issuer=settings.effective_public_url,
        audience=settings.api_audience,
        now=now,
    )
    with transaction(runtime.engine, readonly=True) as session:
        holder = holder_of(session, verified)
    proof = None
    try:
        if scheme == "dpop":
            header = request.headers.get("dpop")
            if header is None:
                raise DPoPError("The DPoP scheme needs a DPoP proof header.")
            with transaction(runtime.engine) as session:
                proof = verify_dpop_proof(
                    header,
                    method=request.method,
                    uri=public_uri(request, settings.effective_public_url),
                    now=now,
                    access_token=token,
                    replay=DatabaseReplayCache(session),
                )
        check_binding(verified.claims.get("cnf"), proof)
    except DPoPError as error:
        # RFC 9449 §7.1: a refused DPoP request gets a DPoP challenge naming the error.
        raise NotAuthenticated(
            f"{error.error}: {error.description}",
            challenge=www_authenticate(error, realm="omadata"),
        ) from None
    return Bearer(verified, holder)


BearerToken = Annotated[Bearer, Depends(_bearer)]
