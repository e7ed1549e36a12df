"""Releases over real HTTP: the demo story, partial consents, expiry, and failing sources."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine
from sqlmodel import select

from broker.demo.stack import DemoStack, Served, start_demo
from broker.demo.walk import Walk
from broker.ledger.events import canonical_json, decode_leaf
from broker.people.credentials import set_password
from broker.settings import Settings
from broker.storage import transaction
from broker.storage.tables import Consent, LogEvent, LogLeaf
from connectors.base import FetchRequest, Record
from connectors.config import load_connectors
from tests.broker.oauth.flows import (
    Browser,
    Consumer,
    new_verifier,
    redirect_params,
    register_consumer,
)

PASSWORD = "correct horse battery staple"
LABS = [{"type": "omadata_release", "agreement": "selfcare-labs-medications"}]


@pytest.fixture
def stack(demo: Engine, tmp_path: Path) -> Iterator[DemoStack]:
    with transaction(demo) as session:
        for person in ("aino-virtanen", "karin-lindqvist", "sam-taylor"):
            set_password(session, person, PASSWORD, datetime.now(UTC))
    started = start_demo(
        Settings(data_dir=tmp_path / "broker", checkpoint_interval_seconds=0.2), engine=demo
    )
    yield started
    started.stop()


class _Live:
    """What the OAuth test helpers need of a live broker: its URL and runtime."""

    def __init__(self, stack: DemoStack) -> None:
        self.url = stack.broker.url
        self.runtime = stack.runtime


def consent_and_token(stack: DemoStack, user: str, drop: set[str] = frozenset()) -> dict[str, Any]:
    """`user` approves the self-care app's request (leaving out `drop`); the app's tokens."""
    live: Any = _Live(stack)
    consumer: Consumer = register_consumer(live)
    browser = Browser(live)
    try:
        verifier = new_verifier()
        url, _ = consumer.authorization_url(LABS, verifier)
        answered = browser.answer(browser.open_consent(url, user), "approve", drop=drop)
        redirect_params(answered)
        return consumer.exchange(answered.headers["location"], verifier)
    finally:
        browser.close()


def get_labs(stack: DemoStack, token: dict[str, Any], **params: Any) -> httpx.Response:
    return httpx.get(
        f"{stack.broker.url}/v1/data/health.lab_results",
        params=params,
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=30,
    )


def logged(stack: DemoStack, index: int) -> dict[str, Any]:
    with transaction(stack.runtime.engine, readonly=True) as session:
        leaf = session.exec(select(LogLeaf).where(LogLeaf.idx == index)).one()
        return decode_leaf(bytes(leaf.leaf))


def test_the_demo_story_runs_end_to_end(stack: DemoStack, tmp_path: Path) -> None:
    lines: list[str] = []
    passwords = dict.fromkeys(("aino-virtanen", "karin-lindqvist"), PASSWORD)
    Walk(stack, passwords, tmp_path, lines.append).run()
    assert len([line for line in lines if line[:3].strip().rstrip(".").isdigit()]) == 6
    assert any("verified" in line for line in lines)


def test_a_release_is_logged_with_the_hash_of_exactly_what_was_sent(stack: DemoStack) -> None:
    token = consent_and_token(stack, "aino-virtanen")
    response = get_labs(stack, token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["omadata-log-index"] == str(body["log_index"])
    digest = hashlib.sha256(canonical_json(body["released"])).hexdigest()
    assert body["sha256"] == digest
    entry = logged(stack, body["log_index"])
    assert entry["type"] == "data.released"
    assert entry["sha256"] == digest
    assert entry["fields"] == body["released"]["fields"]
    assert entry["records"] == len(body["released"]["records"]) > 0
    assert "Aino" not in str(entry)
    assert "potilas" not in str(entry)


def test_a_consent_for_some_fields_never_releases_the_others(stack: DemoStack) -> None:
    token = consent_and_token(stack, "sam-taylor", drop={"health.lab_results.reference_range"})
    body = get_labs(stack, token).json()
    assert "reference_range" not in body["released"]["fields"]
    assert all("reference_range" not in record for record in body["released"]["records"])
    narrower = get_labs(stack, token, fields=["value", "unit"]).json()
    assert narrower["released"]["fields"] == ["unit", "value"]
    assert all(set(r) <= {"unit", "value"} for r in narrower["released"]["records"])


class LeakySource:
    """A source that ignores what it was asked for and sends every field it has."""

    source_id = "patient-record"
    audience = "urn:omadata:source:patient-record"
    categories = frozenset({"health.lab_results"})

    def fetch(self, request: FetchRequest) -> list[Record]:
        return [
            {
                "test_code": "2095",
                "test_name": "P-Gluk",
                "value": "5.4",
                "unit": "mmol/l",
                "reference_range": "4.0-6.0",
                "taken_at": "2026-11-01",
                "secret_note": "never to be released",
            }
        ]

    def close(self) -> None:
        return None


def test_fields_outside_the_consent_are_filtered_even_if_the_source_sends_them(
    demo: Engine, tmp_path: Path
) -> None:
    with transaction(demo) as session:
        set_password(session, "sam-taylor", PASSWORD, datetime.now(UTC))
    stack = start_demo(
        Settings(data_dir=tmp_path / "broker"),
        engine=demo,
        sources={"patient-record": LeakySource()},
    )
    try:
        token = consent_and_token(stack, "sam-taylor", drop={"health.lab_results.reference_range"})
        body = get_labs(stack, token).json()
        assert body["released"]["records"] == [
            {
                "test_code": "2095",
                "test_name": "P-Gluk",
                "value": "5.4",
                "unit": "mmol/l",
                "taken_at": "2026-11-01",
            }
        ]
    finally:
        stack.stop()


def test_an_expired_consent_is_denied_with_no_background_task_having_run(
    stack: DemoStack,
) -> None:
    token = consent_and_token(stack, "aino-virtanen")
    consent_id = token["authorization_details"][0]["consent_id"]
    with transaction(stack.runtime.engine) as session:
        consent = session.get(Consent, consent_id)
        assert consent is not None
        consent.valid_until = datetime.now(UTC) - timedelta(seconds=1)  # time has passed
        session.add(consent)
    response = get_labs(stack, token)
    assert response.status_code == 403
    problem = response.json()
    assert problem["type"] == "/problems/release-denied"
    assert problem["reason"] == "consent_expired"
    entry = logged(stack, problem["log_index"])
    assert (entry["type"], entry["reason"]) == ("data.release_denied", "consent_expired")
    with transaction(stack.runtime.engine, readonly=True) as session:
        status = session.get(Consent, consent_id)
        assert status is not None
        assert status.status == "given"  # nothing marked it expired


def _hostile_source() -> FastAPI:
    app = FastAPI()

    @app.get("/slow/{subject}/{category}")
    def slow(subject: str, category: str) -> dict[str, Any]:
        time.sleep(3)
        return {"records": []}

    @app.get("/broken/{subject}/{category}")
    def broken(subject: str, category: str) -> PlainTextResponse:
        return PlainTextResponse("Internal error", status_code=500)

    @app.get("/garbage/{subject}/{category}")
    def garbage(subject: str, category: str) -> PlainTextResponse:
        return PlainTextResponse('{"records": [{"test_name": "P-Gl', media_type="application/json")

    return app


def demo_with_rest_labs(demo: Engine, tmp_path: Path, base_url: str, url: str) -> DemoStack:
    """The demo, its patient record replaced by a REST source of lab results at `base_url`
    (`url` with {subject} and {category}), answering within 1 s; Aino has a password."""
    mapping = tmp_path / "sources.yaml"
    mapping.write_text(
        "sources:\n  patient-record:\n    kind: rest\n"
        f"    base_url: {base_url}\n    audience: urn:omadata:source:patient-record\n"
        f"    url: {url}\n"
        "    categories:\n      health.lab_results:\n        records: records\n"
        "        fields: {test_name: test_name, value: value, unit: unit, taken_at: taken_at,"
        " test_code: test_code, reference_range: reference_range}\n",
        encoding="utf-8",
    )
    with transaction(demo) as session:
        set_password(session, "aino-virtanen", PASSWORD, datetime.now(UTC))
    return start_demo(
        Settings(data_dir=tmp_path / "broker"),
        engine=demo,
        sources=load_connectors(mapping, timeout=1.0),
    )


@pytest.mark.parametrize(
    ("route", "status", "problem"),
    [
        ("slow", 504, "source-timeout"),
        ("broken", 502, "source-failed"),
        ("garbage", 502, "source-failed"),
    ],
)
def test_a_failing_source_yields_a_clear_problem_and_a_logged_failure(
    demo: Engine, tmp_path: Path, route: str, status: int, problem: str
) -> None:
    hostile = Served(_hostile_source()).start()
    stack = demo_with_rest_labs(demo, tmp_path, hostile.url, f"/{route}/{{subject}}/{{category}}")
    try:
        token = consent_and_token(stack, "aino-virtanen")
        response = get_labs(stack, token)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["type"] == f"/problems/{problem}"
        assert "records" not in body
        assert "released" not in body
        entry = logged(stack, body["log_index"])
        assert entry["type"] == "data.release_failed"
        with transaction(stack.runtime.engine, readonly=True) as session:
            kinds = {e.event_type for e in session.exec(select(LogEvent))}
        assert "data.released" not in kinds
    finally:
        stack.stop()
        hostile.stop()
