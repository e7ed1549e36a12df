"""Release a person's data to a consumer exactly as an active consent allows, or nothing.

Order matters: decide (now, from the database, never from the token alone), fetch from the
source with a token naming only the permitted fields, filter again, then decide once more and
append `data.released` in one transaction, and only then answer. A consent withdrawn while the
source was answering therefore stops the release, and no bytes leave without their entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session, col

from broker.consents import repository as consent_repo
from broker.consents import service as consents
from broker.errors import NotFound, ReleaseDenied, SourceFailed, SourceTimedOut
from broker.ledger.events import EventType, LogRecord, canonical_json
from broker.ledger.sequencer import Ledger, LogAppender
from broker.observability.metrics import count_release
from broker.releases.source_tokens import issue_source_token, source_audience
from broker.storage import transaction
from broker.storage.tables import DataCategory, PersonIdentity
from connectors.base import (
    Connector,
    ConnectorError,
    FetchRequest,
    Record,
    SourceTimeout,
)
from keys import KeyStore
from policies import DenyReason, ReleaseDecision, ReleaseRequest


def source_issuer(source_id: str) -> str:
    """The issuer of the identities by which a source knows the persons it holds data on."""
    return source_audience(source_id)


@dataclass(frozen=True)
class DataRequest:
    """A consumer's request for one category, as its verified access token allows."""

    consumer: str
    consent_ids: tuple[str, ...]
    category: str
    fields: frozenset[str] | None = None


class Release(BaseModel):
    """What was released, the SHA-256 of its canonical JSON, and the log entry that records it."""

    log_index: int
    sha256: str
    released: dict[str, Any]


@dataclass(frozen=True)
class _Plan:
    person_id: str | None
    source: str
    purpose: str
    decision: ReleaseDecision


def release(
    engine: Engine,
    ledger: Ledger,
    keystore: KeyStore,
    sources: Mapping[str, Connector],
    *,
    issuer: str,
    request: DataRequest,
    now: datetime,
) -> Release:
    """Release what an active consent permits; ReleaseDenied or SourceFailed, each logged."""
    with transaction(engine, readonly=True) as session:
        plan = _plan(session, request, now)
        subject = _subject_at_source(session, plan) if plan.decision.permitted else None
    if not plan.decision.permitted:
        index = ledger.run(lambda _, log: _log_denial(log, request, plan, now))
        count_release(request.category, "denied", plan.decision.reason.value)
        raise ReleaseDenied(
            _denial_text(plan.decision.reason), reason=plan.decision.reason.value, log_index=index
        )
    consent_id = plan.decision.consent_id
    assert consent_id is not None  # a permit always names its consent
    fields = tuple(sorted(plan.decision.fields))
    connector = sources.get(plan.source)
    try:
        if connector is None:
            raise ConnectorError("the source is not connected to the broker")
        if subject is None:
            raise ConnectorError("the source does not know this person")
        token = issue_source_token(
            keystore,
            issuer=issuer,
            audience=connector.audience,
            subject=subject,
            consent_id=consent_id,
            category=request.category,
            fields=fields,
            purpose=plan.purpose,
            now=now,
        )
        records = connector.fetch(FetchRequest(subject, request.category, fields, token))
    except ConnectorError as failure:
        reason = failure.reason
        timed_out = isinstance(failure, SourceTimeout)
        index = ledger.run(lambda _, log: _log_failure(log, request, plan, reason, now))
        count_release(request.category, "failed")
        kind = SourceTimedOut if timed_out else SourceFailed
        raise kind(
            f"The source {plan.source} failed: {reason}. Nothing was released.", log_index=index
        ) from None
    released = {
        "consent_id": consent_id,
        "category": request.category,
        "fields": list(fields),
        "records": [_only(record, fields) for record in records],
    }
    digest = hashlib.sha256(canonical_json(released)).hexdigest()
    outcome = ledger.run(
        lambda session, log: _log_release(session, log, request, plan, released, digest, now)
    )
    if isinstance(outcome, ReleaseDenied):
        count_release(request.category, "denied", outcome.reason)
        raise outcome
    count_release(request.category, "released")
    return Release(log_index=outcome, sha256=digest, released=released)


# Built once: building a statement costs more than running it (the release path is hot).
_CATEGORY_SOURCE = sa.select(col(DataCategory.source_id)).where(
    col(DataCategory.code) == sa.bindparam("code")
)
_SUBJECT = (
    sa.select(col(PersonIdentity.subject))
    .where(
        col(PersonIdentity.person_id) == sa.bindparam("person_id"),
        col(PersonIdentity.issuer) == sa.bindparam("issuer"),
    )
    .limit(1)
)


def _plan(session: Session, request: DataRequest, now: datetime) -> _Plan:
    source = session.execute(_CATEGORY_SOURCE, {"code": request.category}).scalar()
    if source is None:
        raise NotFound(f"There is no data category {request.category!r}.")
    found = consent_repo.parties_of(session, request.consent_ids)
    held = [
        found[cid]
        for cid in request.consent_ids
        if cid in found and found[cid].consumer_id == request.consumer
    ]
    person_id = held[0].person_id if held else None
    covering = [p for p in held if p.source_id == source and p.person_id == person_id]
    purpose = covering[0].purpose_code if covering else (held[0].purpose_code if held else "")
    if person_id is None:
        decision = ReleaseDecision.deny(DenyReason.NO_CONSENT)
    else:
        decision = consents.decide_release(
            session,
            _asked(request, person_id, source, purpose),
            now,
            under=set(request.consent_ids),
        )
    return _Plan(person_id, source, purpose, decision)


def _asked(request: DataRequest, person_id: str, source: str, purpose: str) -> ReleaseRequest:
    return ReleaseRequest(
        person_id=person_id,
        consumer=request.consumer,
        source=source,
        category=request.category,
        purpose=purpose,
        fields=request.fields,
    )


def _recheck(session: Session, request: DataRequest, plan: _Plan, now: datetime) -> _Plan:
    """The first decision taken again, against the one consent that permitted it.

    Deciding over all the token's consents again would find the same one while it still permits
    (a consent's person, agreement, fields and window never change and its state only ever
    leaves `given`); if it no longer does, the release made under it is denied, whatever
    another consent would allow.
    """
    # Only a permitted plan gets this far, and a permit always names its person and consent.
    assert plan.person_id is not None
    assert plan.decision.consent_id is not None
    decision = consents.decide_release(
        session,
        _asked(request, plan.person_id, plan.source, plan.purpose),
        now,
        under={plan.decision.consent_id},
    )
    return _Plan(plan.person_id, plan.source, plan.purpose, decision)


def _subject_at_source(session: Session, plan: _Plan) -> str | None:
    params = {"person_id": plan.person_id, "issuer": source_issuer(plan.source)}
    subject: str | None = session.execute(_SUBJECT, params).scalar()
    return subject


def _only(record: Record, fields: tuple[str, ...]) -> dict[str, Any]:
    # Defence in depth: whatever the source sent, only permitted fields pass.
    return {name: record[name] for name in fields if name in record}


def _attributes(request: DataRequest, plan: _Plan) -> dict[str, Any]:
    return {
        "consumer": request.consumer,
        "source": plan.source,
        "purpose": plan.purpose,
        "category": request.category,
    }


def _log_denial(log: LogAppender, request: DataRequest, plan: _Plan, now: datetime) -> int:
    decision = plan.decision
    return log.append(
        LogRecord(
            type=EventType.DATA_RELEASE_DENIED,
            at=now,
            person_id=plan.person_id,
            consent_id=decision.consent_id,
            attributes={
                **_attributes(request, plan),
                "consent": decision.consent_id,
                "reason": decision.reason.value,
                "fields": sorted(request.fields or ()),
            },
        )
    )


def _log_failure(
    log: LogAppender, request: DataRequest, plan: _Plan, reason: str, now: datetime
) -> int:
    return log.append(
        LogRecord(
            type=EventType.DATA_RELEASE_FAILED,
            at=now,
            person_id=plan.person_id,
            consent_id=plan.decision.consent_id,
            attributes={
                **_attributes(request, plan),
                "consent": plan.decision.consent_id,
                "reason": reason,
                "fields": sorted(plan.decision.fields),
            },
        )
    )


def _log_release(
    session: Session,
    log: LogAppender,
    request: DataRequest,
    plan: _Plan,
    released: dict[str, Any],
    digest: str,
    now: datetime,
) -> int | ReleaseDenied:
    # Decide again inside the transaction that logs: the consent may have ended meanwhile.
    again = _recheck(session, request, plan, now)
    fields = set(released["fields"])
    if not again.decision.permitted or not fields <= again.decision.fields:
        index = _log_denial(log, request, again, now)
        return ReleaseDenied(
            _denial_text(again.decision.reason), reason=again.decision.reason.value, log_index=index
        )
    return log.append(
        LogRecord(
            type=EventType.DATA_RELEASED,
            at=now,
            person_id=plan.person_id,
            consent_id=released["consent_id"],
            attributes={
                **_attributes(request, plan),
                "consent": released["consent_id"],
                "fields": list(released["fields"]),
                "records": len(released["records"]),
                "sha256": digest,
            },
        )
    )


_DENIALS = {
    DenyReason.NO_CONSENT: "No consent of this person covers this data for you.",
    DenyReason.NO_FIELDS_GRANTED: "The consent grants none of the fields asked for.",
    DenyReason.CONSENT_NOT_YET_VALID: "The consent is not valid yet.",
    DenyReason.CONSENT_EXPIRED: "The consent has expired.",
    DenyReason.CONSENT_WITHDRAWN: "The person has withdrawn the consent.",
    DenyReason.CONSENT_REVOKED: "The consent was revoked.",
    DenyReason.CONSENT_REFUSED: "The person refused consent.",
    DenyReason.CONSENT_INVALIDATED: "The consent is no longer valid.",
    DenyReason.PURPOSE_MISMATCH: "The consent is for another purpose.",
}


def _denial_text(reason: DenyReason) -> str:
    return _DENIALS.get(reason, "No consent permits this release.") + " Nothing was released."
