"""Every response carries the security headers; pages get a CSP without 'unsafe-inline'."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveBroker


@pytest.mark.parametrize(
    "path", ["/signin", "/v1/services", "/v1/log/checkpoint", "/static/omadata.css", "/nowhere"]
)
def test_every_response_carries_the_security_headers(live: LiveBroker, path: str) -> None:
    response = httpx.get(f"{live.url}{path}")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy


def test_the_swagger_page_works_without_the_policy(live: LiveBroker) -> None:
    response = httpx.get(f"{live.url}/docs")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"
