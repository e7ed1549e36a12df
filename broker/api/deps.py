"""Dependencies shared by routers: the runtime, a database session, the caller's token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from broker.auth.tokens import AccessToken, verify_access_token
from broker.errors import NotAuthenticated
from broker.runtime import Runtime
from broker.storage import transaction


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def _read_session(runtime: RuntimeDep) -> Iterator[Session]:
    with transaction(runtime.engine, readonly=True) as session:
        yield session


ReadSession = Annotated[Session, Depends(_read_session)]


def _bearer(request: Request, runtime: RuntimeDep) -> AccessToken:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated(
            "This needs an access token: Authorization: Bearer <token>.", token_given=False
        )
    settings = runtime.settings
    return verify_access_token(
        runtime.keystore,
        token.strip(),
        issuer=settings.effective_public_url,
        audience=settings.api_audience,
        now=datetime.now(UTC),
    )


BearerToken = Annotated[AccessToken, Depends(_bearer)]
