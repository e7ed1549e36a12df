"""A scripted person's browser for the demo walk: keeps cookies, reads forms, submits them.

It only uses what a person's browser would: links, redirects, the HTML forms the broker shows.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "inputs": []})
        elif tag in {"input", "button"} and self.forms:
            self.forms[-1]["inputs"].append(a)


def forms_of(html: str) -> list[dict[str, Any]]:
    """The forms of a page with their inputs' attributes."""
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class ScriptedBrowser:
    """One person's browser session against the broker (and the services it redirects to)."""

    def __init__(self, broker_url: str, password_of: dict[str, str]) -> None:
        self.broker_url = broker_url
        self.password_of = password_of
        self.client = httpx.Client(timeout=30)

    def sign_in(self, user: str, next_url: str = "/") -> httpx.Response:
        """Sign in on the broker's own page; the answer redirects to `next_url`."""
        page = self.client.get(f"{self.broker_url}/signin", params={"next": next_url})
        form = forms_of(page.text)[0]
        data = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("type") == "hidden"}
        data.update(username=user, password=self.password_of[user])
        return self.client.post(f"{self.broker_url}/signin", data=data)

    def follow(self, response: httpx.Response, *, user: str, until: str) -> httpx.Response:
        """Follow redirects, signing in when the broker asks, until a URL starting with `until`
        (not fetched) or a page that is not a redirect."""
        while response.status_code in (302, 303):
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(until):
                return response
            if location.startswith(f"{self.broker_url}/signin"):
                next_url = parse_qs(urlsplit(location).query)["next"][0]
                response = self.sign_in(user, next_url)
                continue
            response = self.client.get(location)
        return response

    def answer_consent(
        self,
        page: httpx.Response,
        decision: str,
        *,
        leave_out: frozenset[str] = frozenset(),
        subject: str | None = None,
    ) -> httpx.Response:
        """Submit the consent page: approve or refuse, unticking the optional fields named."""
        form = next(f for f in forms_of(page.text) if f["action"] == "/oauth/authorize")
        data: dict[str, list[str]] = {}
        subjects = []
        for i in form["inputs"]:
            kind, name, value = i.get("type"), i.get("name", ""), i.get("value", "")
            if name == "subject":
                subjects.append(value)
            elif kind == "hidden" or (kind == "checkbox" and value not in leave_out):
                data.setdefault(name, []).append(value)
        data["subject"] = [subject or subjects[0]]
        data["decision"] = [decision]
        return self.client.post(f"{self.broker_url}/oauth/authorize", data=data)

    def close(self) -> None:
        """Close the connections."""
        self.client.close()
