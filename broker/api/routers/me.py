"""The signed-in person's own API: who am I, my consents, withdraw, my log entries, delegations.

Reads take `person` to show someone the caller acts for (a guardian's child); changes need the
session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from broker.api.callers import CSRF_HEADER, SignedInPerson
from broker.api.deps import ReadSession, RuntimeDep
from broker.api.params import PRINTABLE, IdPath
from broker.api.problems import documented
from broker.consents import service as consents
from broker.consents.service import ConsentRecord
from broker.ledger.personal import PersonalEntry, entries_seen_by
from broker.people import access
from broker.people.access import DelegationsOf
from broker.people.service import get_person

router = APIRouter(prefix="/v1/me", tags=["person"], responses=documented(401, 503))

_Person = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=PRINTABLE,
        description="Whose data: yourself by default, or a person you act for (delegation).",
    ),
]


class Me(BaseModel):
    """The signed-in person, and the token every change must carry."""

    id: str
    display_name: str
    language: str
    csrf_header: str
    csrf_token: str


@router.get("", response_model=Me)
def who_am_i(caller: SignedInPerson, session: ReadSession) -> Me:
    """The signed-in person and their CSRF token."""
    person = get_person(session, caller.person_id)
    return Me(
        id=person.id,
        display_name=person.display_name,
        language=caller.language,
        csrf_header=CSRF_HEADER,
        csrf_token=caller.csrf_token,
    )


# OpenAPI links: a client (and schemathesis' stateful run) may act on a consent it listed.
_TO_WITHDRAW = {
    "links": {
        "WithdrawFirst": {
            "operationId": "withdraw_my_consent",
            "parameters": {"consent_id": "$response.body#/0/id"},
        }
    }
}


@router.get(
    "/consents",
    response_model=list[ConsentRecord],
    responses={200: _TO_WITHDRAW, **documented(403, 404, 422)},
)
def my_consents(
    caller: SignedInPerson, session: ReadSession, person: _Person = None
) -> list[ConsentRecord]:
    """Every consent of the person, newest first, each with its history."""
    return consents.consents_seen_by(
        session,
        viewer_id=caller.person_id,
        person_id=person or caller.person_id,
        now=datetime.now(UTC),
    )


@router.post(
    "/consents/{consent_id}/withdraw",
    operation_id="withdraw_my_consent",
    response_model=ConsentRecord,
    responses=documented(403, 404, 409, 413, 422),
)
def withdraw(consent_id: IdPath, caller: SignedInPerson, runtime: RuntimeDep) -> ConsentRecord:
    """Withdraw an active consent now; the consent change and its log entry commit together."""
    now = datetime.now(UTC)
    return runtime.ledger.run(
        lambda session, log: consents.withdraw_as(
            session, log, consent_id=consent_id, actor_id=caller.person_id, now=now
        )
    )


@router.get("/log-entries", response_model=list[PersonalEntry], responses=documented(403, 404, 422))
def my_log_entries(
    caller: SignedInPerson, session: ReadSession, person: _Person = None
) -> list[PersonalEntry]:
    """Every audit-log entry about the person, oldest first, with the leaf bytes to verify."""
    return entries_seen_by(
        session,
        viewer_id=caller.person_id,
        person_id=person or caller.person_id,
        now=datetime.now(UTC),
    )


@router.get("/delegations", response_model=DelegationsOf)
def my_delegations(caller: SignedInPerson, session: ReadSession) -> DelegationsOf:
    """Whom the person may act for, and who may act for them."""
    return access.delegations_of(session, caller.person_id, datetime.now(UTC))
