"""Value types of the consent model, as the release decision sees them.

Consent states follow the W3C Data Privacy Vocabulary (DPV): only `given` (dpv:ConsentGiven)
and `renewed` (dpv:RenewedConsentGiven) allow processing; every other state denies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ConsentStatus(StrEnum):
    """A consent's state, named after the DPV consent status concepts."""

    GIVEN = "given"
    RENEWED = "renewed"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    EXPIRED = "expired"
    INVALIDATED = "invalidated"

    @property
    def dpv_iri(self) -> str:
        """The DPV concept this state stands for."""
        return "https://w3id.org/dpv#" + _DPV_NAMES[self]

    @property
    def is_final(self) -> bool:
        """True when no later event may move the consent out of this state."""
        return self not in ACTIVE_STATES


_DPV_NAMES = {
    ConsentStatus.GIVEN: "ConsentGiven",
    ConsentStatus.RENEWED: "RenewedConsentGiven",
    ConsentStatus.REFUSED: "ConsentRefused",
    ConsentStatus.WITHDRAWN: "ConsentWithdrawn",
    ConsentStatus.REVOKED: "ConsentRevoked",
    ConsentStatus.EXPIRED: "ConsentExpired",
    ConsentStatus.INVALIDATED: "ConsentInvalidated",
}

ACTIVE_STATES = frozenset({ConsentStatus.GIVEN, ConsentStatus.RENEWED})


class ActorRole(StrEnum):
    """Who acted on a consent: the person, their guardian or delegate, an operator, the broker."""

    SELF = "self"
    GUARDIAN = "guardian"
    DELEGATE = "delegate"
    OPERATOR = "operator"
    SYSTEM = "system"


class DenyReason(StrEnum):
    """Why a release was permitted or denied, most specific first when several apply."""

    PERMITTED = "permitted"
    NO_FIELDS_GRANTED = "no_fields_granted"
    CONSENT_NOT_YET_VALID = "consent_not_yet_valid"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CONSENT_REVOKED = "consent_revoked"
    CONSENT_REFUSED = "consent_refused"
    CONSENT_INVALIDATED = "consent_invalidated"
    PURPOSE_MISMATCH = "purpose_mismatch"
    NO_CONSENT = "no_consent"


@dataclass(frozen=True, order=True)
class FieldRef:
    """One field of one data category, e.g. `health.lab_results` / `value`."""

    category: str
    field: str


@dataclass(frozen=True)
class ConsentGrant:
    """What one consent record allows, as stored; `fields` are the ones the person chose."""

    consent_id: str
    person_id: str
    consumer: str
    source: str
    purpose: str
    fields: frozenset[FieldRef]
    status: ConsentStatus
    valid_from: datetime
    valid_until: datetime
    # The categories the agreement asked about; a refusal grants no fields but still answers
    # for them, so that a denial can say "refused" rather than "no consent".
    asked_categories: frozenset[str] = frozenset()

    def categories(self) -> frozenset[str]:
        """The data categories this consent answers for: those asked about or granted."""
        return self.asked_categories | frozenset(ref.category for ref in self.fields)


@dataclass(frozen=True)
class ReleaseRequest:
    """A consumer asks for fields of one category of one person, from one source, for a purpose.

    `fields=None` asks for every field the consent grants in that category.
    """

    person_id: str
    consumer: str
    source: str
    category: str
    purpose: str
    fields: frozenset[str] | None = None


@dataclass(frozen=True)
class ReleaseDecision:
    """Permit or deny, why, under which consent, and exactly which fields may be released."""

    permitted: bool
    reason: DenyReason
    consent_id: str | None
    fields: frozenset[str]

    @classmethod
    def deny(cls, reason: DenyReason, consent_id: str | None = None) -> ReleaseDecision:
        """A denial: no fields, whatever was asked."""
        return cls(permitted=False, reason=reason, consent_id=consent_id, fields=frozenset())


def effective_status(grant: ConsentGrant, now: datetime) -> ConsentStatus:
    """The state at `now`: an active consent past its validity window counts as expired.

    Expiry is decided here, at request time, so a consent stops counting the instant its window
    closes whether or not a background task has marked it yet.
    """
    if grant.status in ACTIVE_STATES and now >= grant.valid_until:
        return ConsentStatus.EXPIRED
    return grant.status
