"""Test helpers that play the person's browser and the consumer over real HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from broker.oauth import clients
from broker.people.credentials import set_password
from broker.storage import transaction
from tests.conftest import LiveBroker

REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(a)


def forms_of(html: str) -> list[dict[str, Any]]:
    """The forms of a page with their inputs' attributes."""
    parser = _Forms()
    parser.feed(html)
    return parser.forms


@dataclass
class Browser:
    """A person's browser: keeps cookies, follows the broker's own redirects."""

    live: LiveBroker
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.live.url, timeout=15)

    def sign_in(self, user: str, password: str = PASSWORD, next_url: str = "/") -> httpx.Response:
        page = self.client.get("/signin", params={"next": next_url})
        form = forms_of(page.text)[0]
        data = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("type") == "hidden"}
        data.update(username=user, password=password)
        return self.client.post("/signin", data=data)

    def open_consent(self, url: str, user: str) -> httpx.Response:
        """Follow the consumer's link; sign in when asked; return the consent page."""
        response = self.client.get(url)
        if response.status_code == 303 and "/signin" in response.headers["location"]:
            next_url = parse_qs(urlsplit(response.headers["location"]).query)["next"][0]
            signed = self.sign_in(user, next_url=next_url)
            assert signed.status_code == 303, signed.text
            response = self.client.get(signed.headers["location"])
        return response

    def answer(
        self,
        page: httpx.Response,
        decision: str,
        *,
        drop: set[str] = frozenset(),
        subject: str | None = None,
    ) -> httpx.Response:
        """Submit the consent form, unticking the optional fields in `drop`."""
        form = next(f for f in forms_of(page.text) if f["action"] == "/oauth/authorize")
        data: list[tuple[str, str]] = []
        for i in form["inputs"]:
            kind, name, value = i.get("type"), i.get("name"), i.get("value", "")
            if (kind == "hidden" and name != "subject") or (
                kind == "checkbox" and value not in drop
            ):
                data.append((name, value))
        subjects = [i["value"] for i in form["inputs"] if i.get("name") == "subject"]
        data.append(("subject", subject or subjects[0]))
        data.append(("decision", decision))
        grouped: dict[str, list[str]] = {}
        for name, value in data:
            grouped.setdefault(name, []).append(value)
        return self.client.post("/oauth/authorize", data=grouped)

    def close(self) -> None:
        self.client.close()


@dataclass
class Consumer:
    """A consumer service using Authlib's OAuth client, with PKCE S256."""

    live: LiveBroker
    client_id: str
    client_secret: str

    def oauth(self) -> OAuth2Client:
        return OAuth2Client(
            self.client_id,
            self.client_secret,
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
        )

    def authorization_url(self, details: list[dict[str, Any]], verifier: str) -> tuple[str, str]:
        with self.oauth() as oauth:
            url, state = oauth.create_authorization_url(
                f"{self.live.url}/oauth/authorize",
                code_verifier=verifier,
                authorization_details=json.dumps(details),
            )
        return url, state

    def exchange(self, redirect: str, verifier: str) -> dict[str, Any]:
        with self.oauth() as oauth:
            token: dict[str, Any] = oauth.fetch_token(
                f"{self.live.url}/oauth/token",
                authorization_response=redirect,
                code_verifier=verifier,
            )
        return token

    def refresh(self, refresh_token: str) -> httpx.Response:
        return httpx.post(
            f"{self.live.url}/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(self.client_id, self.client_secret),
        )

    def introspect(self, token: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.live.url}/oauth/introspect",
            data={"token": token},
            auth=(self.client_id, self.client_secret),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def register_consumer(live: LiveBroker, service_id: str = "selfcare-app") -> Consumer:
    with transaction(live.runtime.engine) as session:
        issued = clients.register_service_client(
            session, service_id=service_id, redirect_uris=[REDIRECT_URI], now=datetime.now(UTC)
        )
    assert issued.client_secret is not None
    return Consumer(live, issued.client_id, issued.client_secret)


def give_passwords(live: LiveBroker, *people: str) -> None:
    with transaction(live.runtime.engine) as session:
        for person in people:
            set_password(session, person, PASSWORD, datetime.now(UTC))


def new_verifier() -> str:
    return generate_token(64)


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect back to the consumer."""
    assert response.status_code in (302, 303), response.text[:500]
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def absolute(live: LiveBroker, location: str) -> str:
    return urljoin(live.url, location)
