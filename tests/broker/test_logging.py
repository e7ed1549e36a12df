"""Logs: JSON lines with a request id, an access line per request by route template, and
nothing secret or personal in any logger, even with every logger at DEBUG."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import broker.demo.stack as demo_stack
from broker.api import create_app
from broker.demo import walk
from broker.demo.walk import Walk
from broker.settings import Settings

DEMO = Path(walk.__file__).parent
SECRET_FIELDS = {
    "password",
    "code",
    "code_verifier",
    "refresh_token",
    "access_token",
    "client_secret",
    "client_assertion",
    "token",
    "id_token",
    "csrf",
}


def test_json_lines_carry_the_request_id_and_the_access_fields() -> None:
    script = """
import logging, logging.config
from broker.observability.logs import REQUEST_ID, logging_config
logging.config.dictConfig(logging_config("json", "INFO"))
REQUEST_ID.set("abc123")
logging.getLogger("broker.test").info("hello %s", "world")
logging.getLogger("broker.access").info("GET /x 200", extra={"route": "/x", "status": 200})
logging.getLogger("broker.test").debug("not at INFO")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("broker.test").exception("failed")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert len(lines) == 3, done.stderr
    first, access, failed = lines
    assert first["message"] == "hello world"
    assert first["level"] == "INFO"
    assert first["logger"] == "broker.test"
    assert first["request_id"] == "abc123"
    assert first["time"].endswith("+00:00")
    assert access["route"] == "/x"
    assert access["status"] == 200
    assert "ZeroDivisionError" in failed["exception"]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_each_request_gets_an_id_and_one_access_line_by_route_template(
    demo: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "broker"), engine=demo, sources={})
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="broker.access"):
        first = client.get("/v1/services/selfcare-app")
        second = client.get("/v1/services/selfcare-app")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1]
    lines = [r for r in caplog.records if r.name == "broker.access"]
    assert [getattr(r, "request_id", None) for r in lines] == ids
    assert {getattr(r, "route", None) for r in lines} == {"/v1/services/{service_id}"}
    assert all(getattr(r, "status", None) == 200 for r in lines)
    assert not any("selfcare-app" in r.getMessage() for r in lines)


# --- the story with every logger at DEBUG ------------------------------------------------------


class Seen:
    """Every secret value that crossed the broker's edge during the story."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str | None) -> None:
        # Short values (a state, "1") would match by chance; every real secret is long.
        if value and len(value) >= 8:
            self.values.add(value)

    def form(self, body: bytes) -> None:
        for name, value in parse_qsl(body.decode("utf-8", "replace")):
            if name in SECRET_FIELDS:
                self.add(value)

    def json_body(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        if isinstance(data, dict):
            for name in SECRET_FIELDS:
                if isinstance(data.get(name), str):
                    self.add(data[name])

    def headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        for raw_name, raw_value in headers:
            name, text = raw_name.decode().lower(), raw_value.decode("latin-1")
            if name in {"authorization", "dpop"}:
                scheme, _, credential = text.partition(" ")
                self.add(credential)
                if scheme.lower() == "basic":
                    _, _, secret = base64.b64decode(credential).decode().partition(":")
                    self.add(secret)
            elif name == "cookie":
                for pair in text.split(";"):
                    self.add(pair.partition("=")[2].strip())
            elif name == "set-cookie":
                self.add(text.split(";")[0].partition("=")[2])
            elif name == "location":
                for key, found in parse_qsl(urlsplit(text).query):
                    if key in SECRET_FIELDS:
                        self.add(found)


class Spy:
    """ASGI middleware recording every secret in the broker's requests and answers."""

    def __init__(self, app: ASGIApp, seen: Seen) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.seen.headers(scope["headers"])
        request = bytearray()
        answer = bytearray()

        async def recording_receive() -> Message:
            message = await receive()
            request.extend(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.headers(message.get("headers", []))
            answer.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, recording_receive, recording_send)
        self.seen.form(bytes(request))
        self.seen.json_body(bytes(request))
        self.seen.json_body(bytes(answer))


def personal_data() -> set[str]:
    """Names, ids, birth dates and identity codes of the demo persons, and their records."""
    found: set[str] = set()
    for person in yaml.safe_load((DEMO / "catalogue.yaml").read_text())["persons"]:
        found |= {person["id"], person["display_name"], str(person["birth_date"])}
        found |= {i["subject"] for i in person.get("identities", [])}

    def leaves(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, item in node.items():
                yield str(key)
                yield from leaves(item)
        elif isinstance(node, list):
            for item in node:
                yield from leaves(item)
        elif node is not None:
            yield str(node)

    for name in ("patient_record.yaml", "social_care.yaml"):
        records = yaml.safe_load((DEMO / "sources" / name).read_text())
        # Field and category names are the catalogue's, public; values are the person's.
        for by_category in records.values():
            for rows in by_category.values():
                for row in rows:
                    found |= {v for v in leaves(list(row.values())) if len(v) >= 6}
        found |= {str(k) for k in records}
    return found


class Captured(logging.Handler):
    """Every record any logger emits, as text, message and traceback alike."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def everything_at_debug() -> Iterator[Captured]:
    """Every logger (and any created later) at DEBUG into one handler; all restored after."""
    root = logging.getLogger()
    handler = Captured()
    saved = {
        name: (logger.level, logger.propagate, logger.disabled)
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    saved_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    def all_loggers_at_debug() -> None:
        for logger in logging.root.manager.loggerDict.values():
            if isinstance(logger, logging.Logger):
                logger.setLevel(logging.DEBUG)
                logger.propagate = True
                logger.disabled = False

    handler.all_at_debug = all_loggers_at_debug  # type: ignore[attr-defined]
    all_loggers_at_debug()
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved_root)
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            level, propagate, disabled = saved.get(name, (logging.NOTSET, True, False))
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


def test_the_whole_story_logs_no_secret_and_no_personal_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, everything_at_debug: Captured
) -> None:
    seen = Seen()
    make_app = demo_stack.create_app  # type: ignore[attr-defined]

    def spied(*args: Any, **kwargs: Any) -> Any:
        app = make_app(*args, **kwargs)
        app.add_middleware(Spy, seen=seen)
        return app

    monkeypatch.setattr(demo_stack, "create_app", spied)
    settings, passwords = walk.prepare(tmp_path / "broker")
    stack = demo_stack.start_demo(settings)
    # uvicorn configured its own loggers as the servers were made: turn them up again.
    everything_at_debug.all_at_debug()  # type: ignore[attr-defined]
    try:
        story = Walk(stack, passwords, tmp_path, lambda _: None)
        wrong = httpx.post(
            f"{story.broker}/signin",
            data={"username": "aino-virtanen", "password": "not-her-password", "csrf": "x"},
        )
        assert wrong.status_code == 400  # no CSRF cookie; still a sign-in that logs
        aino = story.connect("aino-virtanen")
        labs = story.labs()
        assert labs["status"] == 200, labs
        me = aino.client.get(f"{story.broker}/v1/me").json()
        consent_id = labs["release"]["released"]["consent_id"]
        withdrawn = aino.client.post(
            f"{story.broker}/v1/me/consents/{consent_id}/withdraw",
            headers={me["csrf_header"]: me["csrf_token"]},
        )
        assert withdrawn.status_code == 200
        aino.close()
        httpx.post(f"{story.app}/refresh", timeout=30)
        assert story.labs()["status"] == 403
        metrics = httpx.get(f"{story.broker}/metrics").text
    finally:
        stack.stop()
    secrets = seen.values | set(passwords.values())
    assert len(secrets) >= 8, f"the spy saw too little to prove anything: {len(secrets)}"
    logged = "\n".join(everything_at_debug.lines)
    assert "broker.access INFO GET /oauth/authorize" in logged, "the capture saw the story"
    assert "sqlalchemy.engine.Engine" in logged, "SQL was logged (without its parameters)"
    assert "httpx INFO HTTP Request: GET" in logged, "the broker's and browsers' requests too"
    lines = everything_at_debug.lines
    # Say where each leak is (the logger and the start of its line) without printing it.
    leaked_secrets = {
        s[:6] + "…": [line[:100].replace(s, "<SECRET>") for line in lines if s in line][:3]
        for s in secrets
        if s in logged
    }
    assert not leaked_secrets, leaked_secrets
    leaked_personal = {
        p: [line[:100] for line in lines if p in line][:3] for p in personal_data() if p in logged
    }
    assert not leaked_personal, leaked_personal
    counted = {
        (s.name, tuple(sorted(s.labels.values()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    released = ("omadata_releases_total", ("health.lab_results", "released"))
    assert counted.get(released, 0) >= 1
    assert counted.get(("omadata_release_denials_total", ("consent_withdrawn",)), 0) >= 1
