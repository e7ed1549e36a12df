"""Schemathesis over the broker's own OpenAPI: every operation, as every kind of caller.

Each operation is fuzzed with valid (positive) and invalid (negative) inputs, once as the
caller it is meant for, so that the requests get past the authentication check, and once
anonymously. Every response must not be a server error and must match what the OpenAPI
document promises: a documented status, a documented content type, a body of the documented
schema. Links in the document (a list to one of its items) are followed by a stateful run.

The number of examples per operation is `BROKER_FUZZ_EXAMPLES` (small by default, for CI);
`make fuzz` runs these tests with a large one. Generation is derandomized, so a CI failure
reproduces.
"""

from __future__ import annotations

import base64
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from broker.demo.stack import DemoStack, start_demo
from broker.oauth import clients
from broker.people.credentials import set_password
from broker.settings import Settings
from broker.storage import transaction
from tests.broker.oauth.flows import (
    LABS,
    PASSWORD,
    Browser,
    new_verifier,
    redirect_params,
    register_consumer,
)

EXAMPLES = int(os.environ.get("BROKER_FUZZ_EXAMPLES", "6"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SESSION_COOKIE = "omadata_session"


def _settings(examples: int, steps: int = 50) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )


class _Live:
    """What the OAuth test helpers need of a live broker: its URL and runtime."""

    def __init__(self, stack: DemoStack) -> None:
        self.url = stack.broker.url
        self.runtime = stack.runtime


@dataclass
class Caller:
    """How one kind of caller authenticates: headers and cookies sent with every request."""

    name: str
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    fresh: Callable[[], dict[str, str]] | None = None

    def kwargs(self) -> dict[str, Any]:
        """The transport arguments for one request."""
        headers = dict(self.headers)
        if self.fresh is not None:
            headers.update(self.fresh())
        return {"headers": headers, "cookies": dict(self.cookies)}


@dataclass
class Fuzzed:
    """The running demo with a credential for every kind of caller."""

    stack: DemoStack
    callers: dict[str, Caller]
    consent_id: str


def _client_token(url: str, client_id: str, secret: str | None, scope: str) -> str:
    assert secret is not None
    response = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _callers(stack: DemoStack) -> Fuzzed:
    live: Any = _Live(stack)
    url = stack.broker.url
    engine = stack.runtime.engine
    consumer = register_consumer(live)
    browser = Browser(live)
    verifier = new_verifier()
    auth_url, _ = consumer.authorization_url(LABS, verifier)
    answered = browser.answer(browser.open_consent(auth_url, "aino-virtanen"), "approve")
    redirect_params(answered)
    granted = consumer.exchange(answered.headers["location"], verifier)
    consent_id: str = granted["authorization_details"][0]["consent_id"]
    csrf = browser.client.get("/v1/me").json()["csrf_token"]
    session_cookie = browser.client.cookies[SESSION_COOKIE]
    browser.close()
    now = datetime.now(UTC)
    with transaction(engine) as session:
        source = clients.register_service_client(
            session, service_id="patient-record", redirect_uris=[], now=now
        )
        auditor = clients.register_auditor(session, name="Auditor", now=now)

    def registration_token() -> dict[str, str]:
        with transaction(engine) as session:
            token = clients.issue_registration_token(
                session,
                service_id="selfcare-app",
                now=datetime.now(UTC),
                lifetime=timedelta(hours=1),
            )
        return {"Authorization": f"Bearer {token}"}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # client_secret_basic (RFC 6749 §2.3.1); the broker's ids and secrets need no escaping.
    pair = f"{consumer.client_id}:{consumer.client_secret}".encode()
    basic_header = f"Basic {base64.b64encode(pair).decode('ascii')}"
    callers = {
        "anonymous": Caller("anonymous"),
        "person": Caller(
            "person", headers={"X-CSRF-Token": csrf}, cookies={SESSION_COOKIE: session_cookie}
        ),
        "consumer": Caller(
            "consumer",
            headers=bearer(
                _client_token(url, consumer.client_id, consumer.client_secret, "consents:read")
            ),
        ),
        "release": Caller("release", headers=bearer(granted["access_token"])),
        "source": Caller(
            "source",
            headers=bearer(
                _client_token(url, source.client_id, source.client_secret, "source:consents")
            ),
        ),
        "auditor": Caller(
            "auditor",
            headers=bearer(
                _client_token(url, auditor.client_id, auditor.client_secret, "audit:read")
            ),
        ),
        "client": Caller("client", headers={"Authorization": basic_header}),
        "operator": Caller("operator", fresh=registration_token),
    }
    return Fuzzed(stack, callers, consent_id)


@pytest.fixture
def fuzzed(demo: Engine, tmp_path: Path) -> Iterator[Fuzzed]:
    with transaction(demo) as session:
        set_password(session, "aino-virtanen", PASSWORD, datetime.now(UTC))
    configured = Settings(
        data_dir=tmp_path / "broker",
        checkpoint_interval_seconds=0.2,
        # No rate limits (tests/broker/api/test_limits.py has them): here they would only turn
        # the OAuth endpoints' fuzzing into 429s after the first few refused clients.
        rate_failures_per_hour=0,
        rate_oauth_per_minute=0,
        rate_client_per_minute=0,
    )
    stack = start_demo(configured, engine=demo)
    try:
        yield _callers(stack)
    finally:
        stack.stop()


# Who each operation is for, by path prefix; the first match wins. Everything else is public.
_MEANT_FOR = [
    ("/v1/me", "person"),
    ("/v1/consumer", "consumer"),
    ("/v1/source", "source"),
    ("/v1/data", "release"),
    ("/v1/log/entries", "auditor"),
    ("/v1/audit", "auditor"),
    ("/oauth/register", "operator"),
    ("/oauth/", "client"),
]


def meant_for(path: str) -> str:
    """The kind of caller an operation at `path` is meant for."""
    return next((who for prefix, who in _MEANT_FOR if path.startswith(prefix)), "anonymous")


def _fuzz(
    operation: Any,
    caller: Caller,
    mode: GenerationMode,
    examples: int,
    statuses: Counter[int],
    **fixed: Any,
) -> None:
    """Send `examples` generated requests to one operation, counting the statuses answered."""

    @_settings(examples)
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def run(case: Case) -> None:
        response = case.call_and_validate(checks=CHECKS, timeout=30, **caller.kwargs())
        statuses[response.status_code] += 1

    run()


# Values that reach past the lookups, so that fuzzing the other inputs exercises a real release.
_REAL = {"GET /v1/data/{category}": {"path_parameters": {"category": "health.lab_results"}}}


# Requests the fuzzing found to be 500s on PostgreSQL (its text cannot hold NUL): malformed now.
_ONCE_FAILED = [
    ("GET /v1/data", {"query": {"category": ["", "\x00P"]}}),
    ("GET /v1/me/consents", {"query": {"person": "\x00x"}}),
    ("GET /v1/me/log-entries", {"query": {"person": "\x00x"}}),
]


def modes(operation: Any) -> list[GenerationMode]:
    """Valid inputs always; invalid ones where the operation takes any input to get wrong."""
    takes_input = any(True for _ in operation.iter_parameters()) or bool(operation.body)
    if takes_input:
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def test_every_operation_keeps_its_documented_contract(fuzzed: Fuzzed) -> None:
    url = fuzzed.stack.broker.url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=schemathesis.Config())
    failures: list[str] = []
    seen: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    started = time.monotonic()
    for label, parts in _ONCE_FAILED:
        once_failed = schema.find_operation_by_label(label)
        assert once_failed is not None, label
        caller = fuzzed.callers[meant_for(once_failed.path)]
        case = once_failed.Case(**parts)
        response = case.call_and_validate(checks=CHECKS, timeout=30, **caller.kwargs())
        assert response.status_code == 422, (label, parts, response.text)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Releases before the person's own operations: a fuzzed withdrawal ends the consent.
    operations.sort(key=lambda op: op.path.startswith("/v1/me"))
    for operation in operations:
        who = meant_for(operation.path)
        caller, anonymous = fuzzed.callers[who], fuzzed.callers["anonymous"]
        runs: list[tuple[Caller, int, GenerationMode, dict[str, Any]]] = [
            (caller, EXAMPLES, mode, {}) for mode in modes(operation)
        ]
        if who != "anonymous":
            runs += [(anonymous, max(2, EXAMPLES // 3), mode, {}) for mode in modes(operation)]
        if operation.label in _REAL:
            runs.append((caller, EXAMPLES, GenerationMode.POSITIVE, _REAL[operation.label]))
        for as_whom, examples, mode, fixed in runs:
            try:
                _fuzz(
                    operation, as_whom, mode, examples, seen[operation.label, as_whom.name], **fixed
                )
            except (Exception, FailureGroup) as exc:
                failures.append(f"{operation.label} as {as_whom.name} ({mode}, {fixed}): {exc}")
    sent = sum(sum(statuses.values()) for statuses in seen.values())
    print(f"{sent} requests in {time.monotonic() - started:.1f} s")
    for (label, who), statuses in sorted(seen.items()):
        print(f"  {label} as {who}: {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures)
    # Had every request of a kind of caller been refused at the door, nothing behind it was tested.
    locked_out = [
        f"{label} as {who}"
        for (label, who), statuses in seen.items()
        if who != "anonymous" and set(statuses) <= {401}
    ]
    assert not locked_out, locked_out


def test_following_links_keeps_the_documented_contract(fuzzed: Fuzzed) -> None:
    url = fuzzed.stack.broker.url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=schemathesis.Config())
    seen: Counter[str] = Counter()

    class Linked(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"timeout": 30, **fuzzed.callers[meant_for(case.operation.path)].kwargs()}

        def validate_response(
            self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            seen[f"{case.operation.label} {response.status_code}"] += 1
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    started = time.monotonic()
    Linked.run(settings=_settings(EXAMPLES * 2, steps=8))
    print(f"{sum(seen.values())} requests in {time.monotonic() - started:.1f} s")
    for outcome, count in sorted(seen.items()):
        print(f"  {outcome}: {count}")
    # A link carried a real id from a list to its item, so the links were followed.
    assert seen["GET /v1/consumer/consents/{consent_id} 200"], seen
