"""My consents: grouped by service, one plain sentence each; one consent with its history and
receipts; withdrawing with a confirmation that says what will stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from sqlmodel import Session
from starlette.responses import RedirectResponse, Response

from broker.api.deps import RuntimeDep
from broker.auth.sessions import csrf_ok
from broker.catalogue.schema import DelegationScope
from broker.consents import service as consents
from broker.consents.service import ConsentRecord
from broker.errors import NotFound
from broker.ledger.personal import entries_seen_by
from broker.people.access import require_may_act
from broker.receipts import ReceiptFormat, load_subject, signed_receipt
from broker.storage import transaction
from broker.storage.tables import Person
from broker.web.i18n import translator
from broker.web.my.context import Viewer, error_page, here, html_errors, page, viewer_or_signin
from broker.web.my.proofs import LogMark, checkpoint_size, leaf_body, mark_of
from broker.web.my.texts import (
    N_,
    Catalogue,
    Gettext,
    actor_text,
    event_label,
    join_words,
    local_date,
    local_time,
    lower_first,
    status_label,
    unique,
)
from policies import ACTIVE_STATES, ConsentStatus

router = APIRouter(include_in_schema=False)

# Notes the broker itself writes into histories; shown translated.
_NOTES = (N_("Replaced by a new answer to the same request."),)


@dataclass
class CategoryFields:
    """A category and the details of it that a consent covers (or leaves out)."""

    name: str
    fields: list[str] = field(default_factory=list)


@dataclass
class HistoryItem:
    """One event of a consent's history, with its log entry to verify if there is one."""

    when: str
    iso: str
    what: str
    who: str
    note: str
    mark: LogMark | None


@dataclass
class ConsentCard:
    """A consent as the pages show it."""

    id: str
    consumer: str
    organisation: str
    source: str
    purpose: str
    purpose_description: str
    sentence: str
    status: str
    symbol: str
    css: str
    status_line: str
    active: bool
    granted: list[CategoryFields]
    left_out: list[CategoryFields]
    notice_title: str
    notice_url: str
    contact: str
    version: int
    given: str
    history: list[HistoryItem]


@dataclass
class ServiceGroup:
    """The consents answering one service, those in force first."""

    consumer_id: str
    name: str
    organisation: str
    description: str
    cards: list[ConsentCard]


def describe(
    record: ConsentRecord,
    catalogue: Catalogue,
    viewer: Viewer,
    names: dict[str, str],
    now: datetime,
    marks: list[LogMark] | None = None,
) -> ConsentCard:
    """The card of one consent in the viewer's language."""
    lang = viewer.language
    _ = translator(lang)
    consumer = catalogue.services.get(record.consumer)
    agreement = catalogue.agreements.get((record.agreement_id, record.agreement_version))
    granted_refs = {(f.category, f.field) for f in record.fields}
    granted: dict[str, CategoryFields] = {}
    left_out: dict[str, CategoryFields] = {}
    for item in agreement.items if agreement else []:
        for name in item.required + item.optional:
            target = granted if (item.category, name) in granted_refs else left_out
            target.setdefault(
                item.category, CategoryFields(catalogue.category_name(item.category, lang))
            ).fields.append(catalogue.field_text(item.category, name, lang))
    label, symbol, css = status_label(record.status, _)
    active = record.status in ACTIVE_STATES
    history = record.history
    marks = marks if marks is not None and len(marks) == len(history) else None
    return ConsentCard(
        id=record.id,
        consumer=catalogue.service_name(record.consumer, lang),
        organisation=consumer.organisation if consumer else "",
        source=catalogue.service_name(record.source, lang),
        purpose=catalogue.purpose_name(record.purpose, lang),
        purpose_description=(
            catalogue.purposes[record.purpose].description.in_language(lang)
            if record.purpose in catalogue.purposes
            else ""
        ),
        sentence=_sentence(
            record, catalogue, list(granted.values()) or list(left_out.values()), lang, _
        ),
        status=label,
        symbol=symbol,
        css=css,
        status_line=_status_line(record, lang, _),
        active=active,
        granted=list(granted.values()),
        left_out=list(left_out.values()),
        notice_title=agreement.title.in_language(lang) if agreement else "",
        notice_url=consumer.privacy_notice_url if consumer else "",
        contact=consumer.contact if consumer else "",
        version=record.agreement_version,
        given=_("%(date)s (%(who)s)")
        % {
            "date": local_date(record.valid_from, lang),
            "who": actor_text(record.given_by, record.actor_role, viewer.person_id, names, _),
        },
        history=[
            HistoryItem(
                when=local_time(event.at, lang, _),
                iso=event.at.astimezone(UTC).isoformat(),
                what=event_label(event.event_type, _),
                who=actor_text(event.actor_id, event.actor_role, viewer.person_id, names, _),
                note=_(event.note) if event.note in _NOTES else event.note,
                mark=marks[i] if marks else None,
            )
            for i, event in enumerate(history)
        ],
    )


def _sentence(
    record: ConsentRecord,
    catalogue: Catalogue,
    categories: list[CategoryFields],
    lang: str,
    _: Gettext,
) -> str:
    values = {
        "consumer": catalogue.service_name(record.consumer, lang),
        "source": catalogue.service_name(record.source, lang),
        "categories": join_words(unique(lower_first(c.name) for c in categories), _),
        "purpose": lower_first(catalogue.purpose_name(record.purpose, lang)),
        "until": local_date(record.valid_until, lang),
    }
    if record.status in ACTIVE_STATES:
        text = _(
            "%(consumer)s can get data from %(source)s (%(categories)s) until %(until)s "
            "for this purpose: %(purpose)s."
        )
    elif record.status is ConsentStatus.REFUSED:
        text = _(
            "%(consumer)s does not get data from %(source)s (%(categories)s): the answer was no."
        )
    else:
        text = _("%(consumer)s no longer gets data from %(source)s (%(categories)s).")
    return text % values


def _status_line(record: ConsentRecord, lang: str, _: Gettext) -> str:
    if record.status in ACTIVE_STATES:
        return _("In force until %(date)s.") % {"date": local_date(record.valid_until, lang)}
    if record.status is ConsentStatus.EXPIRED:
        return _("Expired on %(date)s.") % {"date": local_date(record.valid_until, lang)}
    ended = record.history[-1].at if record.history else record.valid_until
    if record.status is ConsentStatus.REFUSED:
        return _("Answered no on %(date)s.") % {"date": local_date(ended, lang)}
    return _("Ended on %(date)s.") % {"date": local_date(ended, lang)}


def _names(session: Session, records: list[ConsentRecord]) -> dict[str, str]:
    ids = {r.given_by for r in records} | {
        e.actor_id for r in records for e in r.history if e.actor_id
    }
    found = {}
    for person_id in ids:
        row = session.get(Person, person_id)
        if row is not None:
            found[person_id] = row.display_name
    return found


def group_by_service(
    records: list[ConsentRecord],
    catalogue: Catalogue,
    viewer: Viewer,
    names: dict[str, str],
    now: datetime,
) -> list[ServiceGroup]:
    """Consents grouped by the service that gets the data; groups with a consent in force first."""
    groups: dict[str, ServiceGroup] = {}
    for record in records:
        service = catalogue.services.get(record.consumer)
        group = groups.setdefault(
            record.consumer,
            ServiceGroup(
                consumer_id=record.consumer,
                name=catalogue.service_name(record.consumer, viewer.language),
                organisation=service.organisation if service else "",
                description=service.description.in_language(viewer.language) if service else "",
                cards=[],
            ),
        )
        group.cards.append(describe(record, catalogue, viewer, names, now))
    for group in groups.values():
        group.cards.sort(key=lambda c: not c.active)
    return sorted(groups.values(), key=lambda g: (not any(c.active for c in g.cards), g.name))


@router.get("/")
def home() -> Response:
    """The broker's front page is the person's own pages (sign-in first if needed)."""
    return RedirectResponse("/my", status_code=303)


@router.get("/my")
@html_errors
def my_consents(request: Request, runtime: RuntimeDep) -> Response:
    """Every consent of the person on screen, grouped by the service that gets the data."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        records = consents.consents_seen_by(
            session, viewer_id=viewer.person_id, person_id=viewer.subject_id, now=now
        )
        groups = group_by_service(
            records, Catalogue.load(session), viewer, _names(session, records), now
        )
    return page(
        "my_consents.html",
        viewer,
        title=N_("Consents"),
        current="consents",
        here=here(request),
        groups=groups,
    )


def _record_for(session: Session, viewer: Viewer, consent_id: str, now: datetime) -> ConsentRecord:
    """The consent if it is about the person on screen; NotFound otherwise (says nothing)."""
    record = consents.get_consent(session, consent_id, now)
    if record.person_id != viewer.subject_id:
        raise NotFound(f"There is no consent {consent_id!r} on screen.")
    require_may_act(
        session,
        actor_id=viewer.person_id,
        person_id=record.person_id,
        scope=DelegationScope.VIEW,
        on=now.date(),
    )
    return record


def _card(session: Session, viewer: Viewer, record: ConsentRecord, now: datetime) -> ConsentCard:
    entries = [
        e
        for e in entries_seen_by(
            session, viewer_id=viewer.person_id, person_id=record.person_id, now=now
        )
        if e.consent_id == record.id and e.type.startswith("consent.")
    ]
    size = checkpoint_size(session)
    marks = [mark_of(e, leaf_body(e), size) for e in entries]
    return describe(record, Catalogue.load(session), viewer, _names(session, [record]), now, marks)


@router.get("/my/consents/{consent_id}")
@html_errors
def my_consent(request: Request, runtime: RuntimeDep, consent_id: str, done: str = "") -> Response:
    """One consent: what it covers, its history, its receipts, and withdrawing it."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        card = _card(session, viewer, _record_for(session, viewer, consent_id, now), now)
    return page(
        "my_consent.html",
        viewer,
        title=card.consumer,
        current="consents",
        here=here(request),
        card=card,
        withdrawn=done == "withdrawn",
        formats=list(ReceiptFormat),
    )


@router.get("/my/consents/{consent_id}/withdraw")
@html_errors
def confirm_withdrawal(request: Request, runtime: RuntimeDep, consent_id: str) -> Response:
    """Ask before withdrawing, and say plainly what will stop."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        card = _card(session, viewer, _record_for(session, viewer, consent_id, now), now)
    if not card.active:
        return RedirectResponse(f"/my/consents/{consent_id}", status_code=303)
    return page(
        "my_withdraw.html",
        viewer,
        title=N_("Withdraw consent"),
        current="consents",
        here=here(request),
        card=card,
    )


@router.post("/my/consents/{consent_id}/withdraw")
@html_errors
def withdraw(
    request: Request,
    runtime: RuntimeDep,
    consent_id: str,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Withdraw now; the change and its log entry commit together, then back to the consent."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        _record_for(session, viewer, consent_id, now)
    if not csrf_ok(viewer.csrf, csrf):
        return error_page(400, viewer.language, None)
    runtime.ledger.run(
        lambda s, log: consents.withdraw_as(
            s, log, consent_id=consent_id, actor_id=viewer.person_id, now=now
        )
    )
    return RedirectResponse(f"/my/consents/{consent_id}?done=withdrawn", status_code=303)


@router.get("/my/consents/{consent_id}/receipts/{fmt}")
@html_errors
def receipt(request: Request, runtime: RuntimeDep, consent_id: str, fmt: str) -> Response:
    """The consent's receipt in one format, as a compact JWS signed with the receipt key."""
    now = datetime.now(UTC)
    try:
        kind = ReceiptFormat(fmt.removesuffix(".jws"))
    except ValueError:
        raise NotFound(f"There is no receipt format {fmt!r}.") from None
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        _record_for(session, viewer, consent_id, now)
        subject = load_subject(
            session,
            consent_id,
            now=now,
            language=viewer.language,
            broker_url=runtime.settings.effective_public_url,
        )
    token = signed_receipt(runtime.keystore, subject, kind)
    name = f"consent-{consent_id[:8]}-{kind.value}.jws"
    return Response(
        token,
        media_type="application/jose",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
