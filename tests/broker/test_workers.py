"""`broker serve --workers 3` on one PostgreSQL database: one log, every release in it.

Three worker processes start together on an empty key directory (racing to create the first
keys), each with its own log writer, checkpoint timer and notifier. Consumers fetch data from
several threads over fresh connections; the kernel hands the connections to the workers. Then:
the answers came from more than one worker, every answer is the `data.released` entry it names,
the log rebuilds and verifies, every checkpoint is consistent with the final tree, the workers
signed in turns (times and sizes grow together, about one checkpoint per interval between them),
and an auditor's offline verification of a copy agrees. On SQLite, several workers are refused.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import Engine

from broker.demo.stack import free_port
from broker.ledger import store
from broker.ledger.audit import AuditDirectory, verify_directory
from broker.ledger.fetch import DatabaseLogSource, fetch
from broker.ledger.note import Verifier
from broker.ledger.signer import log_verifiers
from broker.storage import transaction
from keys import KeyStore, KeyUse
from tests.broker.ledger.test_crash import (
    ORIGIN,
    assert_checkpoints_are_prefixes,
    assert_log_verifies,
)
from tests.broker.serving import (
    BROKER,
    BrokerProcess,
    Consumers,
    check_releases,
    consumer_tokens,
)

WORKERS = 3
RELEASES = 150
INTERVAL = 0.2  # BrokerProcess's checkpoint interval
MIN_GAP = timedelta(seconds=INTERVAL * 0.8)


def connected_workers(broker: BrokerProcess) -> set[int]:
    """The workers holding an established connection on the broker's port right now.

    Test-only, from /proc: the socket inodes of established connections to the port, and
    which worker has a descriptor on one. The broker itself says nothing about its processes.
    """
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == broker.port:
            inodes.add(f"socket:[{parts[9]}]")
    holding = set()
    for pid in broker.workers_pids():
        with contextlib.suppress(OSError):  # a worker may come and go
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        holding.add(pid)
                        break
    return holding


def test_several_workers_on_sqlite_are_refused_at_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    result = subprocess.run(
        [*BROKER, "serve", "--workers", "2", "--port", str(free_port())],
        env={**env, "BROKER_DATA_DIR": str(tmp_path / "var")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers above 1 needs PostgreSQL" in result.stderr


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_three_workers_serve_releases_into_one_consistent_log(demo: Engine, tmp_path: Path) -> None:
    broker = BrokerProcess(demo, tmp_path, workers=WORKERS)
    seen: set[int] = set()
    try:
        broker.start()
        assert len(broker.workers_pids()) >= WORKERS
        keystore = KeyStore.open(broker.keys_dir, None, production=False)
        # The workers raced to create the first keys: one key per use came of it.
        for use in KeyUse:
            assert len(keystore.public_keys(use)) == 1, use
        tokens = consumer_tokens(demo, broker.url, broker.keys_dir)
        consumers = Consumers(broker.url, tokens, threads=6).start()
        try:
            deadline = time.monotonic() + 120
            while consumers.ok() < RELEASES or len(seen) < 2:
                assert time.monotonic() < deadline, (consumers.statuses, seen)
                seen |= connected_workers(broker)
                time.sleep(0.02)
        finally:
            consumers.stop()
        broker.stop()  # each worker signs what it added as it stops
    finally:
        broker.close()

    assert len(seen) >= 2, f"every answer came from one worker: {seen}"
    assert set(consumers.statuses) == {200}, [r.text for r in consumers.problems[:3]]
    kinds = check_releases(demo, consumers.released)
    assert kinds["data.released"] == len(consumers.released) >= RELEASES

    size = assert_log_verifies(demo, keystore)
    with transaction(demo, readonly=True) as session:
        signed = [(cp.signed_at, cp.size, cp.note) for cp in store.checkpoints(session)]
    assert signed[-1][1] == size, "the workers stopped without signing the whole log"
    verifier = Verifier(ORIGIN, keystore.current(KeyUse.LOG).public_key)
    assert_checkpoints_are_prefixes(demo, [(n, note) for _, n, note in signed], verifier)
    # Signed in turns: in the order of their times the sizes grow. Only signing at start and
    # at stop ignores the interval; the timers of three workers sign no more often than one.
    by_time = sorted(signed)
    assert [n for _, n, _ in by_time] == sorted(n for _, n, _ in signed)
    close_together = sum(1 for a, b in pairwise(by_time) if b[0] - a[0] < MIN_GAP)
    assert close_together <= 2 * WORKERS, [t for t, _, _ in by_time]

    # An auditor's copy, verified offline with the public key, sees every release.
    directory = AuditDirectory(tmp_path / "audit")
    fetch(DatabaseLogSource(demo), directory)
    report = verify_directory(directory, log_verifiers(keystore, ORIGIN), origin=ORIGIN)
    assert report.ok, report.failures
    assert report.tree_size == size
    assert report.event_counts["data.released"] == len(consumers.released)
