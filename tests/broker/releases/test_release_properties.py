"""Random sequences of give, withdraw, time passing and release: no field ever leaks.

Invariants checked after every release, against a model kept beside the broker:
- a release happens exactly when an active consent covers it, and releases exactly the fields
  that consent grants (intersected with what was asked), even though the source sends more;
- every release has its `data.released` log entry with the hash of what was sent, and every
  denial its `data.release_denied` entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from broker.consents import service as consents
from broker.errors import ReleaseDenied
from broker.ledger.events import canonical_json, decode_leaf
from broker.ledger.sequencer import Ledger
from broker.releases.service import DataRequest, release
from broker.runtime import open_keystore
from broker.settings import Settings
from broker.storage import transaction
from broker.storage.tables import LogLeaf
from connectors.base import FetchRequest, Record
from keys import KeyStore
from policies import FieldRef

REQUIRED = ("test_name", "value", "unit", "taken_at")
OPTIONAL = ("reference_range", "test_code")
EVERYTHING = {
    "test_code": "2095",
    "test_name": "P-Gluk",
    "value": "5.4",
    "unit": "mmol/l",
    "reference_range": "4.0-6.0",
    "taken_at": "2026-11-01",
    "free_text": "a note that no consent covers",
}
PEOPLE = ("aino-virtanen", "sam-taylor")


class GenerousSource:
    """A source that always sends every field it has, whatever it was asked for."""

    source_id = "patient-record"
    audience = "urn:omadata:source:patient-record"
    categories = frozenset({"health.lab_results"})

    def fetch(self, request: FetchRequest) -> list[Record]:
        return [dict(EVERYTHING), dict(EVERYTHING, value="6.1")]

    def close(self) -> None:
        return None


@dataclass
class ModelConsent:
    """What the test believes about one consent."""

    fields: frozenset[str]
    valid_until: datetime
    withdrawn: bool = False

    def active(self, now: datetime) -> bool:
        return not self.withdrawn and now < self.valid_until


@dataclass
class World:
    engine: Engine
    ledger: Ledger
    keystore: KeyStore
    clock: datetime


@pytest.fixture
def world(demo: Engine, tmp_path: Path) -> Iterator[World]:
    ledger = Ledger(demo).start()
    keystore = open_keystore(Settings(data_dir=tmp_path))
    yield World(demo, ledger, keystore, datetime.now(UTC))
    ledger.close()


_give = st.tuples(
    st.just("give"),
    st.sampled_from(PEOPLE),
    st.frozensets(st.sampled_from(OPTIONAL)),
    st.integers(1, 3),
)
_withdraw = st.tuples(st.just("withdraw"), st.sampled_from(PEOPLE))
_wait = st.tuples(st.just("wait"), st.integers(1, 60 * 60 * 40))
_release = st.tuples(
    st.just("release"),
    st.sampled_from(PEOPLE),
    st.none() | st.frozensets(st.sampled_from((*REQUIRED, *OPTIONAL, "free_text")), min_size=1),
)
ACTIONS = st.lists(st.one_of(_give, _withdraw, _wait, _release), min_size=1, max_size=10)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS)
def test_every_released_field_was_consented_and_every_release_is_logged(
    world: World, actions: list[tuple[object, ...]]
) -> None:
    # Examples share the database: start each from no active consent and a later clock.
    world.clock += timedelta(days=10)
    now = world.clock
    for person in PEOPLE:
        with transaction(world.engine, readonly=True) as session:
            active = [
                c.id
                for c in consents.list_consents(session, person, now)
                if c.status.value == "given"
            ]
        for consent_id in active:
            world.ledger.run(
                lambda s, log, cid=consent_id, who=person: consents.withdraw_consent(
                    s, log, consent_id=cid, actor_id=who, now=now
                )
            )
    model: dict[str, dict[str, ModelConsent]] = {p: {} for p in PEOPLE}
    for action in actions:
        now += timedelta(seconds=1)
        kind = action[0]
        if kind == "wait":
            now += timedelta(seconds=int(action[1]))  # type: ignore[call-overload]
        elif kind == "give":
            person, optional, days = action[1], action[2], action[3]
            assert isinstance(person, str)
            assert isinstance(optional, frozenset)
            assert isinstance(days, int)
            if any(c.active(now) for c in model[person].values()):
                continue  # one active consent per agreement; the service refuses a second
            chosen = [*REQUIRED, *sorted(optional)]
            record = world.ledger.run(
                lambda s, log, who=person, f=chosen, d=days, at=now: consents.give_consent(
                    s,
                    log,
                    person_id=who,
                    agreement_id="selfcare-labs-medications",
                    fields=[FieldRef("health.lab_results", n) for n in f]
                    + [
                        FieldRef("health.medications", "medication_name"),
                        FieldRef("health.medications", "dosage"),
                    ],
                    actor_id=who,
                    now=at,
                    valid_days=d,
                )
            )
            model[person][record.id] = ModelConsent(frozenset(chosen), record.valid_until)
        elif kind == "withdraw":
            person = str(action[1])
            active_ids = [i for i, c in model[person].items() if c.active(now)]
            for consent_id in active_ids:
                world.ledger.run(
                    lambda s, log, cid=consent_id, who=person, at=now: consents.withdraw_consent(
                        s, log, consent_id=cid, actor_id=who, now=at
                    )
                )
                model[person][consent_id].withdrawn = True
        else:
            person, asked = str(action[1]), action[2]
            assert asked is None or isinstance(asked, frozenset)
            _check_release(world, model[person], person, asked, now)
    world.clock = now


def _check_release(
    world: World,
    held: dict[str, ModelConsent],
    person: str,
    asked: frozenset[str] | None,
    now: datetime,
) -> None:
    active = [c for c in held.values() if c.active(now)]
    expected = (
        (active[0].fields & asked if asked is not None else active[0].fields)
        if active
        else frozenset()
    )
    try:
        released = release(
            world.engine,
            world.ledger,
            world.keystore,
            {"patient-record": GenerousSource()},
            issuer="http://broker.test",
            request=DataRequest(
                consumer="selfcare-app",
                consent_ids=tuple(held),
                category="health.lab_results",
                fields=asked,
            ),
            now=now,
        )
    except ReleaseDenied as denial:
        refused = denial
    else:
        refused = None
    if refused is not None:
        assert not expected, f"denied ({refused.reason}) although {sorted(expected)} were consented"
        assert _leaf(world, refused.log_index)["type"] == "data.release_denied"
        return
    assert expected, "released although no active consent covered it"
    assert set(released.released["fields"]) == expected
    for record in released.released["records"]:
        assert set(record) <= expected
    entry = _leaf(world, released.log_index)
    assert entry["type"] == "data.released"
    assert entry["sha256"] == hashlib.sha256(canonical_json(released.released)).hexdigest()
    assert entry["sha256"] == released.sha256


def _leaf(world: World, index: int) -> dict[str, object]:
    with transaction(world.engine, readonly=True) as session:
        row = session.get(LogLeaf, index)
        assert row is not None, f"no log entry {index}"
        return decode_leaf(bytes(row.leaf))
