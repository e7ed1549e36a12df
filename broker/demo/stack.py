"""The whole demo on loopback: the broker, two sources and the self-care app, each a real server.

`make run` serves it on fixed ports until interrupted; `make demo` and the end-to-end tests start
it on free ports.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from broker.api import create_app
from broker.oauth import clients
from broker.settings import Settings
from broker.storage import transaction
from connectors.base import Connector

SOURCE_AUDIENCES = {
    "patient-record": "urn:omadata:source:patient-record",
    "social-care": "urn:omadata:source:social-care",
}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """One ASGI app served by uvicorn on loopback, in a thread of this process."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Served:
        """Start serving; RuntimeError if the server does not come up within 20 s."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the server's shutdown (and its app's lifespan) to end."""
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass(frozen=True)
class DemoPorts:
    """Where each part listens; 0 means a free port."""

    broker: int = 0
    patient_record: int = 0
    social_care: int = 0
    selfcare_app: int = 0


@dataclass
class DemoStack:
    """The running demo: URLs of each part, and the self-care app's client at the broker."""

    broker: Served
    patient_record: Served
    social_care: Served
    selfcare_app: Served
    client_id: str

    @property
    def runtime(self) -> Any:
        """The broker's runtime (engine, keys, ledger)."""
        return self.broker.app.state.runtime

    def stop(self) -> None:
        """Stop every part, the consumer first and the broker last."""
        for part in (self.selfcare_app, self.social_care, self.patient_record, self.broker):
            part.stop()


def start_demo(
    settings: Settings,
    engine: Engine | None = None,
    ports: DemoPorts | None = None,
    sources: dict[str, Connector] | None = None,
) -> DemoStack:
    """Start the broker (database already migrated and loaded), the sources and the app."""
    ports = ports or DemoPorts()
    from broker.demo.selfcare_app import create_app as selfcare_app
    from broker.demo.sources import fhir, social_care

    broker_port = ports.broker or free_port()
    broker_url = settings.public_url or f"http://127.0.0.1:{broker_port}"
    jwks_url = f"{broker_url}/.well-known/jwks.json"
    patient = Served(
        fhir.create_app(broker_url, SOURCE_AUDIENCES["patient-record"], jwks_url),
        ports.patient_record,
    )
    social = Served(
        social_care.create_app(broker_url, SOURCE_AUDIENCES["social-care"], jwks_url),
        ports.social_care,
    )
    settings = settings.model_copy(
        update={
            "public_url": broker_url,
            "port": broker_port,
            "source_base_urls": {
                "patient-record": f"{patient.url}/fhir",
                "social-care": social.url,
            },
        }
    )
    broker = Served(create_app(settings, engine=engine, sources=sources), broker_port)
    app_port = ports.selfcare_app or free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    runtime = broker.app.state.runtime
    with transaction(runtime.engine) as session:
        issued = clients.register_service_client(
            session,
            service_id="selfcare-app",
            redirect_uris=[f"{app_url}/callback"],
            now=datetime.now(UTC),
        )
    assert issued.client_secret is not None  # client_secret_basic always gets a secret
    app = Served(
        selfcare_app(broker_url, issued.client_id, issued.client_secret, app_url), app_port
    )
    started: list[Served] = []
    try:
        for part in (broker, patient, social, app):
            started.append(part.start())
    except Exception:
        for part in reversed(started):
            part.stop()
        raise
    return DemoStack(broker, patient, social, app, issued.client_id)
