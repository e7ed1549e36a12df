"""The authorization endpoint: the person reads what a service asks and answers it.

GET validates the OAuth request (client, redirect URI, S256 PKCE, authorization_details) and
shows the consent page; POST records the answer, a consent or a refusal with its log entries,
and the authorization code, all in one unit of work, then redirects back to the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from authlib.oauth2 import OAuth2Error
from fastapi import APIRouter, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from broker.auth.sessions import COOKIE, csrf_ok, find_session
from broker.catalogue import service as catalogue
from broker.catalogue.schema import DelegationScope, LocalizedText
from broker.consents import service as consents
from broker.ledger.sequencer import LogAppender
from broker.oauth import rar
from broker.oauth.grants import GrantUser
from broker.oauth.requests import FormRequest, read_form_request
from broker.oauth.server import BrokerAuthorizationServer
from broker.people import service as people
from broker.runtime import Runtime
from broker.storage import transaction
from broker.storage.tables import DataCategory, Person, PersonSession, Purpose, Service
from broker.web.i18n import translator
from broker.web.render import render
from policies import FieldRef

router = APIRouter(include_in_schema=False)

_OAUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "authorization_details",
)


@dataclass
class _Field:
    ref: str
    description: str
    required: bool
    special_category: bool


@dataclass
class _Category:
    name: str
    fields: list[_Field] = field(default_factory=list)


@dataclass
class _Request:
    consumer_name: str
    consumer_organisation: str
    privacy_notice_url: str
    purpose_name: str
    purpose_description: str
    source_name: str
    valid_until: str
    categories: list[_Category]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get("/oauth/authorize")
async def authorize_page(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    next_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await run_in_threadpool(
        _show, runtime, request.cookies.get(COOKIE), oauth_request, next_url
    )


@router.post("/oauth/authorize")
async def authorize_answer(request: Request) -> Response:
    runtime = _runtime(request)
    oauth_request = await read_form_request(request, runtime.settings.effective_public_url)
    cookie = request.cookies.get(COOKIE)
    return await run_in_threadpool(
        runtime.ledger.run, lambda s, log: _answer(runtime, s, log, cookie, oauth_request)
    )


def _show(
    runtime: Runtime, cookie: str | None, oauth_request: FormRequest, next_url: str
) -> Response:
    now = datetime.now(UTC)
    with transaction(runtime.engine) as session:
        server = BrokerAuthorizationServer(runtime, session, None, now)
        try:
            grant = server.get_consent_grant(oauth_request, end_user=None)
            releases = _releases(session, grant, oauth_request)
        except OAuth2Error as error:
            return _error(server, oauth_request, error, "en")
        person_session = find_session(session, cookie, now)
        if person_session is None:
            return RedirectResponse(f"/signin?next={quote(next_url, safe='')}", status_code=303)
        person = people.get_person(session, person_session.person_id)
        language = person_session.language
        return render(
            "consent.html",
            language=language,
            title="Give consent",
            person=person,
            csrf=person_session.csrf_token,
            request_params=[
                (name, oauth_request.payload.data[name])
                for name in _OAUTH_PARAMS
                if oauth_request.payload.data.get(name)
            ],
            subjects=_subjects(session, person, language, now),
            requests=[_describe(session, r, language, now) for r in releases],
        )


def _answer(
    runtime: Runtime,
    session: Session,
    log: LogAppender,
    cookie: str | None,
    oauth_request: FormRequest,
) -> Response:
    now = datetime.now(UTC)
    server = BrokerAuthorizationServer(runtime, session, log, now)
    person_session = find_session(session, cookie, now)
    if person_session is None:
        return _page_error("Your session has ended. Please try again.", "fi", 401)
    language = person_session.language
    form = oauth_request.form
    if not csrf_ok(person_session.csrf_token, form.get("csrf")):
        return _page_error("Your session has ended. Please try again.", language, 400)
    try:
        grant = server.get_consent_grant(oauth_request, end_user=None)
        releases = _releases(session, grant, oauth_request)
    except OAuth2Error as error:
        return _error(server, oauth_request, error, language)
    subject = form.get("subject") or person_session.person_id
    if subject not in {
        s["id"] for s in _subjects(session, _person(session, person_session), language, now)
    }:
        return _page_error("This request is not valid, so nothing was shared.", language, 403)
    actor = person_session.person_id
    if form.get("decision") != "approve":
        for release in releases:
            consents.refuse_consent(
                session,
                log,
                person_id=subject,
                agreement_id=release.agreement.id,
                version=release.agreement.version,
                actor_id=actor,
                now=now,
            )
        return server.answer(oauth_request, None, grant)
    chosen = set(oauth_request.payload.datalist.get("field", []))
    details: list[dict[str, Any]] = []
    consent_ids: list[str] = []
    for release in releases:
        fields = sorted((set(release.fields) & chosen) | set(release.required))
        record = consents.give_or_renew_consent(
            session,
            log,
            person_id=subject,
            agreement_id=release.agreement.id,
            version=release.agreement.version,
            fields=[FieldRef(*f.rsplit(".", 1)) for f in fields],
            actor_id=actor,
            now=now,
        )
        consent_ids.append(record.id)
        details.append(
            rar.granted_detail(
                release,
                consent_id=record.id,
                granted_fields=[f"{g.category}.{g.field}" for g in record.fields],
                valid_until=record.valid_until,
            )
        )
    oauth_request.granted_details = details
    oauth_request.consent_ids = consent_ids
    return server.answer(oauth_request, GrantUser(person_id=subject, actor_id=actor), grant)


def _person(session: Session, person_session: PersonSession) -> Person:
    return people.get_person(session, person_session.person_id)


def _releases(
    session: Session, grant: Any, oauth_request: FormRequest
) -> list[rar.ResolvedRelease]:
    client = grant.client if hasattr(grant, "client") and grant.client else oauth_request.client
    raw = oauth_request.payload.data.get("authorization_details")
    try:
        details = rar.parse_authorization_details(raw)
        if not details:
            raise rar.AuthorizationDetailsError("authorization_details is required.")
        agreements = catalogue.list_agreements(session)
        return [
            rar.resolve(d, client_service=client.service_id or "", agreements=agreements)
            for d in details
        ]
    except rar.AuthorizationDetailsError as exc:
        error = OAuth2Error(
            description=exc.description,
            redirect_uri=grant.redirect_uri,
            state=oauth_request.payload.state,
        )
        error.error = "invalid_authorization_details"
        raise error from None


def _subjects(
    session: Session, person: Person, language: str, now: datetime
) -> list[dict[str, str]]:
    _ = translator(language)
    subjects = [{"id": person.id, "label": f"{_('Me')} ({person.display_name})"}]
    for principal, delegation in people.principals_of(
        session, person.id, DelegationScope.CONSENT, now.date()
    ):
        role = _("as guardian") if delegation.kind == "guardian" else _("with a mandate")
        subjects.append({"id": principal.id, "label": f"{principal.display_name}, {role}"})
    return subjects


def _text(value: dict[str, str], language: str) -> str:
    return LocalizedText.model_validate(value).in_language(language)


def _describe(
    session: Session, release: rar.ResolvedRelease, language: str, now: datetime
) -> _Request:
    agreement = release.agreement
    consumer = session.get(Service, agreement.consumer)
    source = session.get(Service, agreement.source)
    purpose = session.get(Purpose, agreement.purpose)
    assert consumer is not None
    assert source is not None
    assert purpose is not None
    categories: list[_Category] = []
    wanted = set(release.fields)
    for item in agreement.items:
        category_row = session.get(DataCategory, item.category)
        assert category_row is not None
        view = catalogue.get_category(session, item.category)
        described = {f.name: f for f in view.fields}
        category = _Category(name=_text(category_row.name, language))
        for name in item.required + item.optional:
            ref = f"{item.category}.{name}"
            if ref not in wanted:
                continue
            spec = described[name]
            category.fields.append(
                _Field(
                    ref=ref,
                    description=spec.description.in_language(language),
                    required=name in item.required,
                    special_category=spec.special_category,
                )
            )
        if category.fields:
            categories.append(category)
    until = now.date().fromordinal(now.date().toordinal() + agreement.max_consent_days)
    return _Request(
        consumer_name=_text(consumer.name, language),
        consumer_organisation=consumer.organisation,
        privacy_notice_url=consumer.privacy_notice_url,
        purpose_name=_text(purpose.name, language),
        purpose_description=_text(purpose.description, language),
        source_name=_text(source.name, language),
        valid_until=until.strftime("%d.%m.%Y"),
        categories=categories,
    )


def _error(
    server: BrokerAuthorizationServer, oauth_request: FormRequest, error: OAuth2Error, language: str
) -> Response:
    # Redirect only to a redirect URI already checked against the client (RFC 6749 §4.1.2.1);
    # otherwise the person sees the error here.
    if getattr(error, "redirect_uri", None):
        redirect: Response = server.handle_error_response(oauth_request, error)
        return redirect
    return _page_error(
        "This request is not valid, so nothing was shared.",
        language,
        400,
        detail=f"{error.error}: {error.description or ''}",
    )


def _page_error(message: str, language: str, status: int, detail: str | None = None) -> Response:
    _ = translator(language)
    return render(
        "error.html",
        language=language,
        title="Something went wrong",
        message=_(message),
        detail=detail,
        status=status,
    )
