"""What a receipt is built from: one consent and the catalogue texts around it, read once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from broker.catalogue import repository as catalogue
from broker.catalogue.schema import LocalizedText
from broker.catalogue.views import PurposeView, ServiceView
from broker.consents import service as consents
from broker.consents.service import ConsentRecord
from broker.errors import NotFound
from broker.storage.tables import DataAgreement, DataCategory, DataField, Person, Purpose, Service


@dataclass(frozen=True)
class ReceiptField:
    """One field the agreement asks for, and whether this consent grants it."""

    category: str
    name: str
    description: LocalizedText
    required: bool
    granted: bool
    special_category: bool

    @property
    def ref(self) -> str:
        """`category.field`, the name used in consents and log entries."""
        return f"{self.category}.{self.name}"


@dataclass(frozen=True)
class ReceiptCategory:
    """A data category the agreement asks for, with its fields."""

    code: str
    name: LocalizedText
    fields: tuple[ReceiptField, ...]


@dataclass(frozen=True)
class ReceiptSubject:
    """A consent at `now`, with its agreement version, services, purpose and categories.

    `language` is the language the receipt's texts are in; `broker_url` the broker's public
    base URL (where the person withdraws, and the issuer of the receipt).
    """

    consent: ConsentRecord
    agreement_id: str
    agreement_version: int
    agreement_title: LocalizedText
    lawful_basis: str
    retention_days: int
    published_at: datetime
    consumer: ServiceView
    source: ServiceView
    purpose: PurposeView
    categories: tuple[ReceiptCategory, ...]
    person_id: str
    person_name: str
    actor_names: dict[str, str]
    broker_url: str
    language: str
    now: datetime

    @property
    def fields(self) -> tuple[ReceiptField, ...]:
        """Every field the agreement asks for, category by category."""
        return tuple(f for c in self.categories for f in c.fields)

    @property
    def withdrawal_url(self) -> str:
        """The page where the person withdraws this consent."""
        return f"{self.broker_url}/my/consents/{self.consent.id}/withdraw"

    def text(self, value: LocalizedText) -> str:
        """A catalogue text in the receipt's language."""
        return value.in_language(self.language)


def load_subject(
    session: Session, consent_id: str, *, now: datetime, language: str, broker_url: str
) -> ReceiptSubject:
    """Everything a receipt of `consent_id` says; NotFound if there is no such consent.

    Callers check first that the asker may see the consent (see `consents_seen_by`).
    """
    record = consents.get_consent(session, consent_id, now)
    agreement = catalogue.get_agreement(session, record.agreement_id, record.agreement_version)
    if agreement is None or agreement.pk is None:
        raise NotFound(f"There is no agreement {record.agreement_id!r}.")
    consumer = _service(session, agreement.consumer_id)
    source = _service(session, agreement.source_id)
    purpose = session.get(Purpose, agreement.purpose_code)
    person = session.get(Person, record.person_id)
    if purpose is None or person is None:
        raise NotFound(f"The consent {consent_id!r} names something that no longer exists.")
    actor_ids = {record.given_by} | {e.actor_id for e in record.history if e.actor_id}
    actors = session.exec(select(Person).where(col(Person.id).in_(actor_ids))).all()
    return ReceiptSubject(
        consent=record,
        agreement_id=agreement.agreement_id,
        agreement_version=agreement.version,
        agreement_title=LocalizedText.model_validate(agreement.title),
        lawful_basis=agreement.lawful_basis,
        retention_days=agreement.retention_days,
        published_at=agreement.published_at,
        consumer=ServiceView.of(consumer),
        source=ServiceView.of(source),
        purpose=PurposeView.of(purpose),
        categories=_categories(session, agreement, record),
        person_id=person.id,
        person_name=person.display_name,
        actor_names={p.id: p.display_name for p in actors},
        broker_url=broker_url.rstrip("/"),
        language=language,
        now=now,
    )


def _service(session: Session, service_id: str) -> Service:
    row = session.get(Service, service_id)
    if row is None:
        raise NotFound(f"There is no service {service_id!r}.")
    return row


def _categories(
    session: Session, agreement: DataAgreement, record: ConsentRecord
) -> tuple[ReceiptCategory, ...]:
    assert agreement.pk is not None
    granted = {(f.category, f.field) for f in record.fields}
    asked: dict[str, list[tuple[str, bool]]] = {}
    for row in catalogue.agreement_fields(session, agreement.pk):
        asked.setdefault(row.category_code, []).append((row.field_name, row.required))
    out = []
    for code, wanted in asked.items():
        category = session.get(DataCategory, code)
        if category is None:
            raise NotFound(f"There is no data category {code!r}.")
        described = {
            f.name: f
            for f in session.exec(select(DataField).where(DataField.category_code == code)).all()
        }
        out.append(
            ReceiptCategory(
                code=code,
                name=LocalizedText.model_validate(category.name),
                fields=tuple(
                    ReceiptField(
                        category=code,
                        name=name,
                        description=LocalizedText.model_validate(described[name].description),
                        required=required,
                        granted=(code, name) in granted,
                        special_category=described[name].special_category,
                    )
                    for name, required in wanted
                ),
            )
        )
    return tuple(out)
