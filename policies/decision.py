"""The release decision: which fields, if any, a consumer may receive at this instant.

Deny by default. A release is permitted only by an active consent of the same person that names
the same consumer, source and purpose and grants at least one requested field of the category.
The result does not depend on the order in which consents are given.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from policies.model import (
    ACTIVE_STATES,
    ConsentGrant,
    ConsentStatus,
    DenyReason,
    ReleaseDecision,
    ReleaseRequest,
    effective_status,
)

_STATUS_REASON = {
    ConsentStatus.EXPIRED: DenyReason.CONSENT_EXPIRED,
    ConsentStatus.WITHDRAWN: DenyReason.CONSENT_WITHDRAWN,
    ConsentStatus.REVOKED: DenyReason.CONSENT_REVOKED,
    ConsentStatus.REFUSED: DenyReason.CONSENT_REFUSED,
    ConsentStatus.INVALIDATED: DenyReason.CONSENT_INVALIDATED,
}

# The lower the rank, the closer the consent came to permitting: that reason is the one reported.
_RANK = {reason: rank for rank, reason in enumerate(DenyReason)}


def decide(
    request: ReleaseRequest, consents: Iterable[ConsentGrant], now: datetime
) -> ReleaseDecision:
    """Decide `request` against the person's consents at `now`.

    Among several permitting consents the one releasing the most requested fields wins (ties go
    to the smallest consent id), so the answer is the same whatever order `consents` come in.
    """
    best_permit: tuple[int, str, tuple[str, ...]] | None = None
    best_denial: tuple[int, str] | None = None

    for grant in consents:
        outcome = _judge(request, grant, now)
        if isinstance(outcome, frozenset):
            # The sorted fields end the key so that even two records with one id tie stably.
            key = (-len(outcome), grant.consent_id, tuple(sorted(outcome)))
            if best_permit is None or key < best_permit:
                best_permit = key
        elif outcome is not None:
            denial = (_RANK[outcome], grant.consent_id)
            if best_denial is None or denial < best_denial:
                best_denial = denial

    if best_permit is not None:
        _, consent_id, fields = best_permit
        return ReleaseDecision(
            permitted=True,
            reason=DenyReason.PERMITTED,
            consent_id=consent_id,
            fields=frozenset(fields),
        )
    if best_denial is not None:
        rank, consent_id = best_denial
        return ReleaseDecision.deny(list(DenyReason)[rank], consent_id)
    return ReleaseDecision.deny(DenyReason.NO_CONSENT)


def _judge(
    request: ReleaseRequest, grant: ConsentGrant, now: datetime
) -> frozenset[str] | DenyReason | None:
    """The fields `grant` releases for `request`, the reason it does not, or None if unrelated."""
    if (
        grant.person_id != request.person_id
        or grant.consumer != request.consumer
        or grant.source != request.source
        or request.category not in grant.categories()
    ):
        return None
    if grant.purpose != request.purpose:
        return DenyReason.PURPOSE_MISMATCH
    status = effective_status(grant, now)
    if status not in ACTIVE_STATES:
        return _STATUS_REASON[status]
    if now < grant.valid_from:
        return DenyReason.CONSENT_NOT_YET_VALID
    granted = frozenset(ref.field for ref in grant.fields if ref.category == request.category)
    released = granted if request.fields is None else granted & request.fields
    if not released:
        return DenyReason.NO_FIELDS_GRANTED
    return released
