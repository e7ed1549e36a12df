"""Small reads of the catalogue tables."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, func, select

from broker.storage.tables import (
    AgreementField,
    DataAgreement,
    DataCategory,
    DataField,
    Purpose,
    Service,
)


def list_services(session: Session) -> Sequence[Service]:
    """Every service, by id."""
    return session.exec(select(Service).order_by(col(Service.id))).all()


def list_categories(session: Session) -> Sequence[DataCategory]:
    """Every data category, by code."""
    return session.exec(select(DataCategory).order_by(col(DataCategory.code))).all()


def fields_of(session: Session, category_code: str) -> Sequence[DataField]:
    """The fields of one category, in the order they were declared (by name)."""
    stmt = select(DataField).where(DataField.category_code == category_code)
    return session.exec(stmt.order_by(col(DataField.name))).all()


def list_purposes(session: Session) -> Sequence[Purpose]:
    """Every purpose, by code."""
    return session.exec(select(Purpose).order_by(col(Purpose.code))).all()


def list_agreements(session: Session) -> Sequence[DataAgreement]:
    """Every published agreement version, by id and version."""
    stmt = select(DataAgreement).order_by(
        col(DataAgreement.agreement_id), col(DataAgreement.version)
    )
    return session.exec(stmt).all()


def get_agreement(session: Session, agreement_id: str, version: int | None) -> DataAgreement | None:
    """One agreement version, or its latest version when `version` is None."""
    stmt = select(DataAgreement).where(DataAgreement.agreement_id == agreement_id)
    if version is not None:
        return session.exec(stmt.where(DataAgreement.version == version)).first()
    return session.exec(stmt.order_by(col(DataAgreement.version).desc())).first()


def latest_version(session: Session, agreement_id: str) -> int:
    """The highest published version of an agreement, 0 if none."""
    stmt = select(func.max(DataAgreement.version)).where(DataAgreement.agreement_id == agreement_id)
    return session.exec(stmt).one() or 0


def agreement_fields(session: Session, agreement_pk: int) -> Sequence[AgreementField]:
    """The fields one agreement version asks for."""
    stmt = select(AgreementField).where(AgreementField.agreement_pk == agreement_pk)
    return session.exec(
        stmt.order_by(col(AgreementField.category_code), col(AgreementField.field_name))
    ).all()
