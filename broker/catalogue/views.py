"""The catalogue as the public API shows it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from broker.catalogue.schema import LocalizedText
from broker.storage.tables import (
    AgreementField,
    DataAgreement,
    DataCategory,
    DataField,
    Purpose,
    Service,
)


class ServiceView(BaseModel):
    """An integrated service as the public catalogue shows it."""

    id: str
    roles: list[str]
    organisation: str
    contact: str
    privacy_notice_url: str
    name: LocalizedText
    description: LocalizedText

    @classmethod
    def of(cls, row: Service) -> ServiceView:
        """The view of a stored service."""
        roles = [r for r, on in (("source", row.is_source), ("consumer", row.is_consumer)) if on]
        return cls(
            id=row.id,
            roles=roles,
            organisation=row.organisation,
            contact=row.contact,
            privacy_notice_url=row.privacy_notice_url,
            name=LocalizedText.model_validate(row.name),
            description=LocalizedText.model_validate(row.description),
        )


class FieldView(BaseModel):
    """One field of a data category."""

    name: str
    description: LocalizedText
    special_category: bool


class CategoryView(BaseModel):
    """A data category with its fields."""

    code: str
    source: str
    name: LocalizedText
    description: LocalizedText
    fields: list[FieldView]

    @classmethod
    def of(cls, row: DataCategory, fields: Sequence[DataField]) -> CategoryView:
        """The view of a stored category and its fields."""
        return cls(
            code=row.code,
            source=row.source_id,
            name=LocalizedText.model_validate(row.name),
            description=LocalizedText.model_validate(row.description),
            fields=[
                FieldView(
                    name=f.name,
                    description=LocalizedText.model_validate(f.description),
                    special_category=f.special_category,
                )
                for f in fields
            ],
        )


class PurposeView(BaseModel):
    """A purpose of processing."""

    code: str
    dpv: str
    name: LocalizedText
    description: LocalizedText

    @classmethod
    def of(cls, row: Purpose) -> PurposeView:
        """The view of a stored purpose."""
        return cls(
            code=row.code,
            dpv=row.dpv,
            name=LocalizedText.model_validate(row.name),
            description=LocalizedText.model_validate(row.description),
        )


class AgreementItemView(BaseModel):
    """The fields of one category that an agreement version asks for."""

    category: str
    required: list[str]
    optional: list[str]


class AgreementView(BaseModel):
    """One published agreement version."""

    id: str
    version: int
    consumer: str
    source: str
    purpose: str
    lawful_basis: str
    retention_days: int
    max_consent_days: int
    title: LocalizedText
    items: list[AgreementItemView]
    published_at: datetime

    @classmethod
    def of(cls, row: DataAgreement, fields: Sequence[AgreementField]) -> AgreementView:
        """The view of a stored agreement version and its fields."""
        items: dict[str, AgreementItemView] = {}
        for f in fields:
            item = items.setdefault(
                f.category_code,
                AgreementItemView(category=f.category_code, required=[], optional=[]),
            )
            (item.required if f.required else item.optional).append(f.field_name)
        return cls(
            id=row.agreement_id,
            version=row.version,
            consumer=row.consumer_id,
            source=row.source_id,
            purpose=row.purpose_code,
            lawful_basis=row.lawful_basis,
            retention_days=row.retention_days,
            max_consent_days=row.max_consent_days,
            title=LocalizedText.model_validate(row.title),
            items=list(items.values()),
            published_at=row.published_at,
        )
