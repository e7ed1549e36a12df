"""The catalogue file: services, data categories, purposes, agreements, and (for demos) persons.

An operator loads one with `broker catalogue load FILE` (YAML or JSON). The file is validated as a
whole before anything is written, so a bad file changes nothing.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, model_validator

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
CategoryCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
PurposeCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,62}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]

# The width of the stored version column (a 32-bit integer on PostgreSQL).
MAX_VERSION = 2**31 - 1
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Language(StrEnum):
    """The languages every text of the broker is given in."""

    FI = "fi"
    SV = "sv"
    EN = "en"


class LocalizedText(BaseModel):
    """A text in Finnish, Swedish and English; all three are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fi: NonEmpty
    sv: NonEmpty
    en: NonEmpty

    def in_language(self, language: Language | str) -> str:
        """The text in `language`, Finnish when the language is not one of ours."""
        return str(getattr(self, str(language), self.fi))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceRole(StrEnum):
    """What an integrated service does: holds data (source), receives it (consumer), or both."""

    SOURCE = "source"
    CONSUMER = "consumer"


class ServiceSpec(_Strict):
    """An integrated service and the organisation answerable for it."""

    id: Slug
    roles: Annotated[list[ServiceRole], Field(min_length=1, max_length=2)]
    organisation: NonEmpty
    contact: NonEmpty
    privacy_notice_url: AnyHttpUrl
    name: LocalizedText
    description: LocalizedText

    @model_validator(mode="after")
    def _check(self) -> ServiceSpec:
        if len(set(self.roles)) != len(self.roles):
            raise ValueError("a role is listed twice")
        if not _EMAIL.match(self.contact):
            raise ValueError("contact must be an e-mail address")
        return self


class FieldSpec(_Strict):
    """One field of a data category, described for the person in plain language."""

    name: FieldName
    description: LocalizedText
    special_category: bool = False


class CategorySpec(_Strict):
    """A kind of data one source service holds, e.g. `health.lab_results`."""

    code: CategoryCode
    source: Slug
    name: LocalizedText
    description: LocalizedText
    fields: Annotated[list[FieldSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_fields(self) -> CategorySpec:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"category {self.code} lists a field twice")
        return self


class PurposeSpec(_Strict):
    """Why data is used, in plain language, with the W3C DPV concept it refines."""

    code: PurposeCode
    dpv: Annotated[str, StringConstraints(pattern=r"^https://w3id\.org/dpv(/[a-z-]+)*#\w+$")]
    name: LocalizedText
    description: LocalizedText


class AgreementItem(_Strict):
    """Fields of one category that an agreement asks for; the person may leave out `optional`."""

    category: CategoryCode
    required: list[FieldName] = []
    optional: list[FieldName] = []

    @model_validator(mode="after")
    def _check(self) -> AgreementItem:
        every = self.required + self.optional
        if not every:
            raise ValueError(f"agreement item for {self.category} names no fields")
        if len(set(every)) != len(every):
            raise ValueError(f"agreement item for {self.category} lists a field twice")
        return self


class LawfulBasis(StrEnum):
    """GDPR lawful bases, as DPV names them; a consent broker mostly deals in the first."""

    CONSENT = "https://w3id.org/dpv#Consent"
    EXPLICIT_CONSENT = "https://w3id.org/dpv#ExplicitlyExpressedConsent"


class AgreementSpec(_Strict):
    """One version of what a consumer asks of a source for one purpose; immutable once published."""

    id: Slug
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)]
    consumer: Slug
    source: Slug
    purpose: PurposeCode
    lawful_basis: LawfulBasis = LawfulBasis.EXPLICIT_CONSENT
    retention_days: Annotated[int, Field(ge=1, le=36500)]
    max_consent_days: Annotated[int, Field(ge=1, le=3650)]
    title: LocalizedText
    items: Annotated[list[AgreementItem], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_categories(self) -> AgreementSpec:
        cats = [i.category for i in self.items]
        if len(set(cats)) != len(cats):
            raise ValueError(f"agreement {self.id} lists a category twice")
        return self


SourceIssuer = Annotated[
    str, StringConstraints(pattern=r"^urn:omadata:source:[a-z0-9][a-z0-9-]{0,62}$")
]


class IdentitySpec(_Strict):
    """An identity (issuer and subject) of the person elsewhere.

    An http(s) issuer is an identity provider the person signs in with; `urn:omadata:source:ID`
    is how source service ID knows the person, the subject the broker names when it fetches.
    """

    issuer: AnyHttpUrl | SourceIssuer
    subject: NonEmpty


class PersonSpec(_Strict):
    """A data subject; loaded from catalogue files only for demos and tests."""

    id: Slug
    display_name: NonEmpty
    language: Language = Language.FI
    birth_date: date | None = None
    identities: list[IdentitySpec] = []


class DelegationKind(StrEnum):
    """Why someone may act for another: a child's guardian, or a mandate given by the person."""

    GUARDIAN = "guardian"
    MANDATE = "mandate"


class DelegationScope(StrEnum):
    """What a delegate may do for the principal."""

    VIEW = "view"
    CONSENT = "consent"


class DelegationSpec(_Strict):
    """Person `delegate` may act for person `principal` within `scope`, from..until."""

    delegate: Slug
    principal: Slug
    kind: DelegationKind
    scope: Annotated[list[DelegationScope], Field(min_length=1)]
    valid_from: date
    valid_until: date

    @model_validator(mode="after")
    def _check(self) -> DelegationSpec:
        if self.delegate == self.principal:
            raise ValueError("a person cannot be their own delegate")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class CatalogueFile(_Strict):
    """A whole catalogue file. Cross-references are checked by the loader against the database."""

    services: list[ServiceSpec] = []
    categories: list[CategorySpec] = []
    purposes: list[PurposeSpec] = []
    agreements: list[AgreementSpec] = []
    persons: list[PersonSpec] = []
    delegations: list[DelegationSpec] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> CatalogueFile:
        for kind, keys in (
            ("service", [s.id for s in self.services]),
            ("category", [c.code for c in self.categories]),
            ("purpose", [p.code for p in self.purposes]),
            ("agreement version", [f"{a.id} v{a.version}" for a in self.agreements]),
            ("person", [p.id for p in self.persons]),
        ):
            seen: set[str] = set()
            for key in keys:
                if key in seen:
                    raise ValueError(f"{kind} {key} appears twice")
                seen.add(key)
        return self
