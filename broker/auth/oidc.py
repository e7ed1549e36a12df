"""Signing persons in through an external OpenID Connect provider (e.g. Suomi.fi).

Authlib's client does the protocol: discovery, the authorization request with `state`, `nonce`
and PKCE S256, the code exchange, and ID token validation (signature against the provider's
JWKS, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`, `at_hash`) with joserfc. This module adds
what Authlib leaves to the application: keeping the flow's secrets between the two browser
requests (a signed, short-lived cookie, so a callback only completes in the browser that
started it), which claims are essential, and the errors a sign-in page can explain.

SignInFailed
├── ProviderRefused      the provider answered with an error (e.g. access_denied)
├── FlowMismatch         no flow in this browser, an expired one, or another `state`
├── InvalidIDToken       the ID token is missing or does not validate
├── ProviderUnavailable  the provider cannot be reached or its metadata is wrong
└── UnknownIdentity      the identity is genuine but linked to no person
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import StarletteOAuth2App
from authlib.integrations.starlette_client.integration import StarletteIntegration
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from broker.settings import Settings

_log = logging.getLogger(__name__)

FLOW_LIFETIME_SECONDS = 600
# Clock skew allowed between the provider and us when checking exp and iat.
_LEEWAY_SECONDS = 60
_FLOW_ALGORITHM = "HS256"
# Authlib's httpx client runs on httpx2 when it is installed (it is one of our dependencies),
# on httpx before that: a transport failure is either's HTTPError.
_HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)
# Also a body that is not the JSON it should be.
_UNUSABLE: tuple[type[Exception], ...] = (*_HTTP_ERRORS, ValueError)


class SignInFailed(Exception):
    """Base of the errors of an external sign-in; `reason` is a short machine-readable code."""

    reason = "sign_in_failed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ProviderRefused(SignInFailed):
    """The provider answered with an OAuth error, e.g. the person cancelled (access_denied)."""

    reason = "provider_refused"

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error


class FlowMismatch(SignInFailed):
    """The callback belongs to no sign-in started in this browser, or to an expired one."""

    reason = "flow_mismatch"


class InvalidIDToken(SignInFailed):
    """The provider's ID token is missing, badly signed, or its claims do not check out."""

    reason = "invalid_id_token"


class ProviderUnavailable(SignInFailed):
    """The provider could not be reached, or its discovery document does not fit."""

    reason = "provider_unavailable"


class UnknownIdentity(SignInFailed):
    """A genuine identity that no person is linked to; nobody is signed in or created."""

    reason = "unknown_identity"


@dataclass(frozen=True)
class Flow:
    """One sign-in in progress: the secrets the callback is checked against."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_url: str
    language: str
    expires_at: int

    def seal(self, key: bytes) -> str:
        """The flow as a compact JWT (HS256 with `key`) for an HttpOnly cookie."""
        claims = {
            "state": self.state,
            "nonce": self.nonce,
            "cv": self.code_verifier,
            "ru": self.redirect_uri,
            "next": self.next_url,
            "lang": self.language,
            "exp": self.expires_at,
        }
        return jwt.encode({"alg": _FLOW_ALGORITHM}, claims, OctKey.import_key(key))

    @classmethod
    def open(cls, sealed: str | None, key: bytes, now: float) -> Flow:
        """The flow in a cookie value; FlowMismatch if absent, forged or expired."""
        if not sealed:
            raise FlowMismatch("No sign-in was started in this browser.")
        try:
            token = jwt.decode(sealed, OctKey.import_key(key), algorithms=[_FLOW_ALGORITHM])
            jwt.JWTClaimsRegistry(now=int(now), exp={"essential": True}).validate(token.claims)
            c = token.claims
            return cls(
                state=str(c["state"]),
                nonce=str(c["nonce"]),
                code_verifier=str(c["cv"]),
                redirect_uri=str(c["ru"]),
                next_url=str(c["next"]),
                language=str(c["lang"]),
                expires_at=int(c["exp"]),
            )
        except (JoseError, KeyError, ValueError, TypeError):
            raise FlowMismatch("The sign-in has expired or is not valid.") from None


class RelyingParty:
    """The broker as an OpenID Connect client of one provider; keeps its metadata and keys.

    One instance per broker process: Authlib caches the discovery document and the JWKS in it
    (fetching the JWKS again when an ID token names a key it does not know).
    """

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.oidc_issuer
        self.client_id = settings.oidc_client_id
        self.person_claim = settings.oidc_person_claim
        secret = settings.oidc_client_secret
        self._app: Any = StarletteOAuth2App(
            StarletteIntegration("oidc"),
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            # OpenID Connect Discovery 1.0, section 4: the issuer without a trailing slash.
            server_metadata_url=f"{self.issuer.rstrip('/')}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.oidc_scope,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
                "timeout": 10.0,
            },
        )

    async def _metadata(self) -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = await self._app.load_server_metadata()
        except _UNUSABLE as exc:
            raise ProviderUnavailable(f"Discovery at {self.issuer} failed: {exc}") from exc
        # Discovery section 4.3: the document must name exactly the issuer we were given.
        if metadata.get("issuer") != self.issuer:
            raise ProviderUnavailable(
                f"The provider calls itself {metadata.get('issuer')!r}, not {self.issuer!r}."
            )
        return metadata

    async def begin(self, *, redirect_uri: str, next_url: str, language: str) -> tuple[str, Flow]:
        """The provider's authorization URL to send the browser to, and the flow to keep."""
        await self._metadata()
        try:
            rv: dict[str, str] = await self._app.create_authorization_url(
                redirect_uri, ui_locales=language
            )
        except _HTTP_ERRORS as exc:
            raise ProviderUnavailable(f"The provider could not be reached: {exc}") from exc
        flow = Flow(
            state=rv["state"],
            nonce=rv["nonce"],
            code_verifier=rv["code_verifier"],
            redirect_uri=redirect_uri,
            next_url=next_url,
            language=language,
            expires_at=int(time.time()) + FLOW_LIFETIME_SECONDS,
        )
        return rv["url"], flow

    async def finish(self, params: Mapping[str, str], flow: Flow) -> dict[str, Any]:
        """The validated ID token claims for the provider's answer `params` to `flow`."""
        code = params.get("code")
        if "error" in params and not code:
            # An error grants nothing, so it is reported whatever its `state` (some providers,
            # oidc-provider-mock among them, leave `state` out of a refusal).
            raise ProviderRefused(
                params["error"], params.get("error_description") or params["error"]
            )
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), flow.state.encode()):
            raise FlowMismatch("The answer belongs to another sign-in.")
        if not code:
            raise ProviderRefused("invalid_request", "The provider sent no authorization code.")
        await self._metadata()
        try:
            token: dict[str, Any] = await self._app.fetch_access_token(
                redirect_uri=flow.redirect_uri, code=code, code_verifier=flow.code_verifier
            )
        except OAuthError as exc:
            raise ProviderRefused(str(exc.error), str(exc.description or exc.error)) from exc
        except _UNUSABLE as exc:
            raise ProviderUnavailable(f"The token request failed: {exc}") from exc
        if "id_token" not in token:
            raise InvalidIDToken("The provider sent no ID token.")
        try:
            claims: dict[str, Any] = await self._app.parse_id_token(
                token,
                nonce=flow.nonce,
                # Authlib checks iss by default but not aud: both are ours to insist on.
                claims_options={
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                    "exp": {"essential": True},
                    "iat": {"essential": True},
                    "nonce": {"essential": True, "value": flow.nonce},
                },
                leeway=_LEEWAY_SECONDS,
            )
        except JoseError as exc:
            raise InvalidIDToken(f"The ID token is not valid: {exc}") from exc
        except _UNUSABLE as exc:
            raise ProviderUnavailable(f"The provider's keys could not be read: {exc}") from exc
        return dict(claims)

    def identity(self, claims: Mapping[str, Any]) -> str:
        """The value of the configured person claim; InvalidIDToken if it is missing."""
        value = claims.get(self.person_claim)
        if not isinstance(value, str) or not value:
            raise InvalidIDToken(f"The ID token has no {self.person_claim!r} claim.")
        return value
