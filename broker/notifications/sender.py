"""The notification: a compact JWS signed with the broker's `notify` key, POSTed to a webhook.

The JWS is a JWT whose header names the key (`kid`, published at /.well-known/jwks.json) and
the type `omadata-notification+jwt`; its claims say which consent ended, how and when, with
the person's pairwise subject for that consumer (the `sub` of the consumer's access tokens) and
never the person's id or name. `jti` is the outbox row's id, the same on every retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import OKPKey

from broker import __version__
from broker.notifications.outbox import Claimed
from keys import KeyStore, KeyUse

ALGORITHM = "Ed25519"
TYPE = "omadata-notification+jwt"
CONTENT_TYPE = "application/omadata-notification+jwt"


def notification_claims(
    claimed: Claimed, *, issuer: str, subject: str, now: datetime
) -> dict[str, Any]:
    """The claims of one notification; `subject` is the person's pairwise subject."""
    return {
        "iss": issuer,
        "aud": claimed.client_id,
        "iat": int(now.timestamp()),
        "jti": claimed.id,
        "event": claimed.event.value,
        "consent_id": claimed.consent_id,
        "sub": subject,
        "agreement": claimed.agreement_id,
        "agreement_version": claimed.agreement_version,
        "at": int(claimed.at.timestamp()),
    }


def sign_notification(keystore: KeyStore, claims: dict[str, Any]) -> str:
    """`claims` as a compact JWS with the current `notify` key, its `kid` and our `typ`."""
    key = keystore.current(KeyUse.NOTIFY)
    header = {"alg": ALGORITHM, "typ": TYPE, "kid": key.kid}
    return jwt.encode(header, claims, OKPKey.import_key(key.private_key()), algorithms=[ALGORITHM])


class Sender:
    """POSTs notifications over one pooled HTTP client; never follows redirects."""

    def __init__(self, timeout: float) -> None:
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": f"OmaData-broker/{__version__}"},
        )

    def post(self, url: str, token: str) -> str | None:
        """POST `token` to `url`: None on a 2xx answer, else a short reason (no body, no data)."""
        try:
            response = self._client.post(url, content=token, headers={"Content-Type": CONTENT_TYPE})
        except httpx.TimeoutException:
            return "timeout"
        except httpx.ConnectError:
            return "connection failed"
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()
