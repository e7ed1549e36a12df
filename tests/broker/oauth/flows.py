"""Test helpers that play the person's browser and the consumer over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc.jwk import KeySet

from broker.demo.browser import forms_of
from broker.oauth import clients
from broker.people.credentials import set_password
from broker.storage import transaction
from tests.conftest import LiveBroker

REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"
LABS = [{"type": "omadata_release", "agreement": "selfcare-labs-medications"}]


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


def register_auditor(live: LiveBroker, name: str = "Tietosuojavaltuutettu") -> tuple[str, str]:
    """A new auditor client's id and secret."""
    with transaction(live.runtime.engine) as session:
        issued = clients.register_auditor(session, name=name, now=datetime.now(UTC))
    assert issued.client_secret is not None
    return issued.client_id, issued.client_secret


def published_jwks(live: LiveBroker) -> KeySet:
    """The broker's keys as any resource server gets them: from the published JWKS URL."""
    meta = httpx.get(f"{live.url}/.well-known/oauth-authorization-server").json()
    return KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())


def b64url(raw: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier (RFC 7636 §4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def authorize_url(live: LiveBroker, client_id: str, verifier: str, **params: Any) -> str:
    """An authorization request built by hand; a parameter given as None is left out."""
    query: dict[str, Any] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": generate_token(16),
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "authorization_details": json.dumps(LABS),
    }
    query.update(params)
    return f"{live.url}/oauth/authorize?" + urlencode(
        {k: v for k, v in query.items() if v is not None}
    )


def code_flow(
    consumer: Consumer,
    browser: Browser,
    user: str = "aino-virtanen",
    details: list[dict[str, Any]] | None = None,
    **answer: Any,
) -> dict[str, Any]:
    """The whole consent flow with Authlib's client: the token response."""
    verifier = new_verifier()
    url, state = consumer.authorization_url(details or LABS, verifier)
    page = browser.open_consent(url, user)
    assert page.status_code == 200, page.text[:300]
    answered = browser.answer(page, "approve", **answer)
    assert redirect_params(answered)["state"] == state
    return consumer.exchange(answered.headers["location"], verifier)
