"""A broker killed in the middle of writing leaves a log that verifies and misses nothing.

A child process appends through a group-committing `Ledger` from several threads, each unit
creating a person and their consent, while a `CheckpointTimer` signs every 50 ms. Once
checkpoints exist and the log is growing, the child gets SIGKILL: no clean-up, batches in
flight. Then, on the same database:

- the stored log rebuilds and verifies, and every checkpoint signed before the kill is still
  there, signed, and a prefix of the final tree;
- no state change exists without its log entry, and no entry without its state change;
- a new `Ledger` appends more, and the log still verifies.

Runs on SQLite (a file) and on PostgreSQL (the child connects by URL).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from broker.consents.service import give_consent
from broker.ledger import merkle, store
from broker.ledger.checkpoint import open_checkpoint
from broker.ledger.events import decode_leaf
from broker.ledger.note import Verifier
from broker.ledger.sequencer import Ledger, LogAppender
from broker.ledger.signer import CheckpointSigner
from broker.people.service import add_person
from broker.storage import transaction
from broker.storage.tables import Consent, ConsentEvent, LogEvent, LogLeaf, Person, PersonSecret
from keys import KeyStore, KeyUse

ORIGIN = "crash.test/audit/v1"
AGREEMENT = "selfcare-immunisations"
WRITERS = 4
KILLS = 3
MIN_UNITS = 150  # consents a child commits before it may be killed
PROGRESS_TIMEOUT = 60.0  # seconds for the child to start and sign; normally a few

# The child: several threads each run units that add a person and give their consent, through
# one group-committing Ledger; the product's own timer signs checkpoints every 50 ms.
CHILD = """
import sys, threading
from datetime import UTC, datetime
from pathlib import Path

from broker.consents.service import give_consent
from broker.ledger.sequencer import Ledger
from broker.ledger.signer import CheckpointSigner, CheckpointTimer
from broker.people.service import add_person
from broker.storage import create_db_engine
from keys import KeyStore

url, keys_dir, origin, agreement, writers = sys.argv[1:6]
engine = create_db_engine(url)
signer = CheckpointSigner(engine, KeyStore.open(Path(keys_dir), None, production=False), origin)
ledger = Ledger(engine).start()


def writer(n):
    for i in range(10**9):
        def unit(session, log):
            now = datetime.now(UTC)
            person = add_person(session, display_name=f"crash {n}-{i}", language="fi", now=now)
            give_consent(
                session, log, person_id=person.id, agreement_id=agreement,
                actor_id=person.id, now=now,
            )
        ledger.run(unit)


for n in range(int(writers)):
    threading.Thread(target=writer, args=(n,), daemon=True).start()
CheckpointTimer(signer.sign_if_grown, 0.05).start()
print("writing", flush=True)
threading.Event().wait()
"""


def consent_for_new_person(name: str) -> Callable[[Session, LogAppender], str]:
    """The same unit of work as the child's: a new person and their consent; the consent id."""

    def unit(session: Session, log: LogAppender) -> str:
        now = datetime.now(UTC)
        person = add_person(session, display_name=name, language="fi", now=now)
        record = give_consent(
            session, log, person_id=person.id, agreement_id=AGREEMENT, actor_id=person.id, now=now
        )
        return record.id

    return unit


def log_state(engine: Engine) -> tuple[int, list[tuple[int, bytes]]]:
    """The log's size and its stored checkpoints as (size, note)."""
    with transaction(engine, readonly=True) as session:
        size, _ = store.head(session)
        return size, [(cp.size, cp.note) for cp in store.checkpoints(session)]


def kill_while_writing(
    child: subprocess.Popen[str], engine: Engine, start_size: int
) -> list[tuple[int, bytes]]:
    """SIGKILL the child once it has signed checkpoints and written entries, while it writes.

    Waits for progress, not for a fixed time. Returns the checkpoints stored before the kill.
    """
    deadline = time.monotonic() + PROGRESS_TIMEOUT
    last_size, growths = -1, 0
    while True:
        if child.poll() is not None:
            _, err = child.communicate()
            raise AssertionError(f"the child exited early ({child.returncode}):\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no progress in {PROGRESS_TIMEOUT} s: size {last_size}")
        size, checkpoints = log_state(engine)
        growths = growths + 1 if last_size >= 0 and size > last_size else growths
        last_size = size
        signed = [cp for cp in checkpoints if cp[0] > start_size]
        if len(signed) >= 3 and size - start_size >= MIN_UNITS and growths >= 3:
            # Growth is seen right after a commit; a random delay makes the kill land anywhere
            # in the writer's cycle: inside a unit, between the batch's writes, in its commit.
            time.sleep(random.uniform(0, 0.05))
            os.kill(child.pid, signal.SIGKILL)
            child.communicate(timeout=30)
            assert child.returncode == -signal.SIGKILL
            return checkpoints
        time.sleep(0.02)


def assert_log_verifies(engine: Engine, keystore: KeyStore) -> int:
    """The stored log rebuilds from its leaves and every stored checkpoint agrees; the size."""
    return CheckpointSigner(engine, keystore, ORIGIN).verify_stored_log()


def assert_checkpoints_are_prefixes(
    engine: Engine, checkpoints: list[tuple[int, bytes]], verifier: Verifier
) -> None:
    """Each checkpoint is signed, and consistent with the final tree by proof and by root."""
    with transaction(engine, readonly=True) as session:
        size, root = store.head(session)
        leaf_hashes = [merkle.leaf_hash(leaf) for _, leaf in store.iter_leaves(session)]
        stored = {cp.size: cp.note for cp in store.checkpoints(session)}
        reader = store.DbHashReader(session)
        for cp_size, note in checkpoints:
            assert stored.get(cp_size) == note, f"checkpoint {cp_size} was lost or changed"
            checkpoint, _ = open_checkpoint(note, [verifier], origin=ORIGIN)
            assert checkpoint.size == cp_size <= size
            proof = merkle.prove_tree(size, cp_size, reader)
            merkle.verify_consistency(cp_size, size, checkpoint.root_hash, root, proof)
            assert merkle.root_from_leaf_hashes(leaf_hashes[:cp_size]) == checkpoint.root_hash


def assert_every_change_has_its_entry(engine: Engine) -> int:
    """Consents and their log entries match one to one; each new person has one consent.

    Returns how many consents there are.
    """
    with transaction(engine, readonly=True) as session:
        consents = dict(session.exec(select(Consent.id, Consent.person_id)).all())
        given = session.exec(
            select(LogEvent.idx, LogEvent.consent_id, LogEvent.person_id).where(
                LogEvent.event_type == "consent.given"
            )
        ).all()
        logged = Counter(consent_id for _, consent_id, _ in given)
        assert not consents.keys() - logged.keys(), "consents without their log entry"
        assert not logged.keys() - consents.keys(), "log entries without their consent"
        assert max(logged.values(), default=1) == 1, "a consent logged twice"
        history = Counter(session.exec(select(ConsentEvent.consent_id)).all())
        assert history == logged, "the consents' own history disagrees with the log"

        # The leaf at each event's index is that consent's entry, about that person.
        size, _ = store.head(session)
        leaves = dict(store.leaves(session, 0, size))
        for idx, consent_id, person_id in given:
            body = decode_leaf(leaves[idx])
            assert (body["type"], body["consent"]) == ("consent.given", consent_id)
            assert person_id == consents[consent_id]

        created = session.exec(
            select(Person.id).where(col(Person.display_name).startswith("crash "))
        ).all()
        per_person = Counter(consents.values())
        assert not set(created) - per_person.keys(), "persons created without their consent"
        assert per_person == Counter(created)
        secrets = session.exec(select(func.count()).select_from(PersonSecret)).one()
        assert secrets == len(created), "a tag secret without its person, or the reverse"

        events = session.exec(select(func.count()).select_from(LogEvent)).one()
        leaf_rows = session.exec(select(func.count()).select_from(LogLeaf)).one()
        assert events == leaf_rows == size, (events, leaf_rows, size)
        return len(consents)


def start_writer(url: str, keys_dir: Path, cwd: Path) -> subprocess.Popen[str]:
    """The child process of the module docstring, writing and signing until killed."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(keys_dir), ORIGIN, AGREEMENT, str(WRITERS)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_writer_killed_mid_flight_leaves_a_complete_log_that_verifies(
    demo: Engine, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "keystore"  # not "keys": that would shadow the keys package
    keystore = KeyStore.open(keys_dir, None, production=False)
    verifier = Verifier(ORIGIN, keystore.ensure(KeyUse.LOG, datetime.now(UTC)).public_key)
    url = demo.url.render_as_string(hide_password=False)
    size, _ = log_state(demo)  # the demo catalogue's entries
    consents = 0

    # Crash, restart, crash again: each kill lands at another point of a batch.
    for _ in range(KILLS):
        child = start_writer(url, keys_dir, tmp_path)
        try:
            signed_before_kill = kill_while_writing(child, demo, size)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()

        # After the crash: the log verifies, nothing signed was lost, nothing is half there.
        new_size = assert_log_verifies(demo, keystore)
        assert new_size >= size + MIN_UNITS
        assert_checkpoints_are_prefixes(demo, signed_before_kill, verifier)
        assert_checkpoints_are_prefixes(demo, log_state(demo)[1], verifier)
        new_consents = assert_every_change_has_its_entry(demo)
        assert new_consents - consents == new_size - size
        size, consents = new_size, new_consents

    # Restart in this process: a new writer appends after the crashes; the log still verifies.
    with Ledger(demo) as ledger, ThreadPoolExecutor(WRITERS) as pool:
        ids = list(
            pool.map(lambda i: ledger.run(consent_for_new_person(f"crash after {i}")), range(40))
        )
    assert len(set(ids)) == 40
    assert CheckpointSigner(demo, keystore, ORIGIN).sign_if_grown() is not None
    assert assert_log_verifies(demo, keystore) == size + 40
    assert_checkpoints_are_prefixes(demo, log_state(demo)[1], verifier)
    assert assert_every_change_has_its_entry(demo) == consents + 40
