"""Acting for others: whose data is on screen, who may act for me, adding and removing a
delegate; and the language the pages are in, remembered for the person."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from sqlmodel import Session
from starlette.responses import RedirectResponse, Response

from broker.api.deps import RuntimeDep
from broker.catalogue.schema import DelegationKind, DelegationScope
from broker.errors import Conflict, InvalidInput, NotFound
from broker.ledger.events import EventType
from broker.ledger.personal import entries_seen_by
from broker.people import delegates
from broker.people.access import delegations_of
from broker.storage import transaction
from broker.storage.tables import Person, PersonSession
from broker.web.i18n import LANGUAGES, translator
from broker.web.my.context import (
    Viewer,
    error_page,
    html_errors,
    page,
    viewer_for_change,
    viewer_or_signin,
)
from broker.web.my.proofs import LogMark, checkpoint_size, leaf_body, mark_of
from broker.web.my.texts import N_, Gettext, local_date, local_time
from broker.web.signin import safe_next

router = APIRouter(include_in_schema=False)

_CHANGES = {
    EventType.DELEGATION_GRANTED.value: N_("A person was given the right to act for you."),
    EventType.DELEGATION_ENDED.value: N_("A person's right to act for you ended."),
}


@dataclass
class DelegateLine:
    """One delegation as a line on the page."""

    delegation_id: str
    person_id: str
    name: str
    relation: str
    rights: str
    until: str
    removable: bool


@dataclass
class Change:
    """A delegation change in the log."""

    when: str
    iso: str
    what: str
    mark: LogMark


def _rights(scope: list[str], _: Gettext) -> str:
    if DelegationScope.CONSENT.value in scope:
        return _("Can see the data and give or withdraw consents.")
    return _("Can see the data, but cannot change anything.")


def _relation(kind: str, _: Gettext) -> str:
    return _("Guardian") if kind == DelegationKind.GUARDIAN else _("Mandate")


def _people_page(
    session: Session,
    viewer: Viewer,
    now: datetime,
    *,
    status: int = 200,
    message: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    lang = viewer.language
    _ = translator(lang)
    held = delegations_of(session, viewer.person_id, now)
    acting_for = [
        DelegateLine(
            delegation_id=d.id,
            person_id=d.principal_id,
            name=d.principal_name,
            relation=_relation(d.kind, _),
            rights=_rights(d.scope, _),
            until=local_date(d.valid_until, lang),
            removable=d.kind == DelegationKind.MANDATE,
        )
        for d in held.acting_for
        if d.in_force
    ]
    delegates_ = [
        DelegateLine(
            delegation_id=d.id,
            person_id=d.delegate_id,
            name=d.delegate_name,
            relation=_relation(d.kind, _),
            rights=_rights(d.scope, _),
            until=local_date(d.valid_until, lang),
            removable=d.kind == DelegationKind.MANDATE,
        )
        for d in held.delegates
        if d.in_force
    ]
    size = checkpoint_size(session)
    changes = [
        Change(
            when=local_time(e.at, lang, _),
            iso=e.at.astimezone(UTC).isoformat(),
            what=_(_CHANGES[e.type]),
            mark=mark_of(e, leaf_body(e), size),
        )
        for e in reversed(
            entries_seen_by(
                session, viewer_id=viewer.person_id, person_id=viewer.person_id, now=now
            )
        )
        if e.type in _CHANGES
    ]
    default_until = (now.date() + timedelta(days=365)).isoformat()
    return page(
        "my_people.html",
        viewer,
        title=N_("Acting for others"),
        current="people",
        here="/my/people",
        status=status,
        acting_for=acting_for,
        delegates=delegates_,
        changes=changes,
        message=message,
        error=error,
        form=form or {"person": "", "rights": "view", "until": default_until},
        today=now.date().isoformat(),
        latest=(now.date() + delegates.MAX_MANDATE).isoformat(),
    )


@router.get("/my/people")
@html_errors
def people_page(request: Request, runtime: RuntimeDep, done: str = "") -> Response:
    """Whom the person may act for, who may act for them, and adding a delegate."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        _ = translator(viewer.language)
        messages = {
            "added": _("Done. The person can now act for you."),
            "removed": _("Done. The person can no longer act for you."),
        }
        return _people_page(session, viewer, now, message=messages.get(done))


@router.post("/my/people/delegates")
@html_errors
def add_delegate(
    request: Request,
    runtime: RuntimeDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
    person: Annotated[str, Form(max_length=200)] = "",
    rights: Annotated[str, Form(max_length=20)] = "view",
    until: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """The signed-in person lets someone act for them; logged with the change."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_for_change(session, request, now, csrf)
        if not isinstance(viewer, Viewer):
            return viewer
    _ = translator(viewer.language)
    form = {"person": person, "rights": rights, "until": until}
    scope = [DelegationScope.VIEW]
    if rights == "consent":
        scope.append(DelegationScope.CONSENT)
    error = None
    try:
        ends = date.fromisoformat(until)
    except ValueError:
        error = _("Write the end date as year-month-day, for example 2027-11-23.")
    if viewer.acting:
        error = _("Go back to your own data to change who can act for you.")
    if error is None:
        try:
            runtime.ledger.run(
                lambda s, log: delegates.add_delegate(
                    s,
                    log,
                    principal_id=viewer.person_id,
                    delegate_id=person.strip(),
                    actor_id=viewer.person_id,
                    scope=scope,
                    valid_until=ends,
                    now=now,
                )
            )
            return RedirectResponse("/my/people?done=added", status_code=303)
        except NotFound:
            error = _("We did not find a person with this user name.")
        except Conflict:
            error = _("This person can already act for you. Remove them first to change it.")
        except InvalidInput:
            error = _(
                "Check the person and the end date. The end date can be at most five years away."
            )
    with transaction(runtime.engine, readonly=True) as session:
        return _people_page(session, viewer, now, status=422, error=error, form=form)


@router.post("/my/people/delegations/{delegation_id}/end")
@html_errors
def end_delegation(
    request: Request,
    runtime: RuntimeDep,
    delegation_id: str,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """End a mandate: the principal removes a delegate, or the delegate steps down."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_for_change(session, request, now, csrf)
        if not isinstance(viewer, Viewer):
            return viewer
    runtime.ledger.run(
        lambda s, log: delegates.end_delegation(
            s, log, delegation_id=delegation_id, actor_id=viewer.person_id, now=now
        )
    )
    return RedirectResponse("/my/people?done=removed", status_code=303)


@router.post("/my/view")
@html_errors
def switch_view(
    request: Request,
    runtime: RuntimeDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
    person: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Show another person's data (someone the signed-in person may act for), or one's own."""
    now = datetime.now(UTC)
    with transaction(runtime.engine) as session:
        viewer = viewer_for_change(session, request, now, csrf)
        if not isinstance(viewer, Viewer):
            return viewer
        if (
            person
            and person != viewer.person_id
            and person not in {p.id for p in viewer.principals}
        ):
            return error_page(403, viewer.language)
        row = session.get(PersonSession, viewer.session_id)
        assert row is not None  # the viewer was just read from it
        row.acting_for = person if person and person != viewer.person_id else None
        session.add(row)
    return RedirectResponse("/my", status_code=303)


@router.post("/my/language")
@html_errors
def switch_language(
    request: Request,
    runtime: RuntimeDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
    language: Annotated[str, Form(max_length=5)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/my",
) -> Response:
    """Show the pages in another language, now and at every later sign-in."""
    now = datetime.now(UTC)
    with transaction(runtime.engine) as session:
        viewer = viewer_for_change(session, request, now, csrf)
        if not isinstance(viewer, Viewer):
            return viewer
        if language not in LANGUAGES:
            return error_page(422, viewer.language)
        row = session.get(PersonSession, viewer.session_id)
        person = session.get(Person, viewer.person_id)
        # The viewer was just read from both rows.
        assert row is not None
        assert person is not None
        row.language = person.language = language
        session.add(row)
        session.add(person)
    return RedirectResponse(safe_next(next), status_code=303)
