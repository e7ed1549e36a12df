"""What the broker refuses, over real HTTP, each with the error code the RFCs name.

The client side (RFC 6749, 7636, 9396): a redirect URI that is not registered, PKCE missing or
`plain`, a replayed or stolen code, a wrong verifier, wrong client credentials, tampered
`authorization_details`, an agreement of another consumer, an unknown scope, and a consent form
posted without its CSRF token. The resource side (RFC 6750, 9068): forged or stale access tokens
on a protected route, each answered 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import OKPKey
from sqlalchemy import func
from sqlmodel import col, select

from broker.storage import transaction
from broker.storage.tables import AuthorizationCode, Consent, LogEvent
from keys import KeyUse
from tests.broker.oauth.flows import (
    LABS,
    REDIRECT_URI,
    Browser,
    Consumer,
    authorize_url,
    b64url,
    code_flow,
    forms_of,
    give_passwords,
    new_verifier,
    redirect_params,
    register_auditor,
    register_consumer,
)
from tests.conftest import LiveBroker

PROTECTED = "/v1/log/entries?start=0&end=10"


@pytest.fixture
def consumer(live: LiveBroker) -> Consumer:
    give_passwords(live, "aino-virtanen")
    return register_consumer(live)


@pytest.fixture
def browser(live: LiveBroker) -> Iterator[Browser]:
    b = Browser(live)
    yield b
    b.close()


def _anonymous_get(url: str) -> httpx.Response:
    return httpx.get(url, follow_redirects=False)


def _redirected_error(response: httpx.Response) -> dict[str, str]:
    params = redirect_params(response)
    assert "code" not in params
    return params


def _code(consumer: Consumer, browser: Browser) -> tuple[str, str]:
    """A fresh authorization code for Aino's consent, and its PKCE verifier."""
    verifier = new_verifier()
    url, _ = consumer.authorization_url(LABS, verifier)
    page = browser.open_consent(url, "aino-virtanen")
    assert page.status_code == 200, page.text[:300]
    return redirect_params(browser.answer(page, "approve"))["code"], verifier


def _redeem(
    live: LiveBroker, code: str, verifier: str | None, auth: tuple[str, str]
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    return httpx.post(f"{live.url}/oauth/token", data=data, auth=auth)


def _recorded(live: LiveBroker, person: str = "aino-virtanen") -> tuple[int, int, int]:
    """How many consents of the person, log events about them, and codes exist."""
    with transaction(live.runtime.engine, readonly=True) as session:
        consents = session.exec(select(Consent).where(Consent.person_id == person)).all()
        ids = [c.id for c in consents]
        events = session.exec(select(LogEvent).where(col(LogEvent.consent_id).in_(ids))).all()
        codes = session.exec(select(func.count()).select_from(AuthorizationCode)).one()
    return len(consents), len(events), int(codes)


# --- the authorization endpoint --------------------------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:9/elsewhere",
        "http://127.0.0.1:9/callback/more",
        "http://127.0.0.1:9/callback?next=https://evil.example",
        "http://127.0.0.1:10/callback",
        "https://evil.example/callback",
        'http://127.0.0.1:9/"quoted"\\back\u00e4',  # not echoed where RFC 6749 forbids it
    ],
)
def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(
    live: LiveBroker, consumer: Consumer, redirect_uri: str
) -> None:
    response = _anonymous_get(
        authorize_url(live, consumer.client_id, new_verifier(), redirect_uri=redirect_uri)
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_request" in response.text or "redirect" in response.text.lower()


@pytest.mark.parametrize("client_id", ["no-such-client", "a\x00b"])
def test_an_unknown_client_gets_an_error_page_and_no_redirect(
    live: LiveBroker, client_id: str
) -> None:
    response = _anonymous_get(authorize_url(live, client_id, new_verifier()))
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": '"code"\\\u00e4'}, "unsupported_response_type"),
        ({"scope": "no-such-scope"}, "invalid_scope"),
    ],
)
def test_a_bad_authorization_request_is_answered_at_the_redirect_uri(
    live: LiveBroker, consumer: Consumer, params: dict[str, Any], error: str
) -> None:
    url = authorize_url(live, consumer.client_id, new_verifier(), state="st-1", **params)
    answer = _redirected_error(_anonymous_get(url))
    assert answer["error"] == error, answer
    assert answer["state"] == "st-1"


@pytest.mark.parametrize("scope", ["audit:read", "source:consents", "release audit:read"])
def test_a_consumer_cannot_ask_for_a_scope_it_was_not_given(
    live: LiveBroker, consumer: Consumer, scope: str
) -> None:
    url = authorize_url(live, consumer.client_id, new_verifier(), scope=scope)
    assert _redirected_error(_anonymous_get(url))["error"] == "invalid_scope"


@pytest.mark.parametrize(
    "details",
    [
        "[{",  # not JSON
        "{}",  # not an array
        json.dumps([{"type": "payment_initiation", "instructedAmount": {"amount": "1"}}]),
        json.dumps([{"type": "omadata_release"}]),  # names nothing
        json.dumps([{"type": "omadata_release", "agreement": "no-such-agreement"}]),
        json.dumps(
            [{"type": "omadata_release", "agreement": "selfcare-labs-medications", "version": 9}]
        ),
        json.dumps(  # a field the agreement does not ask for
            [
                {
                    "type": "omadata_release",
                    "agreement": "selfcare-immunisations",
                    "fields": [
                        "health.immunisations.vaccine_name",
                        "health.immunisations.given_on",
                        "health.immunisations.dose_number",
                        "health.diagnoses.icd10_code",
                    ],
                }
            ]
        ),
        json.dumps(  # a required field left out
            [
                {
                    "type": "omadata_release",
                    "agreement": "selfcare-immunisations",
                    "fields": ["health.immunisations.vaccine_name"],
                }
            ]
        ),
        json.dumps(  # a member our type does not have
            [{"type": "omadata_release", "agreement": "selfcare-immunisations", "privileges": []}]
        ),
        json.dumps([{"type": "omadata_release", "agreement": "selfcare-immunisations"}] * 2),
        "",  # none at all: a release needs them
    ],
)
def test_tampered_authorization_details_are_invalid_authorization_details(
    live: LiveBroker, consumer: Consumer, details: str
) -> None:
    url = authorize_url(live, consumer.client_id, new_verifier(), authorization_details=details)
    answer = _redirected_error(_anonymous_get(url))
    assert answer["error"] == "invalid_authorization_details", answer
    assert answer.get("error_description")


@pytest.mark.parametrize(
    "detail",
    [
        {"type": "omadata_release", "agreement": "research-diagnoses"},
        {"type": "omadata_release", "agreement": "peer-support-plan", "version": 1},
        {
            "type": "omadata_release",
            "source": "patient-record",
            "purpose": "scientific_research",
            "datatypes": ["health.diagnoses"],
        },
    ],
)
def test_a_consumer_cannot_ask_for_an_agreement_of_another_consumer(
    live: LiveBroker, consumer: Consumer, detail: dict[str, Any]
) -> None:
    url = authorize_url(
        live, consumer.client_id, new_verifier(), authorization_details=json.dumps([detail])
    )
    assert _redirected_error(_anonymous_get(url))["error"] == "invalid_authorization_details"


def test_details_swapped_in_the_consent_form_are_refused_and_nothing_is_recorded(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    url, _ = consumer.authorization_url(LABS, new_verifier())
    page = browser.open_consent(url, "aino-virtanen")
    form = next(f for f in forms_of(page.text) if f["action"] == "/oauth/authorize")
    data = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("type") == "hidden"}
    data["authorization_details"] = json.dumps(
        [{"type": "omadata_release", "agreement": "research-diagnoses"}]
    )
    data["decision"] = "approve"
    answered = browser.client.post("/oauth/authorize", data=data)
    assert _redirected_error(answered)["error"] == "invalid_authorization_details"
    assert _recorded(live) == (0, 0, 0)


def test_a_field_added_to_the_consent_form_is_not_granted(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    verifier = new_verifier()
    url, _ = consumer.authorization_url(
        [{"type": "omadata_release", "agreement": "selfcare-immunisations"}], verifier
    )
    page = browser.open_consent(url, "aino-virtanen")
    form = next(f for f in forms_of(page.text) if f["action"] == "/oauth/authorize")
    data: dict[str, list[str]] = {}
    for i in form["inputs"]:
        if i.get("type") in {"hidden", "checkbox"}:
            data.setdefault(i["name"], []).append(i.get("value", ""))
    data["field"].append("health.diagnoses.icd10_code")
    data["decision"] = ["approve"]
    answered = browser.client.post("/oauth/authorize", data=data)
    token = consumer.exchange(answered.headers["location"], verifier)
    granted = token["authorization_details"][0]["fields"]
    assert "health.diagnoses.icd10_code" not in granted
    assert "health.immunisations.vaccine_name" in granted


@pytest.mark.parametrize("csrf", [None, "", "not-the-token"])
def test_the_consent_form_without_its_csrf_token_is_refused_and_records_nothing(
    live: LiveBroker, consumer: Consumer, browser: Browser, csrf: str | None
) -> None:
    url, _ = consumer.authorization_url(LABS, new_verifier())
    page = browser.open_consent(url, "aino-virtanen")
    form = next(f for f in forms_of(page.text) if f["action"] == "/oauth/authorize")
    data: dict[str, list[str]] = {}
    for i in form["inputs"]:
        if i.get("type") in {"hidden", "checkbox"}:
            data.setdefault(i["name"], []).append(i.get("value", ""))
    assert data.pop("csrf")
    if csrf is not None:
        data["csrf"] = [csrf]
    for decision in ("approve", "refuse"):
        data["decision"] = [decision]
        answered = browser.client.post("/oauth/authorize", data=data)
        assert answered.status_code == 400
        assert "location" not in answered.headers
    assert _recorded(live) == (0, 0, 0)


def test_the_consent_form_posted_without_a_session_is_refused(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    url, _ = consumer.authorization_url(LABS, new_verifier())
    page = browser.open_consent(url, "aino-virtanen")
    form = next(f for f in forms_of(page.text) if f["action"] == "/oauth/authorize")
    data = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("type") == "hidden"}
    data["decision"] = "approve"
    # The attacker's page posts the form with the CSRF token it somehow read, but the
    # browser's cookie is not sent (a cross-site POST with SameSite=Lax).
    answered = httpx.post(f"{live.url}/oauth/authorize", data=data)
    assert answered.status_code == 401
    assert "location" not in answered.headers
    assert _recorded(live) == (0, 0, 0)


# --- the token endpoint ----------------------------------------------------------------------


def test_a_replayed_code_is_invalid_grant_and_revokes_what_it_gave(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    code, verifier = _code(consumer, browser)
    auth = (consumer.client_id, consumer.client_secret)
    first = _redeem(live, code, verifier, auth)
    assert first.status_code == 200, first.text
    refresh = first.json()["refresh_token"]
    again = _redeem(live, code, verifier, auth)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens issued from a replayed code are revoked.
    assert consumer.introspect(refresh) == {"active": False}
    after = consumer.refresh(refresh)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_a_code_presented_by_another_client_is_invalid_grant(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    code, verifier = _code(consumer, browser)
    for thief in (register_consumer(live), register_consumer(live, "research-register")):
        stolen = _redeem(live, code, verifier, (thief.client_id, thief.client_secret))
        assert stolen.status_code == 400
        assert stolen.json()["error"] == "invalid_grant"


def test_a_wrong_code_verifier_is_invalid_grant(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    code, _ = _code(consumer, browser)
    auth = (consumer.client_id, consumer.client_secret)
    wrong = _redeem(live, code, new_verifier(), auth)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    missing = _redeem(live, code, None, auth)
    assert missing.status_code == 400
    assert missing.json()["error"] in {"invalid_request", "invalid_grant"}


def test_a_code_with_another_redirect_uri_is_invalid_grant(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    code, verifier = _code(consumer, browser)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:9/elsewhere",
            "code_verifier": verifier,
        },
        auth=(consumer.client_id, consumer.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("who", ["wrong secret", "unknown client", "no credentials"])
def test_wrong_client_credentials_are_invalid_client_with_a_basic_challenge(
    live: LiveBroker, consumer: Consumer, browser: Browser, who: str
) -> None:
    code, verifier = _code(consumer, browser)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    auth = {
        "wrong secret": (consumer.client_id, "not-the-secret"),
        "unknown client": ("no-such-client", consumer.client_secret),
        "no credentials": None,
    }[who]
    response = httpx.post(f"{live.url}/oauth/token", data=data, auth=auth)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    # The code is untouched: its client can still redeem it.
    assert _redeem(live, code, verifier, (consumer.client_id, consumer.client_secret)).is_success


@pytest.mark.parametrize(
    ("endpoint", "data"),
    [
        ("token", {"grant_type": "client_credentials"}),
        ("introspect", {"token": "x"}),
        ("revoke", {"token": "x"}),
    ],
)
def test_a_client_id_no_client_can_have_is_invalid_client(
    live: LiveBroker, endpoint: str, data: dict[str, str]
) -> None:
    # A NUL byte cannot even be stored in PostgreSQL text: it must not reach a query.
    for client_id in ("a\x00b", "x" * 300, "tab\there"):
        response = httpx.post(f"{live.url}/oauth/{endpoint}", data=data, auth=(client_id, "s"))
        assert response.status_code == 401, (endpoint, client_id, response.text)
        assert response.json()["error"] == "invalid_client"


def test_client_credentials_with_an_unknown_scope_are_invalid_scope(live: LiveBroker) -> None:
    client_id, secret = register_auditor(live)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "no-such-scope"},
        auth=(client_id, secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_a_refresh_cannot_widen_the_scope(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = code_flow(consumer, browser)
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "scope": "audit:read",
        },
        auth=(consumer.client_id, consumer.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


# --- the resource side -----------------------------------------------------------------------


def _claims(live: LiveBroker, client_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": live.url,
        "aud": f"{live.url}/v1",
        "sub": client_id,
        "client_id": client_id,
        "scope": "audit:read",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": b64url(hashlib.sha256(str(time.monotonic_ns()).encode()).digest()[:12]),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(live: LiveBroker, claims: dict[str, Any], **header: Any) -> str:
    """Signed with the broker's own token key, as if the broker had issued it."""
    key = live.runtime.keystore.current(KeyUse.TOKEN)
    head = {"alg": "Ed25519", "typ": "at+jwt", "kid": key.kid, **header}
    return jwt.encode(head, claims, OKPKey.import_key(key.private_key()), algorithms=["Ed25519"])


def _hand_made(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def _public_key_secrets(live: LiveBroker) -> list[bytes]:
    """Every form of the broker's public token key an attacker may try as an HMAC secret."""
    jwks = httpx.get(f"{live.url}/.well-known/jwks.json").json()
    kid = live.runtime.keystore.current(KeyUse.TOKEN).kid
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    public = live.runtime.keystore.current(KeyUse.TOKEN).private_key().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [raw, pem, jwk["x"].encode(), json.dumps(jwk).encode()]


def _forged_tokens(live: LiveBroker, client_id: str) -> dict[str, str]:
    kid = live.runtime.keystore.current(KeyUse.TOKEN).kid
    claims = _claims(live, client_id)
    stranger = OKPKey.import_key(Ed25519PrivateKey.generate())
    forged = {
        "wrong audience": _signed(live, _claims(live, client_id, aud="https://other.example/v1")),
        "audience of the token endpoint": _signed(
            live, _claims(live, client_id, aud=f"{live.url}/oauth/token")
        ),
        "wrong issuer": _signed(live, _claims(live, client_id, iss="https://other.example")),
        "expired": _signed(
            live, _claims(live, client_id, iat=int(time.time()) - 900, exp=int(time.time()) - 300)
        ),
        "not yet valid": _signed(live, _claims(live, client_id, nbf=int(time.time()) + 600)),
        "no expiry": _signed(live, _claims(live, client_id, exp=None)),
        "not an access token": _signed(live, claims, typ="JWT"),
        "an id token's type": _signed(live, claims, typ="id_token+jwt"),
        "alg none": _hand_made({"alg": "none", "typ": "at+jwt"}, claims, lambda _: b""),
        "alg none, kid kept": _hand_made(
            {"alg": "none", "typ": "at+jwt", "kid": kid}, claims, lambda _: b""
        ),
        "unknown key, broker's kid": jwt.encode(
            {"alg": "Ed25519", "typ": "at+jwt", "kid": kid}, claims, stranger, ["Ed25519"]
        ),
        "unknown key, own kid": jwt.encode(
            {"alg": "Ed25519", "typ": "at+jwt", "kid": "stranger"}, claims, stranger, ["Ed25519"]
        ),
        "key in the header": jwt.encode(
            {"alg": "Ed25519", "typ": "at+jwt", "jwk": stranger.as_dict(private=False)},
            claims,
            stranger,
            ["Ed25519"],
        ),
        "signature cut off": _signed(live, claims).rsplit(".", 1)[0] + ".",
        "not a JWT": "not-a-token",
    }
    for n, secret in enumerate(_public_key_secrets(live)):
        for header in ({"alg": "HS256", "typ": "at+jwt", "kid": kid}, {"alg": "HS256"}):
            forged[f"HS256 with the public key ({n}, {len(header)})"] = _hand_made(
                header, claims, lambda data, s=secret: hmac.new(s, data, hashlib.sha256).digest()
            )
    return forged


def test_a_token_made_like_the_brokers_opens_the_protected_route(live: LiveBroker) -> None:
    """The control for the forgeries below: the same claims, properly signed, are accepted."""
    client_id, _ = register_auditor(live)
    response = httpx.get(
        f"{live.url}{PROTECTED}",
        headers={"Authorization": f"Bearer {_signed(live, _claims(live, client_id))}"},
    )
    assert response.status_code == 200, response.text


def test_forged_and_stale_access_tokens_are_invalid_token(live: LiveBroker) -> None:
    client_id, _ = register_auditor(live)
    answers: dict[str, tuple[int, str]] = {}
    for name, token in _forged_tokens(live, client_id).items():
        response = httpx.get(f"{live.url}{PROTECTED}", headers={"Authorization": f"Bearer {token}"})
        answers[name] = (response.status_code, response.headers.get("www-authenticate", ""))
    wrong = {
        name: answer
        for name, answer in answers.items()
        if answer[0] != 401
        or not answer[1].startswith("Bearer ")
        or 'error="invalid_token"' not in answer[1]
    }
    assert wrong == {}
    assert len(answers) >= 20


def test_a_request_without_a_token_gets_a_challenge_without_an_error(live: LiveBroker) -> None:
    response = httpx.get(f"{live.url}{PROTECTED}")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert "error=" not in challenge  # RFC 6750 §3.1: no error code when no token was sent


def test_a_valid_token_without_the_scope_is_insufficient_scope(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = code_flow(consumer, browser)
    response = httpx.get(
        f"{live.url}{PROTECTED}", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_revoked_access_token_is_invalid_token(live: LiveBroker) -> None:
    client_id, secret = register_auditor(live)
    token = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "audit:read"},
        auth=(client_id, secret),
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{live.url}{PROTECTED}", headers=headers).status_code == 200
    revoked = httpx.post(
        f"{live.url}/oauth/revoke", data={"token": token}, auth=(client_id, secret)
    )
    assert revoked.status_code == 200
    response = httpx.get(f"{live.url}{PROTECTED}", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
