"""Who is asking: a signed-in person (session cookie), or a service or auditor (access token).

Every authenticated route takes exactly one of these dependencies; a route without one is
public by design. State-changing calls by a person also need the session's CSRF token in the
`X-CSRF-Token` header, compared in constant time, because the cookie alone rides along with
any cross-site request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from broker.api.deps import Bearer, BearerToken, RuntimeDep
from broker.auth.sessions import COOKIE, csrf_ok, find_session
from broker.auth.tokens import AccessToken, require_scope
from broker.errors import NotAuthenticated, NotPermitted
from broker.oauth.clients import ClientKind, Scope
from broker.storage import transaction

CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class PersonCaller:
    """A person signed in through the broker's own pages."""

    person_id: str
    language: str
    csrf_token: str


@dataclass(frozen=True)
class ServiceCaller:
    """An integrated service presenting an access token issued to one of its clients."""

    service_id: str
    client_id: str
    token: AccessToken


@dataclass(frozen=True)
class AuditorCaller:
    """An auditor presenting a token with `audit:read`."""

    client_id: str
    token: AccessToken


def _person(request: Request, runtime: RuntimeDep) -> PersonCaller:
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        found = find_session(session, request.cookies.get(COOKIE), now)
        if found is None:
            raise NotAuthenticated(
                "Sign in first: this needs the session of a signed-in person.", token_given=False
            )
        caller = PersonCaller(
            person_id=found.person_id, language=found.language, csrf_token=found.csrf_token
        )
    if request.method not in _SAFE_METHODS and not csrf_ok(
        caller.csrf_token, request.headers.get(CSRF_HEADER)
    ):
        raise NotPermitted(
            f"This change needs the {CSRF_HEADER} header with the token from GET /v1/me."
        )
    return caller


# These two are async because they do no I/O (the bearer dependency has read the client): a
# plain `def` dependency would cost a hop to the thread pool on every request.
def _service(scope: Scope) -> Callable[[Bearer], Awaitable[ServiceCaller]]:
    async def dependency(bearer: BearerToken) -> ServiceCaller:
        holder = bearer.holder
        if holder.kind != ClientKind.SERVICE or holder.service_id is None:
            raise NotPermitted("Only an integrated service may call this.")
        require_scope(bearer.token, scope.value)
        return ServiceCaller(
            service_id=holder.service_id, client_id=holder.client_id, token=bearer.token
        )

    return dependency


async def _auditor(bearer: BearerToken) -> AuditorCaller:
    require_scope(bearer.token, Scope.AUDIT_READ.value)
    return AuditorCaller(client_id=bearer.holder.client_id, token=bearer.token)


SignedInPerson = Annotated[PersonCaller, Depends(_person)]
ConsumerCaller = Annotated[ServiceCaller, Depends(_service(Scope.CONSENTS_READ))]
ReleaseCaller = Annotated[ServiceCaller, Depends(_service(Scope.RELEASE))]
SourceCaller = Annotated[ServiceCaller, Depends(_service(Scope.SOURCE_CONSENTS))]
Auditor = Annotated[AuditorCaller, Depends(_auditor)]
