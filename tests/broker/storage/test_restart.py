"""PostgreSQL going down under load and coming back: clean 503s meanwhile, recovery unaided.

The test runs its own PostgreSQL cluster (initdb into a temporary directory, on a free port), so
that stopping it touches nothing else of the suite. A broker serves the demo on it; consumers
fetch data from several threads and a writer records consents through the broker's log writer.
The cluster is stopped abruptly (`pg_ctl -m immediate`, as in a crash), and started again.

While it is down every request gets an answer at once: a 503 problem with Retry-After, no hang,
no other error. After it is back, the same broker, with no restart and no operator, releases
and records again. And throughout: every body a consumer received is the release entry it
names, every consent has exactly its log entry, and the log verifies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.service import load_catalogue
from broker.demo.stack import free_port, start_demo
from broker.errors import DatabaseUnavailable
from broker.ledger.sequencer import unit_of_work
from broker.ledger.signer import CheckpointSigner
from broker.runtime import Runtime
from broker.settings import Settings
from broker.storage import create_db_engine, transaction
from broker.storage.migrate import upgrade
from broker.storage.tables import Consent, LogEvent, LogLeaf
from tests.broker.ledger.test_crash import consent_for_new_person
from tests.broker.serving import Consumers, check_releases, consumer_tokens
from tests.conftest import IN_CI

pytestmark = pytest.mark.postgres


class Cluster:
    """A private PostgreSQL cluster in a temporary directory, run as the postgres user when
    this is root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=_version)
        if not versions:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = versions[-1].parent
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user and shutil.which("runuser") is None:
            raise RuntimeError("running as root without runuser to become postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="broker-pg-"))
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        """Start serving on the port, and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `immediate` is a crash (no checkpoint, connections cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop if running and delete everything."""
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _version(pg_ctl: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in pg_ctl.parent.parent.name.split(".") if part.isdigit())


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A running private cluster; a failure in CI, a skip elsewhere, if one cannot be made."""
    try:
        made = Cluster()
        made.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        if IN_CI:
            pytest.fail(f"a private PostgreSQL cluster is required in CI: {exc}", pytrace=False)
        pytest.skip(f"cannot run a private PostgreSQL cluster here: {exc}")
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def database(cluster: Cluster) -> Iterator[Engine]:
    """The private cluster's database, migrated, with the demo loaded."""
    engine = create_db_engine(cluster.url)
    upgrade(engine)
    with unit_of_work(engine) as (session, log):
        load_catalogue(session, log, read_catalogue(demo_catalogue_path()), datetime.now(UTC))
    yield engine
    engine.dispose()


class ConsentWriter:
    """A thread recording a new person and their consent through the broker's log writer,
    again and again, counting what committed and what failed (by error type)."""

    def __init__(self, runtime: Runtime) -> None:
        self.ledger = runtime.ledger
        self.committed = 0
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ConsentWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                self.ledger.run(consent_for_new_person(f"restart {i}"))
            except DatabaseUnavailable:
                self.failures["DatabaseUnavailable"] += 1
                time.sleep(0.05)
            except Exception as exc:  # counted and asserted on: anything else is a bug
                self.failures[type(exc).__name__] += 1
                time.sleep(0.05)
            else:
                self.committed += 1


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll `condition()` until true; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_requests_fail_cleanly_while_postgresql_is_down_and_recover_when_it_is_back(
    cluster: Cluster, database: Engine, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "broker", checkpoint_interval_seconds=0.2)
    stack = start_demo(settings, engine=database)
    runtime = stack.runtime
    try:
        tokens = consumer_tokens(database, stack.broker.url, runtime.settings.effective_keys_dir)
        consumers = Consumers(stack.broker.url, tokens, threads=4).start()
        writer = ConsentWriter(runtime).start()
        try:
            consumers.wait_for(20)
            wait_until(lambda: writer.committed >= 5, "consents before the outage")

            cluster.stop("immediate")
            down = len(consumers.problems)
            wait_until(lambda: len(consumers.problems) >= down + 10, "answers while down")
            wait_until(lambda: writer.failures["DatabaseUnavailable"] >= 3, "writer failures")

            cluster.start()
            committed = writer.committed
            consumers.wait_for(20)
            wait_until(lambda: writer.committed >= committed + 5, "consents after the restart")
        finally:
            consumers.stop()
            writer.stop()
    finally:
        stack.stop()

    # While down: a 503 problem with Retry-After for every request, nothing else, no hang.
    assert consumers.problems
    assert set(consumers.statuses) == {200, 503}, consumers.statuses
    for response in consumers.problems:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"].isdigit()
        assert response.json()["type"] == "/problems/database-unavailable"
    assert set(writer.failures) == {"DatabaseUnavailable"}, writer.failures

    # Nothing half done: every release answered is logged, every consent has its one entry.
    check_releases(database, consumers.released)
    with transaction(database, readonly=True) as session:
        consents = set(session.exec(select(Consent.id)).all())
        logged = session.exec(
            select(LogEvent.consent_id).where(LogEvent.event_type == "consent.given")
        ).all()
        assert Counter(logged) == Counter(consents), "a consent without its one entry"
        leaves = session.exec(select(func.count()).select_from(LogLeaf)).one()
        events = session.exec(select(func.count()).select_from(LogEvent)).one()
        assert leaves == events
    assert len(consents) >= writer.committed
    signer = CheckpointSigner(database, runtime.keystore, runtime.settings.log_origin)
    assert signer.verify_stored_log() == leaves
