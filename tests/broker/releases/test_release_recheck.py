"""A consent that ends while the source is answering stops the release it permitted.

The second decision, in the transaction that logs, re-reads only the consent the first one
chose; these tests end that consent from inside the source's fetch (another transaction,
committed before the fetch returns) and expect a logged denial naming why, and no release.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from broker.consents import service as consents
from broker.errors import ReleaseDenied
from broker.ledger.events import decode_leaf
from broker.ledger.sequencer import Ledger
from broker.releases.service import DataRequest, release
from broker.runtime import open_keystore
from broker.settings import Settings
from broker.storage import transaction
from broker.storage.tables import LogLeaf
from connectors.base import FetchRequest, Record
from keys import KeyStore
from tests.conftest import NOW

PERSON = "aino-virtanen"


class MeddlingSource:
    """A lab source that runs `meanwhile` (if set) before it answers."""

    source_id = "patient-record"
    audience = "urn:omadata:source:patient-record"
    categories = frozenset({"health.lab_results"})

    def __init__(self) -> None:
        self.meanwhile: Callable[[], None] | None = None

    def fetch(self, request: FetchRequest) -> list[Record]:
        if self.meanwhile is not None:
            self.meanwhile()
        return [{"test_name": "P-Gluk", "value": "5.4", "unit": "mmol/l", "taken_at": "2026-11-01"}]

    def close(self) -> None:
        return None


@dataclass
class World:
    engine: Engine
    ledger: Ledger
    keystore: KeyStore
    source: MeddlingSource
    consent_id: str
    valid_until: datetime

    def release(self, now: datetime) -> int:
        """Release lab results under the consent; the log index of what happened."""
        try:
            done = release(
                self.engine,
                self.ledger,
                self.keystore,
                {"patient-record": self.source},
                issuer="http://broker.test",
                request=DataRequest(
                    consumer="selfcare-app",
                    consent_ids=(self.consent_id,),
                    category="health.lab_results",
                ),
                now=now,
            )
        except ReleaseDenied as denial:
            return denial.log_index
        return done.log_index

    def entry(self, index: int) -> dict[str, object]:
        with transaction(self.engine, readonly=True) as session:
            row = session.get(LogLeaf, index)
            assert row is not None, f"no log entry {index}"
            return decode_leaf(bytes(row.leaf))


@pytest.fixture
def world(demo: Engine, tmp_path: Path) -> Iterator[World]:
    ledger = Ledger(demo).start()
    record = ledger.run(
        lambda s, log: consents.give_or_renew_consent(
            s,
            log,
            person_id=PERSON,
            agreement_id="selfcare-labs-medications",
            actor_id=PERSON,
            now=NOW,
        )
    )
    keystore = open_keystore(Settings(data_dir=tmp_path))
    yield World(demo, ledger, keystore, MeddlingSource(), record.id, record.valid_until)
    ledger.close()


def test_an_untouched_consent_releases(world: World) -> None:
    entry = world.entry(world.release(NOW + timedelta(minutes=1)))
    assert entry["type"] == "data.released"
    assert entry["consent"] == world.consent_id


@pytest.mark.parametrize("ending", ["withdrawn", "revoked", "expired"])
def test_a_consent_ended_during_the_fetch_denies_the_release(world: World, ending: str) -> None:
    # For an expiry the release is asked for just before the window closes, and the sweep
    # marks the consent expired (as of the window's end) while the source answers.
    now = world.valid_until - timedelta(seconds=1) if ending == "expired" else NOW

    def end() -> None:
        cid = world.consent_id
        if ending == "withdrawn":
            world.ledger.run(
                lambda s, log: consents.withdraw_consent(
                    s, log, consent_id=cid, actor_id=PERSON, now=now
                )
            )
        elif ending == "revoked":
            world.ledger.run(
                lambda s, log: consents.revoke_consent(
                    s, log, consent_id=cid, now=now, note="Revoked in a test."
                )
            )
        else:
            world.ledger.run(
                lambda s, log: consents.expire_consent(
                    s, log, consent_id=cid, now=world.valid_until
                )
            )

    world.source.meanwhile = end
    entry = world.entry(world.release(now))
    assert entry["type"] == "data.release_denied"
    assert entry["consent"] == world.consent_id
    assert entry["reason"] == f"consent_{ending}"
