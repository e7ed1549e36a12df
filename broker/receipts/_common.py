"""Small helpers every receipt format shares: times, durations, DPV names."""

from __future__ import annotations

from datetime import UTC, datetime

from policies import ACTIVE_STATES, ActorRole

DPV = "https://w3id.org/dpv#"
# The GDPR right to withdraw consent (Art. 7(3)) as DPV's EU GDPR extension names it.
RIGHT_TO_WITHDRAW = "https://w3id.org/dpv/legal/eu/gdpr#A7-3"
# The catalogue records no storage location per service; every agreement in it is made
# under Finnish law by Finnish wellbeing services counties and their partners.
JURISDICTION = "FI"
COLLECTION_METHOD = "OmaData consent page (web form, OAuth 2.0 authorization request)"

_ROLES = {
    ActorRole.SELF: DPV + "DataSubject",
    ActorRole.GUARDIAN: DPV + "GuardianOfDataSubject",
    ActorRole.DELEGATE: DPV + "Representative",
    ActorRole.OPERATOR: DPV + "DataController",
}


def rfc3339(at: datetime) -> str:
    """UTC time with a Z, seconds precision: the form FHIR, JSON Schema and people all read."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def days(count: int) -> str:
    """An ISO 8601 duration of whole days, e.g. P365D."""
    return f"P{count}D"


def validity_days(valid_from: datetime, valid_until: datetime) -> int:
    """Whole days a consent was given for (0 for a refusal)."""
    return max(0, (valid_until - valid_from).days)


def actor_role_iri(role: ActorRole) -> str:
    """Who acted, as the DPV entity concept closest to the broker's actor role."""
    return _ROLES.get(role, DPV + "Entity")


def is_active(status: object) -> bool:
    """Whether a consent status lets data flow."""
    return status in ACTIVE_STATES
