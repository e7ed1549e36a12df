"""Who used the data: every release, refusal and failed fetch about the person on screen,
newest first, filtered by service and time, each checked by the browser against the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from broker.api.deps import RuntimeDep
from broker.ledger.events import EventType
from broker.ledger.personal import entries_seen_by
from broker.storage import transaction
from broker.web.i18n import translator
from broker.web.my.context import Viewer, here, html_errors, page, viewer_or_signin
from broker.web.my.proofs import LogMark, checkpoint_size, leaf_body, mark_of
from broker.web.my.texts import N_, ZONE, Catalogue, denial_reason, local_time

router = APIRouter(include_in_schema=False)

SHOWN = 100
_KINDS = {
    EventType.DATA_RELEASED.value: "released",
    EventType.DATA_RELEASE_DENIED.value: "denied",
    EventType.DATA_RELEASE_FAILED.value: "failed",
}


@dataclass
class Entry:
    """One use of (or attempt at) the person's data."""

    kind: str
    when: str
    iso: str
    consumer: str
    source: str
    purpose: str
    category: str
    fields: list[str]
    records: int | None
    reason: str
    consent_id: str | None
    mark: LogMark


@dataclass
class Filters:
    """What the person narrowed the list to."""

    service: str
    start: str
    end: str
    error: str | None


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _filters(service: str, start: str, end: str, services: set[str]) -> tuple[Filters, Any]:
    first, last = _date(start), _date(end)
    error = None
    if (start and first is None) or (end and last is None):
        error = N_("Write dates as year-month-day, for example 2026-11-23.")
    elif first and last and last < first:
        error = N_("The end date is before the start date.")
        first = last = None
    low = datetime.combine(first, time.min, ZONE) if first else None
    high = datetime.combine(last + timedelta(days=1), time.min, ZONE) if last else None
    chosen = service if service in services else ""
    return Filters(chosen, start if first else "", end if last else "", error), (chosen, low, high)


@router.get("/my/activity")
@html_errors
def activity(
    request: Request, runtime: RuntimeDep, service: str = "", start: str = "", end: str = ""
) -> Response:
    """Releases and refusals of the person's data, newest first, verified in the browser."""
    now = datetime.now(UTC)
    with transaction(runtime.engine, readonly=True) as session:
        viewer = viewer_or_signin(session, request, now)
        if not isinstance(viewer, Viewer):
            return viewer
        catalogue = Catalogue.load(session)
        lang = viewer.language
        _ = translator(lang)
        found = [
            e
            for e in entries_seen_by(
                session, viewer_id=viewer.person_id, person_id=viewer.subject_id, now=now
            )
            if e.type in _KINDS
        ]
        consumers = sorted(
            {e.consumer for e in found if e.consumer},
            key=lambda c: catalogue.service_name(c, lang),
        )
        filters, (chosen, low, high) = _filters(service[:64], start[:10], end[:10], set(consumers))
        size = checkpoint_size(session)
        shown = [
            e
            for e in reversed(found)
            if (not chosen or e.consumer == chosen)
            and (low is None or e.at >= low)
            and (high is None or e.at < high)
        ]
        entries = []
        for e in shown[:SHOWN]:
            body = leaf_body(e)
            category = str(body.get("category", ""))
            entries.append(
                Entry(
                    kind=_KINDS[e.type],
                    when=local_time(e.at, lang, _),
                    iso=e.at.astimezone(UTC).isoformat(),
                    consumer=catalogue.service_name(e.consumer, lang),
                    source=catalogue.service_name(e.source, lang),
                    purpose=catalogue.purpose_name(e.purpose, lang),
                    category=catalogue.category_name(category, lang),
                    fields=[
                        catalogue.field_text(category, f.rsplit(".", 1)[-1], lang) for f in e.fields
                    ],
                    records=body.get("records"),
                    reason=denial_reason(body.get("reason"), _)
                    if e.type == EventType.DATA_RELEASE_DENIED
                    else "",
                    consent_id=e.consent_id,
                    mark=mark_of(e, body, size),
                )
            )
    return page(
        "my_activity.html",
        viewer,
        title=N_("Who used the data"),
        current="activity",
        here=here(request),
        entries=entries,
        more=len(shown) > SHOWN,
        total=len(shown),
        filters=filters,
        filter_error=_(filters.error) if filters.error else None,
        services=[(c, catalogue.service_name(c, lang)) for c in consumers],
    )
