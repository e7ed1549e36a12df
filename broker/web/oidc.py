"""Sign-in through the external OpenID Connect provider (Suomi.fi e-Identification or alike).

GET /signin/oidc sends the browser to the provider with a fresh state, nonce and PKCE
challenge, keeping them in a signed cookie that lives ten minutes and is sent only to the
callback's path; GET /signin/oidc/callback checks the answer against that cookie, validates
the ID token, finds the person the identity is linked to and starts their session. Every
failure is a page in the person's language; nobody is signed in and no person is created.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from broker.auth import oidc
from broker.auth.secrets import server_secret
from broker.auth.sessions import start_session
from broker.people.service import person_by_identity
from broker.runtime import Runtime
from broker.storage import transaction
from broker.web.i18n import pick_language, translator
from broker.web.render import render
from broker.web.signin import safe_next, secure_cookies, signed_in

router = APIRouter(include_in_schema=False)
_log = logging.getLogger(__name__)

FLOW_COOKIE = "omadata_oidc_flow"
_FLOW_PATH = "/signin/oidc"
_CALLBACK = "/signin/oidc/callback"

# What each failure tells the person, and with which status.
_FAILURES: dict[type[oidc.SignInFailed], tuple[int, str, str | None]] = {
    oidc.FlowMismatch: (
        400,
        "This sign-in has expired or was started in another browser.",
        "Please start the sign-in again.",
    ),
    oidc.InvalidIDToken: (
        400,
        "Your identification could not be verified, so you were not signed in.",
        "Please start the sign-in again.",
    ),
    oidc.ProviderRefused: (
        400,
        "The identification service did not identify you, so you were not signed in.",
        None,
    ),
    oidc.ProviderUnavailable: (
        502,
        "The identification service cannot be reached right now.",
        "Please try again in a moment.",
    ),
    oidc.UnknownIdentity: (
        403,
        "You were identified, but no OmaData account is linked to your identification, "
        "so you were not signed in.",
        "Ask OmaData's support to link your identification to your account.",
    ),
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _relying_party(request: Request) -> oidc.RelyingParty | None:
    """This app's client of the provider, made on first use; None when OIDC is off."""
    settings = _runtime(request).settings
    if not settings.oidc_enabled:
        return None
    party: oidc.RelyingParty | None = getattr(request.app.state, "oidc_relying_party", None)
    if party is None:
        party = oidc.RelyingParty(settings)
        request.app.state.oidc_relying_party = party
    return party


def _flow_key(runtime: Runtime) -> bytes:
    # Shared by every broker process through the database, so any of them can finish a flow.
    with transaction(runtime.engine) as session:
        return server_secret(session, "oidc-flow", datetime.now(UTC))


def _not_found(language: str) -> Response:
    _ = translator(language)
    return render(
        "error.html",
        language=language,
        title="Not found",
        message=_("Sign-in through an identification service is not in use."),
        detail=None,
        status=404,
    )


def _failure(error: oidc.SignInFailed, language: str, next_url: str) -> Response:
    status, message, detail = _FAILURES.get(type(error), (400, "The sign-in failed.", None))
    if isinstance(error, oidc.ProviderRefused) and error.error == "access_denied":
        message = "You cancelled the identification, so you were not signed in."
    _log.info("external sign-in failed: %s: %s", error.reason, error.detail)
    _ = translator(language)
    response = render(
        "signin_failed.html",
        language=language,
        title="Sign-in failed",
        message=_(message),
        detail=_(detail) if detail else None,
        next=next_url,
        status=status,
    )
    response.delete_cookie(FLOW_COOKIE, path=_FLOW_PATH)
    return response


@router.get("/signin/oidc")
async def oidc_start(request: Request, next: str = "/", lang: str | None = None) -> Response:
    """Send the browser to the provider; the flow's secrets go into a short-lived cookie."""
    language = pick_language(lang, request.headers.get("accept-language"))
    target = safe_next(next)
    party = _relying_party(request)
    if party is None:
        return _not_found(language)
    runtime = _runtime(request)
    redirect_uri = f"{runtime.settings.effective_public_url}{_CALLBACK}"
    try:
        url, flow = await party.begin(redirect_uri=redirect_uri, next_url=target, language=language)
    except oidc.SignInFailed as exc:
        return _failure(exc, language, target)
    key = await run_in_threadpool(_flow_key, runtime)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        flow.seal(key),
        max_age=oidc.FLOW_LIFETIME_SECONDS,
        path=_FLOW_PATH,
        httponly=True,
        # Lax: the provider's redirect back is a top-level GET navigation from another site.
        samesite="lax",
        secure=secure_cookies(runtime),
    )
    return response


@router.get(_CALLBACK)
async def oidc_callback(request: Request) -> Response:
    """Finish the sign-in: check the answer, validate the ID token, start the session."""
    language = pick_language(request.headers.get("accept-language"))
    party = _relying_party(request)
    if party is None:
        return _not_found(language)
    runtime = _runtime(request)
    next_url = "/"
    try:
        key = await run_in_threadpool(_flow_key, runtime)
        flow = oidc.Flow.open(request.cookies.get(FLOW_COOKIE), key, time.time())
        language, next_url = flow.language, flow.next_url
        claims = await party.finish(request.query_params, flow)
        identity = party.identity(claims)
        cookie = await run_in_threadpool(_start_session, runtime, party.issuer, identity)
    except oidc.SignInFailed as exc:
        return _failure(exc, language, next_url)
    response = signed_in(runtime, cookie, next_url)
    response.delete_cookie(FLOW_COOKIE, path=_FLOW_PATH)
    return response


def _start_session(runtime: Runtime, issuer: str, identity: str) -> str:
    now = datetime.now(UTC)
    with transaction(runtime.engine) as session:
        person = person_by_identity(session, issuer=issuer, subject=identity)
        if person is None:
            raise oidc.UnknownIdentity("No person is linked to this identity.")
        cookie, _ = start_session(
            session,
            person_id=person.id,
            language=person.language,
            now=now,
            lifetime=timedelta(minutes=runtime.settings.session_lifetime_minutes),
        )
    _log.info("person %s signed in through %s", person.id, issuer)
    return cookie
