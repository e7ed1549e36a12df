"""The consent model and the release decision: pure Python, no HTTP, no database.

Public surface: the consent states, the views the decision reads, and `decide`.
"""

from policies.decision import decide
from policies.model import (
    ACTIVE_STATES,
    ActorRole,
    ConsentGrant,
    ConsentStatus,
    DenyReason,
    FieldRef,
    ReleaseDecision,
    ReleaseRequest,
    effective_status,
)

__all__ = [
    "ACTIVE_STATES",
    "ActorRole",
    "ConsentGrant",
    "ConsentStatus",
    "DenyReason",
    "FieldRef",
    "ReleaseDecision",
    "ReleaseRequest",
    "decide",
    "effective_status",
]
