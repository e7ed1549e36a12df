"""Proofs served from storage: equal to RFC 9162's, whatever is kept in memory between them."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine, text

from broker.errors import InvalidInput
from broker.ledger import merkle, reader, store
from broker.ledger.errors import LogIntegrityError
from broker.ledger.events import EventType, LogRecord
from broker.ledger.sequencer import unit_of_work
from broker.storage import transaction
from tests.conftest import NOW

SIZE = 300


def _append(engine: Engine, count: int, first: int) -> None:
    with unit_of_work(engine) as (_, log):
        for n in range(first, first + count):
            log.append(LogRecord(type=EventType.DATA_RELEASED, at=NOW, attributes={"n": n}))


def _leaf_hashes(engine: Engine) -> list[bytes]:
    with transaction(engine, readonly=True) as session:
        return [merkle.leaf_hash(leaf) for _, leaf in store.iter_leaves(session)]


@pytest.fixture
def log(engine: Engine) -> Engine:
    """A log of SIZE entries, appended in batches of uneven sizes."""
    done = 0
    for count in (1, 2, 5, 64, 100, 128):
        _append(engine, count, done)
        done += count
    assert done == SIZE
    return engine


def test_inclusion_proofs_from_storage_are_rfc_9162s(log: Engine) -> None:
    hashes = _leaf_hashes(log)
    rng = random.Random(9162)
    cases = [(i, n) for n in (1, 2, 3, 255, 256, 257, SIZE) for i in {0, n // 2, n - 1}]
    cases += [(rng.randrange(n), n) for n in (rng.randrange(1, SIZE + 1) for _ in range(200))]
    # Twice: the second round is served partly from the hashes kept by the first.
    for _ in range(2):
        for index, size in cases:
            with transaction(log, readonly=True) as session:
                proof = reader.inclusion_proof(session, index, size)
            assert proof == merkle.inclusion_proof(index, hashes[:size]), (index, size)


def test_consistency_proofs_from_storage_are_rfc_9162s(log: Engine) -> None:
    hashes = _leaf_hashes(log)
    for first, second in ((1, 1), (1, SIZE), (7, 8), (64, 65), (100, 256), (255, SIZE)):
        with transaction(log, readonly=True) as session:
            proof = reader.consistency_proof(session, first, second)
        assert proof == merkle.consistency_proof(first, hashes[:second]), (first, second)


def test_only_upper_levels_are_kept_and_storage_is_read_for_the_rest(log: Engine) -> None:
    with transaction(log, readonly=True) as session:
        committed = store.CommittedHashReader.of(session)
        assert committed is not None
        for index in range(SIZE):
            reader.inclusion_proof(session, index, SIZE)
        kept = committed._memory.hashes  # what the next proofs will not read again
        assert kept
        assert all(merkle.split_stored_hash_index(i)[0] >= 1 for i in kept)
        assert len(kept) <= store.CommittedHashReader.CACHE_CAPACITY
        # Every proof still reads its leaf-level sibling from storage.
        again = store.CommittedHashReader.of(session)
        assert again is not None
        reads = merkle.record_proof_reads(SIZE, 10)
        again.read_hashes(reads.indexes, reads.levels)
        assert again.reads == reads.levels.count(0)


def test_a_tree_larger_than_the_log_is_refused_with_the_log_s_real_size(log: Engine) -> None:
    with transaction(log, readonly=True) as session:
        reader.inclusion_proof(session, 0, SIZE)  # the size SIZE is now known
        with pytest.raises(InvalidInput, match=f"between 1 and the log's size {SIZE}"):
            reader.inclusion_proof(session, 0, SIZE + 1)
        with pytest.raises(InvalidInput, match=f"between 1 and the log's size {SIZE}"):
            reader.inclusion_proof(session, 0, 0)
        with pytest.raises(InvalidInput, match="index must be between 0 and tree_size - 1"):
            reader.inclusion_proof(session, 5, 5)
        with pytest.raises(InvalidInput, match=f"second <= {SIZE}"):
            reader.consistency_proof(session, 1, SIZE + 1)
    # Once the log has grown, the larger tree is there to prove in.
    _append(log, 10, SIZE)
    hashes = _leaf_hashes(log)
    with transaction(log, readonly=True) as session:
        proof = reader.inclusion_proof(session, SIZE, SIZE + 10)
        assert proof == merkle.inclusion_proof(SIZE, hashes)
        assert reader.consistency_proof(session, SIZE, SIZE + 10) == merkle.consistency_proof(
            SIZE, hashes
        )


def test_a_session_on_a_connection_reads_in_its_own_transaction(log: Engine) -> None:
    # Such a session may hold uncommitted rows, which must never be kept in memory: it is
    # served through its own transaction instead.
    hashes = _leaf_hashes(log)
    with log.connect() as conn, transaction(conn, readonly=True) as session:  # type: ignore[arg-type]
        assert store.CommittedHashReader.of(session) is None
        assert reader.inclusion_proof(session, 3, SIZE) == merkle.inclusion_proof(3, hashes)
        assert reader.consistency_proof(session, 3, SIZE) == merkle.consistency_proof(3, hashes)


def test_a_stored_hash_that_was_deleted_is_an_integrity_error(log: Engine) -> None:
    reads = merkle.record_proof_reads(SIZE, 17)
    leaf_level = [i for i, level in zip(reads.indexes, reads.levels, strict=True) if level == 0]
    with log.begin() as conn:
        for table in ("log_hash",):
            if log.dialect.name == "sqlite":
                conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
            else:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        conn.execute(text("DELETE FROM log_hash WHERE id = :id"), {"id": leaf_level[0]})
        if log.dialect.name != "sqlite":
            conn.execute(text("ALTER TABLE log_hash ENABLE TRIGGER USER"))
    with (
        transaction(log, readonly=True) as session,
        pytest.raises(LogIntegrityError, match=f"stored hash {leaf_level[0]} is missing"),
    ):
        reader.inclusion_proof(session, 17, SIZE)
