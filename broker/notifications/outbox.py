"""The notification outbox: enqueue in the change's transaction, claim, mark, retry schedule.

A row is claimed by moving its `next_attempt_at` a lease ahead (and counting the attempt) in a
short transaction that locks it with `FOR UPDATE SKIP LOCKED`; on SQLite, where that clause is
not rendered, the write lock taken at BEGIN serialises claims instead. The HTTP request then
runs outside any transaction, and its outcome is written only if nobody re-claimed the row
meanwhile. A process that dies mid-delivery leaves the row to be claimed again when the lease
ends: delivery is at least once, and receivers de-duplicate by the notification's `jti`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine
from sqlmodel import Session, col, select, update

from broker.storage import transaction
from broker.storage.tables import Consent, DataAgreement, NotificationOutbox, OAuthClient

JITTER = 0.25
"""The largest share of a retry delay taken off at random, so that retries do not bunch up."""


class NotificationEvent(StrEnum):
    """The consent changes consumers are told of (the audit log's names for them)."""

    WITHDRAWN = "consent.withdrawn"
    EXPIRED = "consent.expired"
    REVOKED = "consent.revoked"


_NOTIFIED = frozenset(e.value for e in NotificationEvent)


@dataclass(frozen=True)
class Claimed:
    """A notification claimed for one attempt. `person_id` is only for deriving the pairwise
    subject; it is never sent."""

    id: str
    attempt: int
    event: NotificationEvent
    at: datetime
    consent_id: str
    agreement_id: str
    agreement_version: int
    person_id: str
    client_id: str
    sector: str
    webhook_url: str


def enqueue(
    session: Session, *, consent_id: str, consumer_id: str, event: str, at: datetime
) -> list[str]:
    """Add a row for each enabled client of `consumer_id` that has a webhook, due at once.

    Runs in the caller's transaction; returns the new rows' ids (empty for an event that is not
    notified, or a consumer with no webhook).
    """
    if event not in _NOTIFIED:
        return []
    stmt = (
        select(OAuthClient.client_id)
        .where(
            OAuthClient.service_id == consumer_id,
            col(OAuthClient.disabled_at).is_(None),
            col(OAuthClient.webhook_url).is_not(None),
        )
        .order_by(col(OAuthClient.client_id))
    )
    ids: list[str] = []
    for client_id in session.exec(stmt).all():
        row = NotificationOutbox(
            id=uuid.uuid4().hex,
            consent_id=consent_id,
            client_id=client_id,
            event=NotificationEvent(event).value,
            at=at,
            next_attempt_at=at,
            created_at=at,
        )
        session.add(row)
        ids.append(row.id)
    return ids


def has_due(engine: Engine, now: datetime) -> bool:
    """Whether any row is due at `now`: a read-only look, so idle polling takes no write lock."""
    with transaction(engine, readonly=True) as session:
        stmt = select(NotificationOutbox.id).where(col(NotificationOutbox.next_attempt_at) <= now)
        return session.exec(stmt.limit(1)).first() is not None


def claim(engine: Engine, now: datetime, *, limit: int, lease: timedelta) -> list[Claimed]:
    """Claim up to `limit` due rows for one attempt each, oldest due first.

    Rows whose client has since been disabled or lost its webhook are given up on instead.
    """
    with transaction(engine) as session:
        stmt = (
            select(NotificationOutbox)
            .where(col(NotificationOutbox.next_attempt_at) <= now)
            .order_by(col(NotificationOutbox.next_attempt_at), col(NotificationOutbox.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = session.exec(stmt).all()
        if not rows:
            return []
        consents = _consents(session, {r.consent_id for r in rows})
        clients = _clients(session, {r.client_id for r in rows})
        claimed: list[Claimed] = []
        for row in rows:
            row.attempts += 1
            client = clients.get(row.client_id)
            consent, agreement = consents[row.consent_id]
            if client is None or client.disabled_at is not None or not client.webhook_url:
                row.next_attempt_at = None
                row.failed_at = now
                row.last_error = "the client is disabled or has no webhook any more"
            else:
                row.next_attempt_at = now + lease
                claimed.append(
                    Claimed(
                        id=row.id,
                        attempt=row.attempts,
                        event=NotificationEvent(row.event),
                        at=row.at,
                        consent_id=consent.id,
                        agreement_id=agreement.agreement_id,
                        agreement_version=agreement.version,
                        person_id=consent.person_id,
                        client_id=client.client_id,
                        # The sector of pairwise subjects, exactly as access tokens use it.
                        sector=client.service_id or client.client_id,
                        webhook_url=client.webhook_url,
                    )
                )
            session.add(row)
    return claimed


def mark_delivered(engine: Engine, claimed: Claimed, now: datetime) -> bool:
    """Record a 2xx answer; False if the row was re-claimed meanwhile (its lease ran out)."""
    with transaction(engine) as session:
        return _settle(
            session,
            claimed,
            delivered_at=now,
            next_attempt_at=None,
        )


def mark_failed(
    engine: Engine, claimed: Claimed, now: datetime, error: str, *, retry_at: datetime | None
) -> bool:
    """Record a failed attempt: retry at `retry_at`, or give up for good when it is None.

    `error` must name only what failed (a status code, a network error's kind), never a body.
    False if the row was re-claimed meanwhile.
    """
    with transaction(engine) as session:
        return _settle(
            session,
            claimed,
            next_attempt_at=retry_at,
            failed_at=now if retry_at is None else None,
            last_error=error[:200],
        )


def release(engine: Engine, claimed: list[Claimed]) -> None:
    """Give back claims never attempted (the broker is stopping): due at once, uncounted."""
    with transaction(engine) as session:
        for item in claimed:
            session.exec(
                update(NotificationOutbox)
                .where(
                    col(NotificationOutbox.id) == item.id,
                    col(NotificationOutbox.attempts) == item.attempt,
                )
                .values(attempts=item.attempt - 1, next_attempt_at=item.at)
            )


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after failed attempt `attempt` (from 1): `base`·2^(attempt-1), at most
    `cap`, less `jitter`·JITTER of it (`jitter` in [0, 1), random in use)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    nominal = min(cap, base * 2.0 ** min(attempt - 1, 64))
    return nominal * (1.0 - JITTER * jitter)


def _settle(session: Session, claimed: Claimed, **values: object) -> bool:
    # Only the holder of the latest claim may settle the row: a worker whose lease ran out
    # must not overwrite the outcome of the one that re-claimed it.
    result = session.exec(
        update(NotificationOutbox)
        .where(
            col(NotificationOutbox.id) == claimed.id,
            col(NotificationOutbox.attempts) == claimed.attempt,
            col(NotificationOutbox.delivered_at).is_(None),
        )
        .values(**values)
    )
    return bool(result.rowcount)


def _consents(session: Session, ids: set[str]) -> dict[str, tuple[Consent, DataAgreement]]:
    stmt = (
        select(Consent, DataAgreement)
        .join(DataAgreement, col(DataAgreement.pk) == col(Consent.agreement_pk))
        .where(col(Consent.id).in_(ids))
    )
    return {consent.id: (consent, agreement) for consent, agreement in session.exec(stmt).all()}


def _clients(session: Session, ids: set[str]) -> dict[str, OAuthClient]:
    stmt = select(OAuthClient).where(col(OAuthClient.client_id).in_(ids))
    return {client.client_id: client for client in session.exec(stmt).all()}
