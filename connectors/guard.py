"""The source-side guard: a FastAPI dependency that admits only the broker's source tokens.

A source service adds it in a few lines::

    guard = SourceGuard(issuer=BROKER, audience="urn:omadata:source:social-care",
                        jwks_url=f"{BROKER}/.well-known/jwks.json")
    guard.install(app)                  # refusals as RFC 9457 application/problem+json

    @app.get("/v1/clients/{subject}/records/{category}")
    def records(subject: str, category: str,
                grant: Annotated[SourceGrant, Depends(guard)]) -> ...:
        return [grant.restrict(record) for record in ...]

The token is an RFC 9068 JWT (`typ` at+jwt) signed by the broker with Ed25519; its public keys
come from the broker's JWKS, fetched over HTTP, cached, and fetched again when a token names a
key not seen yet. A refusal is 401 (no token, or one that is not valid here: signature, key,
algorithm, issuer, audience, lifetime, type, claims) or 403 (a valid token that does not grant
this request: scope, category, subject), and 503 when the broker's keys cannot be fetched.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet, OKPKey
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry
from starlette.exceptions import HTTPException

ALGORITHMS = ("Ed25519",)
"""The only JWS algorithm accepted (RFC 9864); `EdDSA`, `none` and HMAC are refused first."""
TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
BROKER_CLIENT_ID = "omadata-broker"
SOURCE_SCOPE = "source:read"
MAX_TOKEN_LENGTH = 8192
PROBLEM_JSON = "application/problem+json"
_REALM = 'Bearer realm="omadata-source"'

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceGrant:
    """What a verified token allows: one person's fields of one category, for one consent."""

    subject: str
    category: str
    fields: tuple[str, ...]
    consent_id: str
    purpose: str
    token_id: str
    """The token's `jti`, for the source's own access log."""

    def allows(self, field: str) -> bool:
        """Whether the token lets the source return `field`."""
        return field in self.fields

    def restrict(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """`record` with only the fields the token allows."""
        return {name: value for name, value in record.items() if name in self.fields}


class SourceRefused(HTTPException):
    """The guard refused a request; rendered as problem+json by `SourceGuard.install`."""

    def __init__(self, status: int, code: str, detail: str, *, error: str | None = None) -> None:
        headers = None
        if status == 401:
            # RFC 6750 section 3: no error code when no token was given at all.
            value = _REALM if error is None else f'{_REALM}, error="{error}"'
            headers = {"WWW-Authenticate": value}
        elif status == 403:
            headers = {"WWW-Authenticate": f'{_REALM}, error="{error or "insufficient_scope"}"'}
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code = code


def problem_response(exc: SourceRefused) -> JSONResponse:
    """The RFC 9457 problem for a refusal, with its WWW-Authenticate header."""
    body = {
        "type": f"/problems/{exc.code}",
        "title": "The request is not authorised by a valid broker token",
        "status": exc.status_code,
        "detail": exc.detail,
    }
    return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON,
                        headers=exc.headers)  # fmt: skip


def _invalid(detail: str) -> SourceRefused:
    return SourceRefused(401, "invalid-token", detail, error="invalid_token")


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read before any key is chosen (so `alg` can be refused first)."""
    segments = token.split(".")
    if len(segments) != 3:
        raise _invalid("The token is not a compact JWS.")
    try:
        padded = segments[0] + "=" * (-len(segments[0]) % 4)
        header = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, RecursionError):  # UnicodeError is a ValueError; RecursionError: [[[...
        raise _invalid("The token's header is not readable.") from None
    if not isinstance(header, dict):
        raise _invalid("The token's header is not readable.")
    return header


class SourceGuard:
    """Verifies the broker's source tokens against its JWKS; use as a FastAPI dependency."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        leeway: int = 30,
        category_param: str | None = "category",
        subject_param: str | None = "subject",
        max_lifetime: int = 300,
        jwks_min_refresh: float = 10.0,
        jwks_max_age: float = 300.0,
        http_timeout: float = 5.0,
    ) -> None:
        """`category_param`/`subject_param`: a path or query parameter of that name, when the
        request has one, must equal the token's category/subject. A token living longer than
        `max_lifetime` seconds is refused. Keys are fetched again at most every
        `jwks_min_refresh` seconds for an unknown `kid`, and at least every `jwks_max_age`."""
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.leeway = leeway
        self.category_param = category_param
        self.subject_param = subject_param
        self.max_lifetime = max_lifetime
        self.jwks_min_refresh = jwks_min_refresh
        self.jwks_max_age = jwks_max_age
        self._http = httpx.Client(timeout=http_timeout, follow_redirects=False, trust_env=False)
        self._lock = threading.Lock()
        self._keys: dict[str, OKPKey] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None

    # -- the dependency ---------------------------------------------------------------------

    def __call__(self, request: Request) -> SourceGrant:
        """The grant of the request's bearer token, checked against the request's parameters."""
        grant = self.verify(self._bearer(request))
        self._match(request, self.category_param, grant.category, "category")
        self._match(request, self.subject_param, grant.subject, "subject")
        return grant

    def require(self, category: str) -> Callable[[Request], SourceGrant]:
        """A dependency for a route that serves only `category` (e.g. a FHIR resource type)."""

        def dependency(request: Request) -> SourceGrant:
            grant = self(request)
            if grant.category != category:
                raise SourceRefused(
                    403, "wrong-category", "The token is for another data category."
                )
            return grant

        return dependency

    def install(self, app: FastAPI) -> None:
        """Render this guard's refusals in `app` as application/problem+json."""

        async def handler(_: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, SourceRefused)
            return problem_response(exc)

        app.add_exception_handler(SourceRefused, handler)

    # -- verification -----------------------------------------------------------------------

    def verify(self, token: str) -> SourceGrant:
        """The grant of a source token; SourceRefused (401/403/503) unless it is valid here."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid("The token is too long.")
        header = _header(token)
        if header.get("alg") not in ALGORITHMS:
            raise _invalid("The token's algorithm is not accepted.")
        if str(header.get("typ", "")).lower() not in TOKEN_TYPES:
            raise _invalid("The token is not an access token (typ must be at+jwt).")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("The token names no key.")
        key = self._key(kid)
        try:
            claims = jwt.decode(token, key, algorithms=list(ALGORITHMS)).claims
        # TypeError: joserfc uses some header members before checking their type (`crit`: null).
        except (JoseError, ValueError, TypeError):
            raise _invalid("The token's signature is not valid.") from None
        return self._grant(claims)

    def _grant(self, claims: Mapping[str, Any]) -> SourceGrant:
        required: ClaimsOption = {"essential": True}
        registry = JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            client_id={"essential": True, "value": BROKER_CLIENT_ID},
            sub=required,
            scope=required,
            consent_id=required,
            category=required,
            fields=required,
            purpose=required,
            iat=required,
            exp=required,
            jti=required,
        )
        try:
            registry.validate(dict(claims))
        except ExpiredTokenError:
            raise _invalid("The token has expired.") from None
        except JoseError as exc:
            raise _invalid(f"The token's claims are not valid ({exc.description}).") from None
        texts = ("sub", "scope", "consent_id", "category", "purpose", "jti")
        if not all(isinstance(claims[name], str) and claims[name] for name in texts):
            raise _invalid("The token's claims are not valid (a text claim is not text).")
        fields = claims["fields"]
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise _invalid("The token's claims are not valid (fields).")
        iat, exp = claims["iat"], claims["exp"]
        try:
            too_long = not isinstance(iat, int | float) or exp - iat > self.max_lifetime
        except OverflowError:  # an int exp beyond any float, less a float iat
            too_long = True
        if too_long:
            raise _invalid("The token lives longer than a source token may.")
        if SOURCE_SCOPE not in claims["scope"].split():
            raise SourceRefused(
                403, "insufficient-scope", f"The token does not grant {SOURCE_SCOPE}."
            )
        return SourceGrant(
            subject=claims["sub"],
            category=claims["category"],
            fields=tuple(fields),
            consent_id=claims["consent_id"],
            purpose=claims["purpose"],
            token_id=claims["jti"],
        )

    @staticmethod
    def _bearer(request: Request) -> str:
        value = request.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SourceRefused(401, "no-token", "A broker-issued bearer token is needed.")
        return token.strip()

    @staticmethod
    def _match(request: Request, param: str | None, granted: str, what: str) -> None:
        if param is None:
            return
        asked = request.path_params.get(param, request.query_params.get(param))
        if asked is not None and asked != granted:
            raise SourceRefused(403, f"wrong-{what}", f"The token is for another {what}.")

    # -- keys -------------------------------------------------------------------------------

    def _key(self, kid: str) -> OKPKey:
        with self._lock:
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at > self.jwks_max_age
            unknown = kid not in self._keys
            may_retry = self._tried_at is None or now - self._tried_at >= self.jwks_min_refresh
            if (stale or unknown) and may_retry:
                self._refresh(now)
            if not self._keys:
                raise SourceRefused(503, "keys-unavailable", "The broker's keys are unavailable.")
            key = self._keys.get(kid)
        if key is None:
            raise _invalid("The token is signed with a key the broker does not publish.")
        return key

    def _refresh(self, now: float) -> None:
        self._tried_at = now
        try:
            response = self._http.get(self.jwks_url)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as exc:
            # Keep the keys already known: a broker restart must not lock every source out.
            _log.warning("cannot fetch the broker's JWKS: %s", type(exc).__name__)
            return
        self._keys = {
            key.kid: key
            for key in keys
            if isinstance(key, OKPKey) and key.curve_name == "Ed25519" and key.kid
        }
        self._fetched_at = now

    def close(self) -> None:
        """Close the JWKS client."""
        self._http.close()
