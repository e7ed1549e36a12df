"""GET /metrics: release outcomes, latency by route template, database gauges, access control,
and counters summed over worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from starlette.testclient import TestClient

from broker.api import create_app
from broker.consents import service as consents
from broker.errors import ReleaseDenied, SourceFailed
from broker.observability.metrics import exposition
from broker.releases.service import DataRequest, release
from broker.settings import Settings
from broker.storage import transaction
from broker.storage.tables import LogHead
from connectors.base import FetchRequest, Record

AINO = "aino-virtanen"
# For what does not depend on the database engine, one is enough.
SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
LABS = "health.lab_results"


@contextmanager
def served(app: Any, *addresses: str) -> Iterator[list[TestClient]]:
    """Test clients calling from `addresses`; the app's lifespan runs once, with the first."""
    with TestClient(app, client=(addresses[0], 40000)) as first:
        yield [first, *(TestClient(app, client=(a, 40000)) for a in addresses[1:])]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value, 0 if absent (a counter not yet incremented)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


@dataclass
class LabSource:
    """A patient-record connector answering from memory."""

    source_id: str = "patient-record"
    audience: str = "urn:test:patient-record"
    categories: frozenset[str] = frozenset({LABS})
    fetched: list[FetchRequest] = field(default_factory=list)

    def fetch(self, request: FetchRequest) -> list[Record]:
        self.fetched.append(request)
        return [{"test_code": "B-Hb", "value": "140"}]

    def close(self) -> None:
        pass


@pytest.fixture
def client(demo: Engine, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "broker"), engine=demo, sources={})
    with TestClient(app, client=("127.0.0.1", 40000)) as test_client:
        yield test_client


def test_release_outcomes_and_denial_reasons_are_counted(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    before = client.get("/metrics").text
    now = datetime.now(UTC)
    consent = runtime.ledger.run(
        lambda session, log: consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-labs-medications",
            actor_id=AINO,
            now=now,
        )
    )

    def ask(consent_ids: tuple[str, ...], sources: dict[str, LabSource]) -> None:
        release(
            runtime.engine,
            runtime.ledger,
            runtime.keystore,
            sources,
            issuer=runtime.settings.effective_public_url,
            request=DataRequest("selfcare-app", consent_ids, LABS, frozenset({"value"})),
            now=now,
        )

    ask((consent.id,), {"patient-record": LabSource()})
    with pytest.raises(SourceFailed):
        ask((consent.id,), {})
    with pytest.raises(ReleaseDenied):
        ask((), {"patient-record": LabSource()})
    after = client.get("/metrics").text
    for outcome in ("released", "failed", "denied"):
        key = {"category": LABS, "outcome": outcome}
        grew = value(after, "omadata_releases_total", **key) - value(
            before, "omadata_releases_total", **key
        )
        assert grew == 1, outcome
    reason = {"reason": "no_consent"}
    assert value(after, "omadata_release_denials_total", **reason) - value(
        before, "omadata_release_denials_total", **reason
    ) == pytest.approx(1)


@SQLITE
def test_latency_is_labelled_by_route_template_and_status_class(client: TestClient) -> None:
    assert client.get("/v1/services/selfcare-app").status_code == 200
    assert client.get("/v1/services/no-such-service").status_code == 404
    text = client.get("/metrics").text
    route = "/v1/services/{service_id}"
    count = "omadata_http_request_duration_seconds_count"
    assert value(text, count, method="GET", route=route, status="2xx") >= 1
    assert value(text, count, method="GET", route=route, status="4xx") >= 1
    assert "selfcare-app" not in text
    assert "no-such-service" not in text


def test_database_gauges_are_read_at_scrape(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.signer.sign_if_grown()
    with transaction(runtime.engine, readonly=True) as session:
        head = session.get(LogHead, 1)
        assert head is not None
        assert head.size > 0
        size = head.size
    text = client.get("/metrics").text
    assert value(text, "omadata_log_entries") == size
    assert 0 <= value(text, "omadata_checkpoint_age_seconds") < 600
    assert value(text, "omadata_notifications_pending") == 0


@SQLITE
def test_without_a_token_only_direct_loopback_requests_get_metrics(
    demo: Engine, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "broker"), engine=demo, sources={})
    with served(app, "127.0.0.1", "203.0.113.7") as (local, remote):
        assert local.get("/metrics").status_code == 200
        forwarded = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
        assert forwarded.status_code == 403
        refused = remote.get("/metrics")
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"


@SQLITE
def test_with_a_token_metrics_need_it(demo: Engine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "broker", metrics_token="s3cret-scrape-token")
    app = create_app(settings, engine=demo, sources={})
    with TestClient(app, client=("203.0.113.7", 40000)) as remote:
        assert remote.get("/metrics").status_code == 401
        wrong = remote.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-tokem"})
        assert wrong.status_code == 401
        right = remote.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
        assert right.status_code == 200
        assert right.headers["content-type"].startswith("text/plain; version=")


_WORKER = """
from broker.observability.metrics import count_release, observe_request
count_release("health.lab_results", "released")
count_release("health.lab_results", "denied", "no_consent")
observe_request("GET", "/v1/data/{category}", 200, 0.02)
"""


@SQLITE
def test_counters_of_several_worker_processes_are_summed(engine: Engine, tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER], env=env) for _ in range(2)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    text = exposition(engine, datetime.now(UTC), multiprocess_dir=str(shared)).decode()
    labs = {"category": LABS}
    assert value(text, "omadata_releases_total", outcome="released", **labs) == 2
    assert value(text, "omadata_release_denials_total", reason="no_consent") == 2
    count = "omadata_http_request_duration_seconds_count"
    assert value(text, count, method="GET", route="/v1/data/{category}", status="2xx") == 2
    assert value(text, "omadata_log_entries") == 0, "the gauges still come from the database"
