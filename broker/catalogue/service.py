"""Catalogue use cases: load a catalogue file, publish an agreement version, read the catalogue.

Each function runs inside the caller's transaction and never commits; a raise rolls back all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from broker.catalogue import repository as repo
from broker.catalogue.schema import (
    AgreementSpec,
    CatalogueFile,
    CategorySpec,
    LocalizedText,
    PersonSpec,
    PurposeSpec,
    ServiceRole,
    ServiceSpec,
)
from broker.catalogue.views import AgreementView, CategoryView, PurposeView, ServiceView
from broker.errors import CatalogueInvalid, Conflict, InvalidInput, NotFound
from broker.ledger.events import EventType, LogRecord
from broker.ledger.sequencer import LogAppender
from broker.people import service as people
from broker.storage.tables import (
    AgreementField,
    DataAgreement,
    DataCategory,
    DataField,
    Purpose,
    Service,
)


@dataclass
class LoadReport:
    """What a catalogue load did, per kind of entity: created, updated or left unchanged."""

    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str, kind: str) -> None:
        """Count one entity of `kind` under `outcome` ("created", "updated", "unchanged")."""
        bucket: dict[str, int] = getattr(self, outcome)
        bucket[kind] = bucket.get(kind, 0) + 1

    @property
    def changed_anything(self) -> bool:
        """True when the load created or updated at least one row."""
        return bool(self.created or self.updated)


def load_catalogue(
    session: Session, log: LogAppender, catalogue: CatalogueFile, now: datetime
) -> LoadReport:
    """Store everything in `catalogue`; idempotent, and all or nothing on any inconsistency.

    Descriptive texts of services, categories and purposes may change; a category may gain
    fields but never lose them; a published agreement version never changes.
    """
    report = LoadReport()
    problems: list[str] = []
    for service in catalogue.services:
        _upsert_service(session, service, now, report)
    for category in catalogue.categories:
        _upsert_category(session, category, report, problems)
    for purpose in catalogue.purposes:
        _upsert_purpose(session, purpose, report)
    session.flush()
    for agreement in sorted(catalogue.agreements, key=lambda a: (a.id, a.version)):
        try:
            outcome = _publish_or_match(session, log, agreement, now)
        except (InvalidInput, Conflict, NotFound) as exc:
            problems.append(exc.detail)
            continue
        report.count(outcome, "agreement")
    for person in catalogue.persons:
        _add_person_once(session, person, now, report)
    session.flush()
    for delegation in catalogue.delegations:
        try:
            created = people.ensure_delegation(session, delegation, now)
        except (InvalidInput, NotFound) as exc:
            problems.append(exc.detail)
            continue
        report.count("created" if created else "unchanged", "delegation")
    if problems:
        raise CatalogueInvalid(
            f"The catalogue has {len(problems)} problem(s); nothing was loaded.", problems
        )
    session.flush()
    return report


def publish_agreement(
    session: Session, log: LogAppender, spec: AgreementSpec, now: datetime
) -> DataAgreement:
    """Publish a new agreement version; it must be exactly one above the latest version."""
    latest = repo.latest_version(session, spec.id)
    if spec.version != latest + 1:
        raise Conflict(
            f"Agreement {spec.id}: version {spec.version} cannot follow published version "
            f"{latest}; the next version is {latest + 1}."
        )
    _check_agreement_refs(session, spec)
    row = DataAgreement(
        agreement_id=spec.id,
        version=spec.version,
        consumer_id=spec.consumer,
        source_id=spec.source,
        purpose_code=spec.purpose,
        lawful_basis=str(spec.lawful_basis),
        retention_days=spec.retention_days,
        max_consent_days=spec.max_consent_days,
        title=spec.title.model_dump(),
        published_at=now,
    )
    session.add(row)
    session.flush()
    assert row.pk is not None
    for item in spec.items:
        for name in item.required + item.optional:
            session.add(
                AgreementField(
                    agreement_pk=row.pk,
                    category_code=item.category,
                    field_name=name,
                    required=name in item.required,
                )
            )
    session.flush()
    log.append(
        LogRecord(
            type=EventType.AGREEMENT_PUBLISHED,
            at=now,
            attributes={
                "agreement": spec.id,
                "agreement_version": spec.version,
                "consumer": spec.consumer,
                "source": spec.source,
                "purpose": spec.purpose,
                "lawful_basis": str(spec.lawful_basis),
                "retention_days": spec.retention_days,
                "max_consent_days": spec.max_consent_days,
                "required": sorted(f"{i.category}.{f}" for i in spec.items for f in i.required),
                "optional": sorted(f"{i.category}.{f}" for i in spec.items for f in i.optional),
            },
        )
    )
    return row


def list_services(session: Session) -> list[ServiceView]:
    """The public list of integrated services."""
    return [ServiceView.of(s) for s in repo.list_services(session)]


def get_service(session: Session, service_id: str) -> ServiceView:
    """One service; NotFound if there is none by that id."""
    row = session.get(Service, service_id)
    if row is None:
        raise NotFound(f"There is no service {service_id!r}.")
    return ServiceView.of(row)


def list_categories(session: Session) -> list[CategoryView]:
    """Every data category with its fields."""
    return [
        CategoryView.of(c, repo.fields_of(session, c.code)) for c in repo.list_categories(session)
    ]


def get_category(session: Session, code: str) -> CategoryView:
    """One data category with its fields; NotFound if unknown."""
    row = session.get(DataCategory, code)
    if row is None:
        raise NotFound(f"There is no data category {code!r}.")
    return CategoryView.of(row, repo.fields_of(session, code))


def list_purposes(session: Session) -> list[PurposeView]:
    """Every purpose."""
    return [PurposeView.of(p) for p in repo.list_purposes(session)]


def list_agreements(session: Session) -> list[AgreementView]:
    """Every published agreement version with the fields it asks for."""
    return [
        AgreementView.of(a, repo.agreement_fields(session, _pk(a)))
        for a in repo.list_agreements(session)
    ]


def get_agreement(session: Session, agreement_id: str, version: int | None) -> AgreementView:
    """One agreement version (the latest when `version` is None); NotFound if unknown."""
    row = repo.get_agreement(session, agreement_id, version)
    if row is None:
        which = "any version" if version is None else f"version {version}"
        raise NotFound(f"There is no agreement {agreement_id!r} at {which}.")
    return AgreementView.of(row, repo.agreement_fields(session, _pk(row)))


def _pk(row: DataAgreement) -> int:
    assert row.pk is not None
    return row.pk


def _texts_equal(stored: dict[str, str], text: LocalizedText) -> bool:
    return stored == text.model_dump()


def _upsert_service(session: Session, spec: ServiceSpec, now: datetime, report: LoadReport) -> None:
    values = {
        "is_source": ServiceRole.SOURCE in spec.roles,
        "is_consumer": ServiceRole.CONSUMER in spec.roles,
        "organisation": spec.organisation,
        "contact": spec.contact,
        "privacy_notice_url": str(spec.privacy_notice_url),
        "name": spec.name.model_dump(),
        "description": spec.description.model_dump(),
    }
    row = session.get(Service, spec.id)
    if row is None:
        session.add(Service.model_validate({"id": spec.id, "created_at": now, **values}))
        report.count("created", "service")
    elif any(getattr(row, k) != v for k, v in values.items()):
        for key, value in values.items():
            setattr(row, key, value)
        report.count("updated", "service")
    else:
        report.count("unchanged", "service")


def _upsert_category(
    session: Session, spec: CategorySpec, report: LoadReport, problems: list[str]
) -> None:
    source = session.get(Service, spec.source)
    if source is None:
        problems.append(f"Category {spec.code}: there is no service {spec.source!r}.")
        return
    if not source.is_source:
        problems.append(f"Category {spec.code}: service {spec.source!r} is not a data source.")
        return
    row = session.get(DataCategory, spec.code)
    existing = {f.name: f for f in repo.fields_of(session, spec.code)} if row else {}
    if row is None:
        row = DataCategory(code=spec.code, source_id=spec.source, name={}, description={})
        session.add(row)
        session.flush()
        outcome = "created"
    elif row.source_id != spec.source:
        problems.append(
            f"Category {spec.code} belongs to {row.source_id!r}; it cannot move to {spec.source!r}."
        )
        return
    else:
        outcome = "unchanged"
    removed = set(existing) - {f.name for f in spec.fields}
    if removed:
        problems.append(
            f"Category {spec.code}: fields cannot be removed once declared "
            f"(missing: {', '.join(sorted(removed))})."
        )
        return
    if not (_texts_equal(row.name, spec.name) and _texts_equal(row.description, spec.description)):
        row.name, row.description = spec.name.model_dump(), spec.description.model_dump()
        outcome = "updated" if outcome == "unchanged" else outcome
    for fspec in spec.fields:
        stored = existing.get(fspec.name)
        if stored is None:
            session.add(
                DataField(
                    category_code=spec.code,
                    name=fspec.name,
                    description=fspec.description.model_dump(),
                    special_category=fspec.special_category,
                )
            )
            outcome = "updated" if outcome == "unchanged" else outcome
        elif not _texts_equal(stored.description, fspec.description) or (
            stored.special_category != fspec.special_category
        ):
            stored.description = fspec.description.model_dump()
            stored.special_category = fspec.special_category
            outcome = "updated" if outcome == "unchanged" else outcome
    report.count(outcome, "category")


def _upsert_purpose(session: Session, spec: PurposeSpec, report: LoadReport) -> None:
    row = session.get(Purpose, spec.code)
    values = {
        "dpv": spec.dpv,
        "name": spec.name.model_dump(),
        "description": spec.description.model_dump(),
    }
    if row is None:
        session.add(Purpose.model_validate({"code": spec.code, **values}))
        report.count("created", "purpose")
    elif any(getattr(row, k) != v for k, v in values.items()):
        for key, value in values.items():
            setattr(row, key, value)
        report.count("updated", "purpose")
    else:
        report.count("unchanged", "purpose")


def _publish_or_match(
    session: Session, log: LogAppender, spec: AgreementSpec, now: datetime
) -> str:
    """Publish `spec`, or confirm it is already published exactly so; never alter a version."""
    stored = repo.get_agreement(session, spec.id, spec.version)
    if stored is None:
        publish_agreement(session, log, spec, now)
        return "created"
    if _canonical(_spec_of(session, stored)) != _canonical(spec):
        raise Conflict(
            f"Agreement {spec.id} version {spec.version} is already published with other "
            "content; published versions never change. Publish a new version instead."
        )
    return "unchanged"


def _spec_of(session: Session, row: DataAgreement) -> AgreementSpec:
    items: dict[str, dict[str, list[str]]] = {}
    for f in repo.agreement_fields(session, _pk(row)):
        item = items.setdefault(f.category_code, {"required": [], "optional": []})
        item["required" if f.required else "optional"].append(f.field_name)
    return AgreementSpec.model_validate(
        {
            "id": row.agreement_id,
            "version": row.version,
            "consumer": row.consumer_id,
            "source": row.source_id,
            "purpose": row.purpose_code,
            "lawful_basis": row.lawful_basis,
            "retention_days": row.retention_days,
            "max_consent_days": row.max_consent_days,
            "title": row.title,
            "items": [{"category": c, **v} for c, v in items.items()],
        }
    )


def _canonical(spec: AgreementSpec) -> dict[str, object]:
    """The agreement's content with list order removed, for comparing two versions' content."""
    data = spec.model_dump(mode="json")
    data["items"] = sorted(
        (
            {**i, "required": sorted(i["required"]), "optional": sorted(i["optional"])}
            for i in data["items"]
        ),
        key=lambda i: str(i["category"]),
    )
    return data


def _check_agreement_refs(session: Session, spec: AgreementSpec) -> None:
    where = f"Agreement {spec.id} v{spec.version}"
    consumer = session.get(Service, spec.consumer)
    if consumer is None or not consumer.is_consumer:
        raise InvalidInput(f"{where}: {spec.consumer!r} is not a registered consumer service.")
    source = session.get(Service, spec.source)
    if source is None or not source.is_source:
        raise InvalidInput(f"{where}: {spec.source!r} is not a registered source service.")
    if session.get(Purpose, spec.purpose) is None:
        raise InvalidInput(f"{where}: there is no purpose {spec.purpose!r}.")
    for item in spec.items:
        category = session.get(DataCategory, item.category)
        if category is None or category.source_id != spec.source:
            raise InvalidInput(
                f"{where}: {spec.source!r} declares no data category {item.category!r}."
            )
        known = {f.name for f in repo.fields_of(session, item.category)}
        unknown = sorted(set(item.required + item.optional) - known)
        if unknown:
            raise InvalidInput(
                f"{where}: category {item.category} has no field(s) {', '.join(unknown)}."
            )


def _add_person_once(session: Session, spec: PersonSpec, now: datetime, report: LoadReport) -> None:
    if people.find_person(session, spec.id) is not None:
        report.count("unchanged", "person")
        return
    people.add_person(
        session,
        display_name=spec.display_name,
        language=spec.language,
        identities=[(str(i.issuer), i.subject) for i in spec.identities],
        birth_date=spec.birth_date,
        now=now,
        person_id=spec.id,
    )
    report.count("created", "person")
