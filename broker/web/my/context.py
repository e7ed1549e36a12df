"""Who is looking at whose data: the signed-in person, the person whose data is on screen, and
what the first may do for the second. Also the shared page frame and error pages.

A guardian or delegate switches the view with POST /my/view, which records the choice in the
browser session (`PersonSession.acting_for`). Every request checks it again, so a delegation
that has ended stops showing the other person's data at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec
from urllib.parse import quote

from fastapi import Request
from sqlmodel import Session
from starlette.responses import RedirectResponse, Response

from broker.auth.sessions import COOKIE, csrf_ok, find_session
from broker.catalogue.schema import DelegationKind, DelegationScope
from broker.errors import BrokerError, Conflict, InvalidInput, NotFound, NotPermitted
from broker.people import service as people
from broker.runtime import Runtime
from broker.storage import transaction
from broker.storage.tables import Person
from broker.web.i18n import pick_language, translator
from broker.web.my.texts import N_
from broker.web.render import render

P = ParamSpec("P")

# Each language's name in itself, for the switcher (WCAG 3.1.2: marked with its own lang).
LANGUAGE_NAMES = (("fi", "Suomeksi"), ("sv", "På svenska"), ("en", "In English"))

NAV = (
    ("consents", "/my", N_("Consents")),
    ("activity", "/my/activity", N_("Who used the data")),
    ("people", "/my/people", N_("Acting for others")),
    ("export", "/my/export", N_("Download everything")),
)


@dataclass(frozen=True)
class Principal:
    """Someone the signed-in person may act for, and how far."""

    id: str
    name: str
    kind: str
    may_consent: bool


@dataclass(frozen=True)
class Viewer:
    """The signed-in person and whose data they have on screen."""

    session_id: str
    person: Person
    csrf: str
    language: str
    subject_id: str
    subject_name: str
    relation: str | None
    may_change: bool
    principals: tuple[Principal, ...]

    @property
    def person_id(self) -> str:
        """The signed-in person's id."""
        return self.person.id

    @property
    def acting(self) -> bool:
        """Whether the data on screen is someone else's."""
        return self.subject_id != self.person.id


def load_viewer(session: Session, cookie: str | None, now: datetime) -> Viewer | None:
    """The viewer of a session cookie, or None when nobody is signed in."""
    row = find_session(session, cookie, now)
    if row is None:
        return None
    person = people.get_person(session, row.person_id)
    principals = principals_of(session, person.id, now)
    chosen = next((p for p in principals if p.id == row.acting_for), None)
    return Viewer(
        session_id=row.id_hash,
        person=person,
        csrf=row.csrf_token,
        language=row.language,
        subject_id=chosen.id if chosen else person.id,
        subject_name=chosen.name if chosen else person.display_name,
        relation=chosen.kind if chosen else None,
        may_change=chosen.may_consent if chosen else True,
        principals=principals,
    )


def principals_of(session: Session, person_id: str, now: datetime) -> tuple[Principal, ...]:
    """Everyone the person may see data of today, with whether they may also change it."""
    found: dict[str, Principal] = {}
    for scope in (DelegationScope.CONSENT, DelegationScope.VIEW):
        for principal, delegation in people.principals_of(session, person_id, scope, now.date()):
            if principal.id not in found:
                found[principal.id] = Principal(
                    id=principal.id,
                    name=principal.display_name,
                    kind=delegation.kind,
                    may_consent=scope is DelegationScope.CONSENT,
                )
    return tuple(sorted(found.values(), key=lambda p: p.name))


def viewer_or_signin(session: Session, request: Request, now: datetime) -> Viewer | Response:
    """The viewer of this request, or the redirect to the sign-in page."""
    viewer = load_viewer(session, request.cookies.get(COOKIE), now)
    return viewer if viewer is not None else sign_in_first(request)


def viewer_for_change(
    session: Session, request: Request, now: datetime, csrf: str
) -> Viewer | Response:
    """The viewer of a form POST whose CSRF token matches, or the page to answer instead."""
    viewer = viewer_or_signin(session, request, now)
    if isinstance(viewer, Viewer) and not csrf_ok(viewer.csrf, csrf):
        return error_page(400, viewer.language)
    return viewer


def here(request: Request) -> str:
    """The path and query of this request, to come back to."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def sign_in_first(request: Request) -> Response:
    """Send the browser to sign in, and back here afterwards."""
    return RedirectResponse(f"/signin?next={quote(here(request), safe='')}", status_code=303)


def page(
    template: str,
    viewer: Viewer,
    *,
    title: str,
    current: str | None,
    here: str = "/my",
    status: int = 200,
    **context: Any,
) -> Response:
    """A person's page in the viewer's language, with navigation and whose data it shows.

    `here` is the page's own path, where the language switcher comes back to.
    """
    _ = translator(viewer.language)
    if viewer.acting:
        # The browser tab says whose data it shows, too.
        title = f"{_(title)} \N{EN DASH} {viewer.subject_name}"
    relation = None
    if viewer.relation is not None:
        relation = (
            _("You are their guardian.")
            if viewer.relation == DelegationKind.GUARDIAN
            else (_("They have given you a mandate."))
        )
    return render(
        template,
        language=viewer.language,
        title=title,
        status=status,
        person=viewer.person,
        viewer=viewer,
        relation=relation,
        nav=NAV,
        current=current,
        here=here,
        languages=LANGUAGE_NAMES,
        csrf=viewer.csrf,
        **context,
    )


_STATUS = ((NotFound, 404), (NotPermitted, 403), (Conflict, 409), (InvalidInput, 422))
_MESSAGES = {
    400: N_("Your session has ended. Please try again."),
    404: N_("We could not find this. It may have been removed, or it is not yours to see."),
    403: N_("You may not do this for this person."),
    409: N_("This has already changed. Please look at the page again."),
    422: N_("Please check what you entered."),
}


def error_page(status: int, language: str, detail: str | None = None) -> Response:
    """A plain error page with a way back."""
    _ = translator(language)
    return render(
        "error.html",
        language=language,
        title=N_("Something went wrong"),
        message=_(_MESSAGES.get(status, N_("Something went wrong. Nothing was changed."))),
        detail=detail,
        status=status,
    )


def html_errors(handler: Callable[P, Response]) -> Callable[P, Response]:
    """Domain errors of a page route become an error page in the person's language."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return handler(*args, **kwargs)
        except BrokerError as error:
            status = next((s for kind, s in _STATUS if isinstance(error, kind)), 400)
            request = kwargs.get("request")
            runtime = kwargs.get("runtime")
            language = _language_of(request, runtime)
            return error_page(status, language)

    return wrapper


def _language_of(request: object, runtime: object) -> str:
    if not isinstance(request, Request) or not isinstance(runtime, Runtime):
        return pick_language(None)
    with transaction(runtime.engine, readonly=True) as session:
        row = find_session(session, request.cookies.get(COOKIE), datetime.now(UTC))
        if row is not None:
            return row.language
    return pick_language(request.headers.get("accept-language"))
