"""A demo deployment for the HTTP benchmarks and the soak: database, keys, processes, consent.

`Deployment` migrates a fresh database (a SQLite file, or a temporary PostgreSQL database made
and dropped on the server BROKER_TEST_POSTGRES_URL names), loads the demo catalogue, gives the
demo persons a password and registers the self-care app as a consumer client. `start` runs the
demo FHIR source and the broker, each by uvicorn in a process of its own (tests.benchmarks
.servers). `consent` then plays the person's browser over HTTP, as the release tests do: sign
in, approve the self-care app's request, and exchange the code for the app's tokens.

The broker reaches the source through its own connectors file: the demo's, except that the
FHIR search asks for 50 results a page (the demo asks for 3 to exercise paging), so a release
is one request to the source, as the passthrough's is.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.service import load_catalogue
from broker.demo.stack import free_port
from broker.ledger.sequencer import unit_of_work
from broker.people.credentials import set_password
from broker.runtime import open_keystore
from broker.settings import Settings
from broker.storage import create_db_engine, migrate
from tests.benchmarks.servers import Process, module_args

PASSWORD = "correct horse battery staple"
DEMO_CONNECTORS = Path(__file__).resolve().parents[2] / "broker" / "demo" / "connectors.yaml"


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url`, dropped afterwards."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"broker_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(admin, name)
        admin.dispose()


def _drop(admin: Engine, name: str) -> None:
    # After a bulk load an autovacuum worker may be in the database: FORCE may not terminate
    # it without superuser rights, while a plain DROP asks it to stop and waits.
    for statement in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',) + (
        f'DROP DATABASE IF EXISTS "{name}"',
    ) * 5:
        try:
            with admin.connect() as conn:
                conn.execute(text(statement))
            return
        except DBAPIError:
            time.sleep(1)
    print(f"could not drop the benchmark database {name}; drop it by hand", file=sys.stderr)


@dataclass
class Deployment:
    """The demo broker and FHIR source, prepared in `workdir` on `database_url`."""

    workdir: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    rate_limits: bool = False
    """Keep the broker's rate limits (the soak); the benchmarks turn them off."""
    broker_port: int = field(default_factory=free_port)
    source_port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    engine: Engine = field(init=False)
    consumer: Any = field(init=False)

    @property
    def broker_url(self) -> str:
        """The broker's base URL."""
        return f"http://127.0.0.1:{self.broker_port}"

    @property
    def source_url(self) -> str:
        """The FHIR source's base URL (its FHIR endpoint is under /fhir)."""
        return f"http://127.0.0.1:{self.source_port}"

    def prepare(self) -> Deployment:
        """Migrate, load the demo, set passwords, make keys, register the consumer client."""
        from tests.broker.oauth.flows import register_consumer

        data_dir = self.workdir / "broker"
        data_dir.mkdir(parents=True, exist_ok=True)
        connectors = yaml.safe_load(DEMO_CONNECTORS.read_text(encoding="utf-8"))
        connectors["sources"]["patient-record"]["base_url"] = f"{self.source_url}/fhir"
        connectors["sources"]["patient-record"]["page_size"] = 50
        connectors["sources"]["social-care"]["base_url"] = f"http://127.0.0.1:{free_port()}"
        connectors_file = self.workdir / "connectors.yaml"
        connectors_file.write_text(yaml.safe_dump(connectors), encoding="utf-8")
        env, self.env = (
            self.env,
            {
                "BROKER_DATA_DIR": str(data_dir),
                "BROKER_DATABASE_URL": self.database_url,
                "BROKER_PUBLIC_URL": self.broker_url,
                "BROKER_PORT": str(self.broker_port),
                "BROKER_CONNECTORS_FILE": str(connectors_file),
                "BROKER_ACCESS_TOKEN_LIFETIME_SECONDS": "3600",
            },
        )
        if not self.rate_limits:
            # The benchmarks load the token endpoint from one address far beyond the rate
            # limits, which would answer 429 (oidc-provider has none); 0 turns them off.
            self.env.update(BROKER_RATE_OAUTH_PER_MINUTE="0", BROKER_RATE_CLIENT_PER_MINUTE="0")
        self.env.update(env)
        settings = Settings(
            data_dir=data_dir, database_url=self.database_url, public_url=self.broker_url
        )
        self.engine = create_db_engine(self.database_url)
        migrate.upgrade(self.engine)
        spec = read_catalogue(demo_catalogue_path())
        now = datetime.now(UTC)
        with unit_of_work(self.engine) as (session, log):
            load_catalogue(session, log, spec, now)
            for person in spec.persons:
                set_password(session, person.id, PASSWORD, now)
        open_keystore(settings)
        self.consumer = register_consumer(self.live())
        return self

    def live(self) -> Any:
        """What the OAuth test helpers need of a broker: its URL and its database."""
        return SimpleNamespace(url=self.broker_url, runtime=SimpleNamespace(engine=self.engine))

    def start(self) -> Deployment:
        """Start the FHIR source and the broker, each in its own process."""
        source = Process(
            "fhir-source",
            module_args("source", "--port", str(self.source_port), "--broker", self.broker_url),
            self.source_port,
            ready_path="/fhir/metadata",
        )
        broker = Process(
            "broker",
            module_args("broker", "--port", str(self.broker_port)),
            self.broker_port,
            env=self.env,
            ready_path="/healthz",
        )
        for process in (source, broker):
            self.processes.append(process.start())
        return self

    @property
    def broker(self) -> Process:
        """The broker's process."""
        return next(p for p in self.processes if p.name == "broker")

    def consent(self, person: str, agreement: str = "selfcare-labs-medications") -> dict[str, Any]:
        """`person` approves the self-care app's request over HTTP; the app's token response."""
        from tests.broker.oauth.flows import Browser, new_verifier

        live = self.live()
        browser = Browser(live)
        try:
            verifier = new_verifier()
            details = [{"type": "omadata_release", "agreement": agreement}]
            url, _ = self.consumer.authorization_url(details, verifier)
            answered = browser.answer(browser.open_consent(url, person), "approve")
            if answered.status_code not in (302, 303):
                raise RuntimeError(f"the consent was not given: {answered.status_code}")
            token: dict[str, Any] = self.consumer.exchange(answered.headers["location"], verifier)
            return token
        finally:
            browser.close()

    def stop(self) -> None:
        """Stop the processes, the broker first, and close the database engine."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if hasattr(self, "engine"):
            self.engine.dispose()


@contextmanager
def deployed(workdir: Path, database: str, *, rate_limits: bool = False) -> Iterator[Deployment]:
    """A prepared and started deployment on "sqlite" or a PostgreSQL server URL; stopped after."""
    with _database(workdir, database) as url:
        deployment = Deployment(workdir, url, rate_limits=rate_limits)
        try:
            yield deployment.prepare().start()
        finally:
            deployment.stop()


@contextmanager
def _database(workdir: Path, database: str) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite:///{workdir / 'broker.sqlite3'}"
    else:
        with postgres_database(database) as url:
            yield url
