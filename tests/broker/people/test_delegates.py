"""A person adds and removes delegates; each change is a log entry that names no one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from broker.catalogue.schema import DelegationScope
from broker.errors import Conflict, InvalidInput, NotFound, NotPermitted
from broker.ledger import store
from broker.ledger.events import decode_leaf
from broker.ledger.personal import entries_about
from broker.ledger.sequencer import unit_of_work
from broker.people import access, delegates
from broker.storage import transaction
from broker.storage.tables import Delegation, LogEvent
from tests.conftest import NOW

AINO, SAM, KARIN, MATTI, EELIS = (
    "aino-virtanen",
    "sam-taylor",
    "karin-lindqvist",
    "matti-korhonen",
    "eelis-korhonen",
)
NEXT_YEAR = NOW.date() + timedelta(days=365)


def _add(engine: Engine, **changes: object) -> str:
    arguments: dict[str, object] = {
        "principal_id": AINO,
        "delegate_id": SAM,
        "actor_id": AINO,
        "scope": [DelegationScope.CONSENT],
        "valid_until": NEXT_YEAR,
        "now": NOW,
    } | changes
    with unit_of_work(engine) as (session, log):
        return delegates.add_delegate(session, log, **arguments).id  # type: ignore[arg-type]


def test_a_person_names_a_delegate_who_may_then_act_for_them_until_removed(demo: Engine) -> None:
    delegation_id = _add(demo)
    with transaction(demo, readonly=True) as session:
        access.require_may_act(
            session, actor_id=SAM, person_id=AINO, scope=DelegationScope.CONSENT, on=NOW.date()
        )
        row = session.get(Delegation, delegation_id)
        assert row is not None
        assert sorted(row.scope) == ["consent", "view"]  # consenting includes seeing
    later = NOW + timedelta(hours=1)
    with unit_of_work(demo) as (session, log):
        delegates.end_delegation(
            session, log, delegation_id=delegation_id, actor_id=AINO, now=later
        )
    with transaction(demo, readonly=True) as session, pytest.raises(NotPermitted):
        access.require_may_act(
            session, actor_id=SAM, person_id=AINO, scope=DelegationScope.VIEW, on=later.date()
        )
    with transaction(demo, readonly=True) as session:
        entries = [e for e in entries_about(session, AINO) if e.type.startswith("delegation.")]
        assert [e.type for e in entries] == ["delegation.granted", "delegation.ended"]
        for entry in entries:
            leaf = decode_leaf(store.leaves(session, entry.index, entry.index + 1)[0][1])
            assert leaf["delegation"] == delegation_id
            assert SAM not in str(leaf)
            assert AINO not in str(leaf)
        records = session.exec(select(LogEvent).where(LogEvent.person_id == AINO)).all()
        private = [r.record for r in records if r.event_type.startswith("delegation.")]
        assert all(p["delegate_id"] == SAM for p in private)


def test_a_delegate_may_step_down_but_not_pass_the_mandate_on(demo: Engine) -> None:
    delegation_id = _add(demo)
    with pytest.raises(NotPermitted):
        _add(demo, actor_id=SAM, delegate_id=KARIN)
    with unit_of_work(demo) as (session, log):
        delegates.end_delegation(session, log, delegation_id=delegation_id, actor_id=SAM, now=NOW)
    with pytest.raises(NotFound), unit_of_work(demo) as (session, log):
        delegates.end_delegation(session, log, delegation_id=delegation_id, actor_id=AINO, now=NOW)


def test_a_stranger_cannot_end_a_delegation_nor_learn_that_it_exists(demo: Engine) -> None:
    delegation_id = _add(demo)
    with pytest.raises(NotFound), unit_of_work(demo) as (session, log):
        delegates.end_delegation(session, log, delegation_id=delegation_id, actor_id=KARIN, now=NOW)


def test_a_guardianship_cannot_be_ended_from_the_pages(demo: Engine) -> None:
    with transaction(demo, readonly=True) as session:
        guardianship = access.delegations_of(session, EELIS, NOW).delegates[0]
    with pytest.raises(NotPermitted), unit_of_work(demo) as (session, log):
        delegates.end_delegation(
            session, log, delegation_id=guardianship.id, actor_id=MATTI, now=NOW
        )


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"delegate_id": AINO}, InvalidInput),
        ({"delegate_id": "nobody-at-all"}, NotFound),
        ({"valid_until": NOW.date()}, InvalidInput),
        ({"valid_until": NOW.date() + timedelta(days=6 * 365)}, InvalidInput),
    ],
)
def test_impossible_delegations_are_refused_and_nothing_is_logged(
    demo: Engine, changes: dict[str, object], error: type[Exception]
) -> None:
    with transaction(demo, readonly=True) as session:
        before = store.leaf_count(session)
    with pytest.raises(error):
        _add(demo, **changes)
    with transaction(demo, readonly=True) as session:
        assert store.leaf_count(session) == before


def test_the_same_delegate_twice_is_a_conflict(demo: Engine) -> None:
    _add(demo)
    with pytest.raises(Conflict):
        _add(demo, scope=[DelegationScope.VIEW])
