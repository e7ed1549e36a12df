"""Every authenticated route, for every kind of caller gets exactly what docs/api.md says.

The expectations are read from the authorization matrix in docs/api.md, so the documentation
and the behaviour cannot drift apart without this test failing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.oauth import clients
from broker.storage import transaction
from tests.broker.oauth.flows import (
    REDIRECT_URI,
    Browser,
    give_passwords,
    new_verifier,
    redirect_params,
    register_consumer,
)
from tests.conftest import LiveBroker

DOC = Path(__file__).parents[3] / "docs" / "api.md"
CALLERS = (
    "anonymous",
    "person",
    "other person",
    "consumer",
    "other consumer",
    "source",
    "auditor",
)


@dataclass(frozen=True)
class Row:
    """One row of the documented matrix."""

    request: str
    expected: dict[str, int]


def documented_matrix() -> list[Row]:
    """The rows of the table under '### Authorization matrix' in docs/api.md."""
    text = DOC.read_text(encoding="utf-8").split("### Authorization matrix", 1)[1]
    table = text[text.index("\n|") + 1 :]
    lines = []
    for line in table.splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["request", *CALLERS], header
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append(Row(cells[0], {c: int(v) for c, v in zip(CALLERS, cells[1:], strict=True)}))
    return rows


def test_the_documented_matrix_covers_every_authenticated_route(live: LiveBroker) -> None:
    paths = httpx.get(f"{live.url}/openapi.json").json()["paths"]
    protected = {
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method in operations
        if path.startswith(
            ("/v1/me", "/v1/consumer", "/v1/source", "/v1/audit", "/v1/log/entries", "/v1/data")
        )
    }
    requests = []
    for row in documented_matrix():
        found = re.match(r"`(\w+) ([^`?]+)", row.request)
        assert found is not None, row.request
        requests.append(f"{found[1]} {found[2]}")

    def documented(route: str) -> bool:
        # A route template such as GET /v1/data/{category} matches a documented concrete path.
        pattern = re.sub(r"\\{\w+\\}", "[^/]+", re.escape(route))
        return any(re.fullmatch(pattern, r) for r in requests)

    missing = sorted(route for route in protected if not documented(route))
    assert not missing, missing


class Callers:
    """One HTTP client per kind of caller, each with its real credentials."""

    def __init__(self, live: LiveBroker) -> None:
        self.live = live
        give_passwords(live, "aino-virtanen", "sam-taylor")
        now = datetime.now(UTC)
        self.consumer = register_consumer(live, "selfcare-app")
        with transaction(live.runtime.engine) as session:
            other = clients.register_service_client(
                session, service_id="research-register", redirect_uris=[REDIRECT_URI], now=now
            )
            source = clients.register_service_client(
                session, service_id="patient-record", redirect_uris=[], now=now
            )
            auditor = clients.register_auditor(session, name="Auditor", now=now)
        self.browsers = {"person": Browser(live), "other person": Browser(live)}
        self.consent_id = self._aino_consents(self.browsers["person"])
        assert self.browsers["other person"].sign_in("sam-taylor").status_code == 303
        self.csrf = {
            who: b.client.get("/v1/me").json()["csrf_token"] for who, b in self.browsers.items()
        }
        self.tokens = {
            "consumer": self._token(
                self.consumer.client_id, self.consumer.client_secret, "consents:read release"
            ),
            "other consumer": self._token(
                other.client_id, other.client_secret, "consents:read release"
            ),
            "source": self._token(source.client_id, source.client_secret, "source:consents"),
            "auditor": self._token(auditor.client_id, auditor.client_secret, "audit:read"),
        }
        self.plain = httpx.Client(base_url=live.url, timeout=15)

    def _aino_consents(self, browser: Browser) -> str:
        verifier = new_verifier()
        details = [{"type": "omadata_release", "agreement": "selfcare-labs-medications"}]
        url, _ = self.consumer.authorization_url(details, verifier)
        page = browser.open_consent(url, "aino-virtanen")
        answered = browser.answer(page, "approve")
        redirect_params(answered)
        token = self.consumer.exchange(answered.headers["location"], verifier)
        consent_id: str = token["authorization_details"][0]["consent_id"]
        return consent_id

    def _token(self, client_id: str, secret: str | None, scope: str) -> str:
        assert secret is not None
        response = httpx.post(
            f"{self.live.url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client_id, secret),
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def ask(self, caller: str, row: Row) -> httpx.Response:
        """Send the row's request as `caller`."""
        spec = re.match(r"`(\w+) ([^`]+)`(.*)", row.request)
        assert spec is not None, row.request
        method, target, remark = spec.groups()
        target = target.replace("{aino's consent}", self.consent_id)
        headers: dict[str, str] = {}
        client = self.browsers[caller].client if caller in self.browsers else self.plain
        if caller in self.tokens:
            headers["Authorization"] = f"Bearer {self.tokens[caller]}"
        if caller in self.csrf and method == "POST" and "without CSRF" not in remark:
            headers["X-CSRF-Token"] = self.csrf[caller]
        data: dict[str, Any] | None = None
        if target == "/oauth/introspect":
            data = {"token": self.tokens.get(caller, "not-a-token")}
        return client.request(method, target, headers=headers, data=data)

    def close(self) -> None:
        for browser in self.browsers.values():
            browser.close()
        self.plain.close()


@pytest.fixture
def callers(live: LiveBroker) -> Iterator[Callers]:
    made = Callers(live)
    yield made
    made.close()


def test_every_route_answers_every_caller_as_documented(callers: Callers) -> None:
    wrong = []
    for row in documented_matrix():
        for caller in CALLERS:
            response = callers.ask(caller, row)
            if response.status_code != row.expected[caller]:
                wrong.append(
                    f"{row.request} as {caller}: {response.status_code}, "
                    f"documented {row.expected[caller]}: {response.text[:160]}"
                )
            elif response.status_code >= 400 and not row.request.startswith("`POST /oauth"):
                assert response.headers["content-type"] == "application/problem+json"
                if response.status_code == 401:
                    assert "www-authenticate" in response.headers
    assert not wrong, "\n".join(wrong)


def test_the_matrix_is_not_vacuous() -> None:
    rows = documented_matrix()
    assert len(rows) >= 15
    answers = {status for row in rows for status in row.expected.values()}
    assert answers == {200, 401, 403, 404}
