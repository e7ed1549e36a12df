"""The log as one person sees it: every entry about them, with the exact leaf to verify."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session

from broker.catalogue.schema import DelegationScope
from broker.ledger import store
from broker.ledger.events import decode_leaf
from broker.people.access import require_may_act
from broker.storage.tables import LogLeaf

_LEAF = LogLeaf.__table__  # type: ignore[attr-defined]


class PersonalEntry(BaseModel):
    """One log entry about the person: what happened, and the leaf bytes (base64)."""

    index: int
    type: str
    at: datetime
    consent_id: str | None
    consumer: str | None
    source: str | None
    purpose: str | None
    fields: list[str]
    leaf: str


def entries_about(session: Session, person_id: str) -> list[PersonalEntry]:
    """Every entry about the person, oldest first; empty once their link was shredded.

    What is shown comes from the leaves themselves, the very bytes the person can verify.
    """
    events = store.events_of_person(session, person_id)
    indexes = [e.idx for e in events]
    leaves: dict[int, bytes] = {}
    for start in range(0, len(indexes), 500):
        chunk = indexes[start : start + 500]
        rows = session.execute(select(_LEAF.c.idx, _LEAF.c.leaf).where(_LEAF.c.idx.in_(chunk)))
        leaves.update((int(i), bytes(leaf)) for i, leaf in rows)
    entries = []
    for event in events:
        leaf = leaves[event.idx]
        body = decode_leaf(leaf)
        entries.append(
            PersonalEntry(
                index=event.idx,
                type=str(body["type"]),
                at=event.at,
                consent_id=body.get("consent"),
                consumer=body.get("consumer"),
                source=body.get("source"),
                purpose=body.get("purpose"),
                fields=list(body.get("fields", [])),
                leaf=base64.b64encode(leaf).decode("ascii"),
            )
        )
    return entries


def entries_seen_by(
    session: Session, *, viewer_id: str, person_id: str, now: datetime
) -> list[PersonalEntry]:
    """The entries about the person, for themselves or someone who may see them for the person."""
    require_may_act(
        session, actor_id=viewer_id, person_id=person_id, scope=DelegationScope.VIEW, on=now.date()
    )
    return entries_about(session, person_id)


class MonthlyCount(BaseModel):
    """How many events of one type one service had for one purpose in one month."""

    month: str
    service: str
    purpose: str
    event_type: str
    count: int


def monthly_counts(session: Session) -> list[MonthlyCount]:
    """Counts of consent and release events per consumer service, purpose and month.

    Read from the leaves, so the figures are those an auditor can recompute from the log.
    """
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for _, leaf in store.iter_leaves(session):
        body = decode_leaf(leaf)
        consumer = body.get("consumer")
        if consumer:
            month = str(body["at"])[:7]
            counts[(month, str(consumer), str(body.get("purpose", "")), str(body["type"]))] += 1
    return [
        MonthlyCount(month=m, service=s, purpose=p, event_type=t, count=n)
        for (m, s, p, t), n in sorted(counts.items())
    ]
