"""The demo consumer: a self-care app that asks for lab results and medicines through OmaData.

It is an ordinary OAuth client of the broker, built only on public parts (Authlib's client,
the authorization code flow with PKCE, the release API), the way an integrating service would.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

DETAILS = [{"type": "omadata_release", "agreement": "selfcare-labs-medications"}]
CATEGORIES = ("health.lab_results", "health.medications")


@dataclass
class SelfCareApp:
    """The app's settings and its memory of flows in progress and of what it received."""

    broker_url: str
    client_id: str
    client_secret: str
    public_url: str
    pending: dict[str, str] = field(default_factory=dict)
    received: dict[str, Any] = field(default_factory=dict)

    @property
    def redirect_uri(self) -> str:
        """Where the broker sends the person back."""
        return f"{self.public_url}/callback"

    def oauth(self) -> OAuth2Client:
        """An Authlib client for this app, PKCE S256."""
        return OAuth2Client(
            self.client_id,
            self.client_secret,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
        )


def create_app(broker_url: str, client_id: str, client_secret: str, public_url: str) -> FastAPI:
    """The self-care app's web app, talking to the broker at `broker_url`."""
    state = SelfCareApp(broker_url.rstrip("/"), client_id, client_secret, public_url.rstrip("/"))
    app = FastAPI(title="Voimaa arkeen (demo)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.selfcare = state

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        shown = state.received.get("last")
        return _page(
            "<p>Voimaa arkeen helps you look after your health at home.</p>"
            '<p><a class="button" href="/connect">Connect with OmaData</a></p>'
            + (_data(shown) if shown else "")
            + (
                '<form method="post" action="/refresh"><button>Update my data</button></form>'
                if "token" in state.received
                else ""
            )
        )

    @app.get("/connect")
    def connect() -> Response:
        verifier = secrets.token_urlsafe(48)
        with state.oauth() as oauth:
            url, flow_state = oauth.create_authorization_url(
                f"{state.broker_url}/oauth/authorize",
                code_verifier=verifier,
                authorization_details=json.dumps(DETAILS),
            )
        state.pending[flow_state] = verifier
        return RedirectResponse(url, status_code=303)

    @app.get("/callback", response_class=HTMLResponse)
    def callback(request: Request) -> Response:
        params = request.query_params
        verifier = state.pending.pop(params.get("state", ""), None)
        if verifier is None:
            return HTMLResponse(_page("<p>This answer was not for us.</p>"), status_code=400)
        if "error" in params:
            return HTMLResponse(_page("<p>You chose not to share your data. That is fine.</p>"))
        with state.oauth() as oauth:
            token = oauth.fetch_token(
                f"{state.broker_url}/oauth/token",
                authorization_response=str(request.url),
                code_verifier=verifier,
            )
        state.received["token"] = token
        _fetch(state)
        return RedirectResponse("/", status_code=303)

    @app.post("/refresh")
    def refresh() -> Response:
        if "token" in state.received:
            _fetch(state)
        return RedirectResponse("/", status_code=303)

    @app.get("/received")
    def received() -> dict[str, Any]:
        """What the app last received (for the scripted demo walk)."""
        return {"items": state.received.get("last", [])}

    return app


def _fetch(state: SelfCareApp) -> None:
    answer = httpx.get(
        f"{state.broker_url}/v1/data",
        params=[("category", c) for c in CATEGORIES],
        headers={"Authorization": f"Bearer {state.received['token']['access_token']}"},
        timeout=30,
    )
    state.received["last"] = (
        answer.json()
        if answer.status_code == 200
        else [
            {"category": c, "status": answer.status_code, "problem": answer.json()}
            for c in CATEGORIES
        ]
    )


def _data(items: list[dict[str, Any]]) -> str:
    parts = []
    for item in items:
        parts.append(f"<h2>{html.escape(item['category'])}</h2>")
        release = item.get("release")
        if not release:
            detail = (item.get("problem") or {}).get("detail", "")
            parts.append(f"<p>Not shared: {html.escape(str(detail))}</p>")
            continue
        released = release["released"]
        fields = released["fields"]
        head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r.get(f, '')))}</td>" for f in fields) + "</tr>"
            for r in released["records"]
        )
        parts.append(f"<table><tr>{head}</tr>{rows}</table>")
        parts.append(f"<p>Logged by OmaData as entry {int(release['log_index'])}.</p>")
    return "".join(parts)


def _page(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Voimaa arkeen</title></head><body><main><h1>Voimaa arkeen</h1>"
        f"{body}</main></body></html>"
    )
