"""Signing in with a local account, and signing out."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from broker.api.deps import RuntimeDep
from broker.auth.sessions import COOKIE, LOGIN_CSRF_COOKIE, csrf_ok, end_session, start_session
from broker.people.credentials import check_password
from broker.people.service import find_person
from broker.runtime import Runtime
from broker.storage import transaction
from broker.web.i18n import pick_language, translator
from broker.web.render import render

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute URL or a scheme-relative `//host`."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def secure_cookies(runtime: Runtime) -> bool:
    """Cookies are Secure whenever the broker is served over https."""
    return runtime.settings.effective_public_url.startswith("https://")


def _form(
    request: Request,
    runtime: Runtime,
    *,
    next_: str,
    error: str | None,
    username: str = "",
    status: int = 200,
) -> Response:
    language = pick_language(
        request.query_params.get("lang"), request.headers.get("accept-language")
    )
    token = secrets.token_urlsafe(24)
    response = render(
        "signin.html",
        language=language,
        title="Sign in",
        csrf=token,
        next=next_,
        error=translator(language)(error) if error else None,
        username=username,
        oidc_enabled=runtime.settings.oidc_enabled,
        oidc_name=runtime.settings.oidc_display_name,
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(runtime),
        path="/signin",
        max_age=3600,
    )
    return response


def too_many_attempts(request: Request, retry_after: int) -> Response:
    """The 429 page of a rate-limited sign-in, in the person's language, with Retry-After."""
    language = pick_language(
        request.query_params.get("lang"), request.headers.get("accept-language")
    )
    _ = translator(language)
    minutes = max(1, -(-retry_after // 60))
    response = render(
        "error.html",
        language=language,
        title="Sign in",
        message=_("Too many sign-in attempts."),
        detail=_(
            "For your safety, signing in is paused. Please try again in {minutes} min."
        ).format(minutes=minutes),
        status=429,
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


@router.get("/signin")
def signin_page(request: Request, runtime: RuntimeDep, next: str = "/") -> Response:
    return _form(request, runtime, next_=safe_next(next), error=None)


@router.post("/signin")
def signin(
    request: Request,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    csrf: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=4000)] = "/",
) -> Response:
    target = safe_next(next)
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE), csrf):
        return _form(
            request,
            runtime,
            next_=target,
            error="Your session has ended. Please try again.",
            username=username,
            status=400,
        )
    now = datetime.now(UTC)
    with transaction(runtime.engine) as session:
        if not check_password(session, username.strip(), password):
            person = None
        else:
            person = find_person(session, username.strip())
        if person is None:
            return _form(
                request,
                runtime,
                next_=target,
                error="The user name or password is wrong.",
                username=username,
                status=401,
            )
        cookie, _ = start_session(
            session,
            person_id=person.id,
            language=person.language,
            now=now,
            lifetime=timedelta(minutes=runtime.settings.session_lifetime_minutes),
        )
    return signed_in(runtime, cookie, target)


def signed_in(runtime: Runtime, cookie: str, target: str) -> Response:
    """The redirect to `target` that hands the browser its new session cookie."""
    response = RedirectResponse(safe_next(target), status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(runtime),
        max_age=runtime.settings.session_lifetime_minutes * 60,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/signin")
    return response


@router.post("/signout")
def signout(request: Request, runtime: RuntimeDep) -> Response:
    with transaction(runtime.engine) as session:
        end_session(session, request.cookies.get(COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE)
    return response
