"""A source that fails at the socket level, seen through the release API: nothing is released,
the consumer gets a 502 or 504 problem, and every failure is a `data.release_failed` entry.

`test_release_http` covers a slow source, a 500 and a truncated JSON document; these are the
faults below HTTP semantics: a reset connection, a hang-up before any answer, a body shorter
than its Content-Length, a body dripping past the deadline, and a 503. One broker and one
consent serve every case; the hostile source switches behaviour between requests.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from broker.demo.stack import DemoStack
from broker.storage import transaction
from broker.storage.tables import LogEvent
from tests.broker.releases.test_release_http import (
    consent_and_token,
    demo_with_rest_labs,
    get_labs,
    logged,
)
from tests.connectors.support import BEHAVIOURS, HostileSource

FAULTS = {
    "reset": (502, "source-failed"),
    "hangup": (502, "source-failed"),
    "short": (502, "source-failed"),
    "unavailable": (502, "source-failed"),
    "drip": (504, "source-timeout"),
}


class Switchable:
    """A hostile source whose one route behaves as `behaviour` says at the time."""

    def __init__(self) -> None:
        self.behaviour = "reset"
        self.source = HostileSource({"switch": self._behave})

    def _behave(self, sock: socket.socket, target: str) -> None:
        BEHAVIOURS[self.behaviour](sock, target)


@pytest.fixture
def faulty(demo: Engine, tmp_path: Path) -> Iterator[tuple[DemoStack, Switchable]]:
    hostile = Switchable()
    stack = demo_with_rest_labs(demo, tmp_path, hostile.source.url, "/switch/{subject}/{category}")
    yield stack, hostile
    stack.stop()
    hostile.source.close()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_socket_level_source_faults_release_nothing_and_are_each_logged(
    faulty: tuple[DemoStack, Switchable],
) -> None:
    stack, hostile = faulty
    token = consent_and_token(stack, "aino-virtanen")
    failures = []
    for behaviour, (status, problem) in FAULTS.items():
        hostile.behaviour = behaviour
        response = get_labs(stack, token)
        assert response.status_code == status, (behaviour, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["type"] == f"/problems/{problem}", behaviour
        assert "released" not in body
        assert "records" not in body
        entry = logged(stack, body["log_index"])
        assert entry["type"] == "data.release_failed", behaviour
        assert entry["category"] == "health.lab_results"
        assert "sha256" not in entry
        failures.append(body["log_index"])
    with transaction(stack.runtime.engine, readonly=True) as session:
        kinds = [e.event_type for e in session.exec(select(LogEvent))]
    assert "data.released" not in kinds
    assert kinds.count("data.release_failed") == len(failures) == len(set(failures))
