"""Checkpoints: signed only when the tree grew, by every key in force, never over a bad log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from broker.ledger import merkle, store
from broker.ledger.checkpoint import open_checkpoint
from broker.ledger.errors import LogIntegrityError
from broker.ledger.events import EventType, LogRecord
from broker.ledger.note import UnverifiedNoteError, Verifier
from broker.ledger.sequencer import unit_of_work
from broker.ledger.signer import CheckpointSigner, log_verifiers
from broker.storage import transaction
from keys import KeyStore, KeyUse
from tests.conftest import NOW

ORIGIN = "test.example/audit/v1"


@pytest.fixture
def keystore(tmp_path: Path) -> KeyStore:
    keys = KeyStore.open(tmp_path / "keys", None, production=False)
    keys.ensure(KeyUse.LOG, NOW - timedelta(days=1))
    return keys


@pytest.fixture
def signer(engine: Engine, keystore: KeyStore) -> CheckpointSigner:
    return CheckpointSigner(engine, keystore, ORIGIN)


def _append(engine: Engine, count: int) -> None:
    with unit_of_work(engine) as (_, log):
        for n in range(count):
            log.append(LogRecord(type=EventType.DATA_RELEASED, at=NOW, attributes={"n": n}))


def _latest_note(engine: Engine) -> bytes:
    with transaction(engine, readonly=True) as session:
        checkpoint = store.latest_checkpoint(session)
    assert checkpoint is not None
    return checkpoint.note


def test_the_empty_log_gets_a_checkpoint_and_growth_gets_the_next(
    engine: Engine, signer: CheckpointSigner, keystore: KeyStore
) -> None:
    first = signer.sign_if_grown(NOW)
    assert first is not None
    assert first.size == 0
    assert signer.sign_if_grown(NOW) is None
    _append(engine, 5)
    second = signer.sign_if_grown(NOW)
    assert second is not None
    assert second.size == 5
    checkpoint, note = open_checkpoint(
        _latest_note(engine), log_verifiers(keystore, ORIGIN), origin=ORIGIN
    )
    assert checkpoint == second
    assert len(note.verified) == 1


def test_during_a_rotation_overlap_checkpoints_carry_both_signatures(
    engine: Engine, signer: CheckpointSigner, keystore: KeyStore
) -> None:
    old = keystore.current(KeyUse.LOG)
    new = keystore.rotate(KeyUse.LOG, timedelta(days=2), NOW)
    _append(engine, 3)
    signer.sign_if_grown(NOW + timedelta(days=1))
    note = _latest_note(engine)
    for only in (old, new):
        _, opened = open_checkpoint(note, [Verifier(ORIGIN, only.public_key)], origin=ORIGIN)
        assert len(opened.verified) == 1
        assert len(opened.unverified) == 1
    _append(engine, 1)
    signer.sign_if_grown(NOW + timedelta(days=3))
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(_latest_note(engine), [Verifier(ORIGIN, old.public_key)], origin=ORIGIN)


def test_an_intact_log_verifies_at_start(engine: Engine, signer: CheckpointSigner) -> None:
    _append(engine, 7)
    signer.sign_if_grown(NOW)
    _append(engine, 4)
    assert signer.verify_stored_log() == 11


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("UPDATE log_leaf SET leaf = :x WHERE idx = 2", "level 0, position 2"),
        (
            "DELETE FROM log_event WHERE idx = 3; DELETE FROM log_leaf WHERE idx = 3",
            "entry 3 is missing",
        ),
        (
            "DELETE FROM log_event WHERE idx = 6; DELETE FROM log_leaf WHERE idx = 6",
            "head says 7 entries but 6",
        ),
        ("UPDATE log_hash SET hash = :h WHERE id = 4", "does not match the leaves"),
        ("UPDATE log_head SET root = :h", "head's root"),
        ("UPDATE log_checkpoint SET root = :h WHERE size = 7", "checkpoint of size 7 disagrees"),
        ("UPDATE log_checkpoint SET note = :x WHERE size = 7", "checkpoint of size 7 does not"),
    ],
)
def test_the_start_up_check_names_what_was_altered(
    unguarded: Engine, signer: CheckpointSigner, tamper: str, message: str
) -> None:
    engine = unguarded
    _append(engine, 7)
    signer.sign_if_grown(NOW)
    with engine.begin() as conn:
        for statement in tamper.split("; "):
            conn.execute(text(statement), {"x": b'{"forged":true}', "h": b"\x01" * 32})
    with pytest.raises(LogIntegrityError, match=message):
        signer.verify_stored_log()


def test_no_checkpoint_is_signed_that_contradicts_the_last(
    unguarded: Engine, signer: CheckpointSigner
) -> None:
    engine = unguarded
    _append(engine, 4)
    signer.sign_if_grown(NOW)
    with engine.begin() as conn:  # rewrite history: the stored root of the first four entries
        conn.execute(
            text("UPDATE log_hash SET hash = :h WHERE id = :id"),
            {"h": b"\x02" * 32, "id": merkle.stored_hash_index(2, 0)},
        )
    _append(engine, 1)
    with pytest.raises(LogIntegrityError, match="not consistent"):
        signer.sign_if_grown(NOW)


def test_a_second_signer_does_not_sign_the_same_size_twice(
    engine: Engine, signer: CheckpointSigner, keystore: KeyStore
) -> None:
    _append(engine, 2)
    other = CheckpointSigner(engine, keystore, ORIGIN)
    assert signer.sign_if_grown(datetime.now(UTC)) is not None
    assert other.sign_if_grown(datetime.now(UTC)) is None
    with transaction(engine, readonly=True) as session:
        assert [c.size for c in store.checkpoints(session)] == [2]


def test_the_start_up_check_beside_a_writer_in_another_process_sees_one_snapshot(
    engine: Engine, signer: CheckpointSigner
) -> None:
    # A second broker process starts (and checks the whole log) while the first one appends:
    # the check must read head, leaves and hashes as of one moment, or it reports damage
    # that is not there.
    _append(engine, 50)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            _append(engine, 5)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        sizes = [signer.verify_stored_log() for _ in range(15)]
    finally:
        stop.set()
        writer.join()
    assert sizes == sorted(sizes)
    assert sizes[-1] > 50
