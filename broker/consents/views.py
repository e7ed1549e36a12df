"""Consents as an integrated service may see them: pseudonymous, only those that name it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlmodel import Session, col, select

from broker.auth.secrets import pairwise_subject, server_secret
from broker.consents import repository as repo
from broker.errors import NotFound
from broker.oauth.issuer import PAIRWISE_SECRET
from broker.storage.tables import Consent, DataAgreement
from policies import ConsentStatus, effective_status
from policies.model import ConsentGrant


class ServiceRole(StrEnum):
    """Which side of an agreement the asking service is on."""

    CONSUMER = "consumer"
    SOURCE = "source"


class ServiceConsent(BaseModel):
    """A consent that names the asking service; `subject` is the person's pairwise id for it."""

    id: str
    subject: str
    agreement_id: str
    agreement_version: int
    consumer: str
    source: str
    purpose: str
    status: ConsentStatus
    valid_from: datetime
    valid_until: datetime
    fields: list[str]


def consent_naming(
    session: Session, service_id: str, role: ServiceRole, consent_id: str, now: datetime
) -> ServiceConsent:
    """One consent whose agreement names `service_id`; NotFound for any other."""
    found = consents_naming(session, service_id, role, now, consent_id=consent_id)
    if not found:
        raise NotFound(f"There is no consent {consent_id!r} that names you.")
    return found[0]


def consents_naming(
    session: Session,
    service_id: str,
    role: ServiceRole,
    now: datetime,
    *,
    consent_id: str | None = None,
) -> list[ServiceConsent]:
    """Every consent whose agreement names `service_id` as consumer or source, newest first."""
    side = DataAgreement.consumer_id if role is ServiceRole.CONSUMER else DataAgreement.source_id
    query = (
        select(Consent, DataAgreement)
        .join(DataAgreement, col(DataAgreement.pk) == col(Consent.agreement_pk))
        .where(side == service_id)
    )
    if consent_id is not None:
        query = query.where(Consent.id == consent_id)
    rows = session.exec(query.order_by(col(Consent.created_at).desc(), col(Consent.id))).all()
    fields = repo.fields_of_many(session, [c.id for c, _ in rows])
    secret = server_secret(session, PAIRWISE_SECRET, now)
    out = []
    for consent, agreement in rows:
        grant = ConsentGrant(
            consent_id=consent.id,
            person_id=consent.person_id,
            consumer=agreement.consumer_id,
            source=agreement.source_id,
            purpose=agreement.purpose_code,
            fields=frozenset(),
            status=ConsentStatus(consent.status),
            valid_from=consent.valid_from,
            valid_until=consent.valid_until,
        )
        out.append(
            ServiceConsent(
                id=consent.id,
                subject=pairwise_subject(secret, service_id, consent.person_id),
                agreement_id=agreement.agreement_id,
                agreement_version=agreement.version,
                consumer=agreement.consumer_id,
                source=agreement.source_id,
                purpose=agreement.purpose_code,
                status=effective_status(grant, now),
                valid_from=consent.valid_from,
                valid_until=consent.valid_until,
                fields=[f"{f.category_code}.{f.field_name}" for f in fields[consent.id]],
            )
        )
    return out
