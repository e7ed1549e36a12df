"""`broker serve` killed with SIGKILL under load, then started again on the same database.

Consumers fetch data at full rate from several threads. A signed checkpoint is taken (and an
auditor's copy verified) before the kill; the kill lands while requests are in flight. After the
restart on the same database and keys the consumers carry on. Then:

- every body a consumer received is the `data.released` entry it names (same SHA-256 of the
  canonical JSON, fields and record count): nothing left the broker without its entry;
- the log rebuilds from its leaves and verifies (the restart itself refuses a log that does not);
- the checkpoint from before the kill is consistent with the new one, by the broker's own
  consistency proof over HTTP and by the auditor's offline check against its trusted copy.

On SQLite one process; on PostgreSQL two workers, the whole process group killed.
"""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine

from broker.ledger import merkle
from broker.ledger.audit import AuditDirectory, verify_directory
from broker.ledger.checkpoint import Checkpoint, open_checkpoint
from broker.ledger.fetch import DatabaseLogSource, fetch
from broker.ledger.note import Verifier
from broker.ledger.signer import log_verifiers
from keys import KeyStore
from tests.broker.ledger.test_crash import (
    ORIGIN,
    assert_checkpoints_are_prefixes,
    assert_log_verifies,
    log_state,
)
from tests.broker.serving import (
    BrokerProcess,
    Consumers,
    check_releases,
    consumer_tokens,
    log_key,
)


def checkpoint(broker: BrokerProcess, at_least: int = 1) -> tuple[Checkpoint, bytes]:
    """The broker's latest signed checkpoint over HTTP, once it covers `at_least` entries."""
    verifier = Verifier(ORIGIN, log_key(broker))
    deadline = time.monotonic() + 60
    while True:
        note = httpx.get(f"{broker.url}/v1/log/checkpoint", timeout=30).content
        signed, _ = open_checkpoint(note, [verifier], origin=ORIGIN)
        if signed.size >= at_least:
            return signed, note
        assert time.monotonic() < deadline, f"no checkpoint of {at_least} entries: {signed.size}"
        time.sleep(0.05)


def test_a_broker_killed_under_load_keeps_every_release_logged_and_its_log_consistent(
    demo: Engine, tmp_path: Path
) -> None:
    workers = 2 if demo.dialect.name == "postgresql" else 1
    broker = BrokerProcess(demo, tmp_path, workers=workers)
    auditor = AuditDirectory(tmp_path / "audit")
    try:
        broker.start()
        tokens = consumer_tokens(demo, broker.url, broker.keys_dir)
        consumers = Consumers(broker.url, tokens, threads=6).start()
        try:
            consumers.wait_for(40)
            before, before_note = checkpoint(broker, at_least=log_state(demo)[0])
            fetch(DatabaseLogSource(demo), auditor)
            keystore = KeyStore.open(broker.keys_dir, None, production=False)
            verifiers = log_verifiers(keystore, ORIGIN)
            trusted = verify_directory(auditor, verifiers, origin=ORIGIN)
            assert trusted.ok, trusted.failures
            consumers.wait_for(20)
            time.sleep(random.uniform(0, 0.05))  # anywhere in a request's or a batch's life
            broker.kill()
            assert broker.proc is not None
            assert broker.proc.returncode == -9
            released_before_kill = consumers.ok()
            broker.start()
            consumers.wait_for(40)
        finally:
            consumers.stop()
        after, _ = checkpoint(broker, at_least=log_state(demo)[0])
        proof = httpx.get(
            f"{broker.url}/v1/log/proofs/consistency",
            params={"first": before.size, "second": after.size},
            timeout=30,
        ).json()
        merkle.verify_consistency(
            before.size,
            after.size,
            before.root_hash,
            after.root_hash,
            [base64.b64decode(h) for h in proof["hashes"]],
        )
    finally:
        broker.close()

    # No HTTP error at all: while the broker was down the consumers could not connect.
    assert {s for s in consumers.statuses if isinstance(s, int)} == {200}, consumers.statuses
    assert consumers.ok() > released_before_kill
    kinds = check_releases(demo, consumers.released)
    # Answers lost in the kill may have entries nobody received; never the other way round.
    assert kinds["data.released"] >= len(consumers.released)

    keystore = KeyStore.open(broker.keys_dir, None, production=False)
    size = assert_log_verifies(demo, keystore)
    _, checkpoints = log_state(demo)
    assert checkpoints[-1][0] == size
    verifier = Verifier(ORIGIN, log_key(broker))
    assert_checkpoints_are_prefixes(demo, [(before.size, before_note), *checkpoints], verifier)

    fetch(DatabaseLogSource(demo), auditor)
    report = verify_directory(auditor, log_verifiers(keystore, ORIGIN), origin=ORIGIN)
    assert report.ok, report.failures
    assert report.trusted_size == trusted.tree_size
    assert report.tree_size == size
