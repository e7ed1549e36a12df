"""A broker run as an operator runs it, for tests of its production shape and its faults.

`BrokerProcess` starts `broker serve` (one or several workers) as a real process on a migrated
demo database, with the demo sources served on loopback in this process. `Consumers` are
threads fetching data at full rate with their own keep-alive connections, recording every
answer. `check_releases` then holds each 200 answer against the log entry it names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlmodel import select

from broker.auth.tokens import issue_access_token
from broker.consents.service import give_consent
from broker.demo.sources import fhir
from broker.demo.stack import SOURCE_AUDIENCES, Served, free_port
from broker.ledger.events import canonical_json, decode_leaf
from broker.ledger.sequencer import unit_of_work
from broker.oauth import clients
from broker.oauth.clients import Scope
from broker.storage import transaction
from broker.storage.tables import LogLeaf
from keys import KeyStore, KeyUse
from tests.broker.ledger.test_crash import ORIGIN

BROKER = [sys.executable, "-m", "broker.cli"]
AGREEMENT = "selfcare-labs-medications"
CATEGORIES = ("health.lab_results", "health.medications")
PERSONS = ("aino-virtanen", "matti-korhonen")
START_TIMEOUT = 90.0  # seconds for `broker serve` to answer; a few normally, more when loaded


def url_of(engine: Engine) -> str:
    """The engine's URL with its password, for another process."""
    return engine.url.render_as_string(hide_password=False)


class BrokerProcess:
    """`broker serve` in a process group of its own, on `database`, with the patient-record
    demo source served here; `keys_dir` is empty until the broker creates its keys."""

    def __init__(self, database: Engine, tmp_path: Path, *, workers: int = 1) -> None:
        self.database = database
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "var"
        self.keys_dir = self.data_dir / "keys"
        self.logs = tmp_path / "broker-logs"
        self.logs.mkdir(exist_ok=True)
        self.cwd = tmp_path  # no stray .env
        self.source = Served(
            fhir.create_app(
                self.url, SOURCE_AUDIENCES["patient-record"], f"{self.url}/.well-known/jwks.json"
            )
        ).start()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        self.env = {
            **clean,
            "BROKER_DATA_DIR": str(self.data_dir),
            "BROKER_DATABASE_URL": url_of(database),
            "BROKER_PUBLIC_URL": self.url,
            "BROKER_LOG_ORIGIN": ORIGIN,
            "BROKER_CHECKPOINT_INTERVAL_SECONDS": "0.2",
            "BROKER_SOURCE_BASE_URLS": f'{{"patient-record": "{self.source.url}/fhir"}}',
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> BrokerProcess:
        """Start serving and wait until /healthz answers; AssertionError with its log if not."""
        self.starts += 1
        out = (self.logs / f"run{self.starts}.log").open("wb")
        args = [*BROKER, "serve", "--port", str(self.port), "--workers", str(self.workers)]
        self.proc = subprocess.Popen(
            args, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"broker serve exited ({self.proc.returncode}):\n{self.log}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError(f"broker serve did not answer in {START_TIMEOUT} s:\n{self.log}")

    @property
    def log(self) -> str:
        """What the latest run wrote (uvicorn's and the broker's log lines)."""
        return (self.logs / f"run{self.starts}.log").read_text(errors="replace")[-5000:]

    def workers_pids(self) -> list[int]:
        """The worker processes (children of uvicorn's supervisor), or the one process."""
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def kill(self) -> None:
        """SIGKILL the whole process group: the supervisor and every worker, no clean-up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop as an operator would (SIGTERM), the workers finishing their work and signing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # orphaned workers, if any

    def close(self) -> None:
        """Stop the broker and the source."""
        self.stop()
        self.source.stop()


def consumer_tokens(database: Engine, url: str, keys_dir: Path) -> list[str]:
    """Access tokens of the self-care app at the broker at `url` (keys in `keys_dir`), one per
    demo person who consented to its agreement.

    Minted with the broker's own token key as its authorization-code grant would issue them
    (scope `release`, the consent ids): the OAuth flows are tested elsewhere; this is about the
    release path under load.
    """
    now = datetime.now(UTC)
    with transaction(database) as session:
        client = clients.register_service_client(
            session, service_id="selfcare-app", redirect_uris=["http://127.0.0.1/cb"], now=now
        )
    consent_ids = []
    for person in PERSONS:
        with unit_of_work(database) as (session, log):
            record = give_consent(
                session, log, person_id=person, agreement_id=AGREEMENT, actor_id=person, now=now
            )
            consent_ids.append(record.id)
    keystore = KeyStore.open(keys_dir, None, production=False)
    return [
        issue_access_token(
            keystore,
            issuer=url,
            audience=f"{url}/v1",
            subject=f"pairwise-{n}",
            client_id=client.client_id,
            scopes=[Scope.RELEASE.value],
            now=now,
            lifetime=timedelta(hours=1),
            extra={"consent_ids": [consent_id], "consent_id": consent_id},
        )
        for n, consent_id in enumerate(consent_ids)
    ]


def log_key(broker: BrokerProcess) -> bytes:
    """The broker's current log public key."""
    return KeyStore.open(broker.keys_dir, None, production=False).current(KeyUse.LOG).public_key


@dataclass
class Consumers:
    """Threads fetching data from the broker until stopped, each on its own connections.

    Every 200 body is kept; other statuses and transport errors are counted. Each thread opens
    a new connection every `reconnect_every` requests, so that several workers get some.
    """

    url: str
    tokens: list[str]
    threads: int = 6
    reconnect_every: int = 5
    timeout: float = 30.0
    released: list[dict[str, Any]] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    problems: list[httpx.Response] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Consumers:
        """Start the threads."""
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._running.append(thread)
        return self

    def stop(self) -> None:
        """Stop after the requests under way."""
        self._stop.set()
        for thread in self._running:
            thread.join(timeout=self.timeout + 10)

    def ok(self) -> int:
        """How many 200 answers came so far."""
        with self._lock:
            return len(self.released)

    def wait_for(self, count: int, timeout: float = 120.0) -> None:
        """Until `count` more 200 answers came than now; AssertionError on timeout."""
        target = self.ok() + count
        deadline = time.monotonic() + timeout
        while self.ok() < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.ok()} of {target} releases in {timeout} s: {self}")
            time.sleep(0.05)

    def _run(self, n: int) -> None:
        token = self.tokens[n % len(self.tokens)]
        headers = {"Authorization": f"Bearer {token}"}
        i = 0
        while not self._stop.is_set():
            with httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout) as http:
                for _ in range(self.reconnect_every):
                    if self._stop.is_set():
                        return
                    category = CATEGORIES[(n + i) % len(CATEGORIES)]
                    i += 1
                    self._one(http, category)

    def _one(self, http: httpx.Client, category: str) -> None:
        try:
            response = http.get(f"/v1/data/{category}")
        except httpx.TransportError as exc:
            with self._lock:
                self.statuses[type(exc).__name__] += 1
            time.sleep(0.05)  # the broker is down; do not spin
            return
        with self._lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 200:
                self.released.append(response.json())
            else:
                self.problems.append(response)


def check_releases(database: Engine, released: list[dict[str, Any]]) -> Counter[str]:
    """Every body a consumer got matches the `data.released` entry it names, by SHA-256 of the
    canonical JSON of what was released, fields and record count; entry types in the log."""
    with transaction(database, readonly=True) as session:
        leaves = {row.idx: bytes(row.leaf) for row in session.exec(select(LogLeaf))}
    indexes = [body["log_index"] for body in released]
    assert len(set(indexes)) == len(indexes), "two answers name the same log entry"
    for body in released:
        entry = decode_leaf(leaves[body["log_index"]])
        digest = hashlib.sha256(canonical_json(body["released"])).hexdigest()
        assert entry["type"] == "data.released", entry
        assert entry["sha256"] == body["sha256"] == digest
        assert entry["fields"] == body["released"]["fields"]
        assert entry["records"] == len(body["released"]["records"])
        assert entry["category"] == body["released"]["category"]
    return Counter(decode_leaf(leaf)["type"] for leaf in leaves.values())
