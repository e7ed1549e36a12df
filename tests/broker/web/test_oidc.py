"""A person signs in through a real OpenID Connect provider on loopback, as with Suomi.fi.

The provider is oidc-provider-mock (Authlib's server in Flask, RS256 ID tokens, a form to
choose who is identified), served by werkzeug on its own port. The browser is httpx following
every redirect by hand: broker -> provider's authorization page -> the form -> callback.
A switch on the provider alters the ID tokens it hands out, to play a tampered token response.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import ValidationError
from sqlalchemy import Engine, func
from sqlmodel import select

from broker.auth import oidc
from broker.auth.sessions import COOKIE
from broker.people.service import link_identity
from broker.settings import Settings
from broker.storage import create_db_engine, transaction
from broker.storage.tables import Person, PersonIdentity, PersonSession
from broker.web.oidc import FLOW_COOKIE
from tests.broker.oauth.flows import new_verifier, register_consumer
from tests.conftest import LiveBroker, free_port

# oidc-provider-mock still uses Authlib APIs that warn (in its own thread, where pytest's
# "error" would turn them into 500s of the provider); only those warnings are let through.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore::authlib.deprecate.AuthlibDeprecationWarning:oidc_provider_mock"
    ),
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
]

# A claim named like Suomi.fi's personal identity code; the values here are made up.
HETU = "urn:oid:1.2.246.21"
CLIENT_ID = "omadata-test"
LABS = [{"type": "omadata_release", "agreement": "selfcare-labs-medications"}]

Tamper = Callable[[str, RSAKey], str]


class Provider:
    """oidc-provider-mock on a loopback port; `tamper` rewrites the ID tokens it issues."""

    def __init__(self) -> None:
        import werkzeug.serving

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            import oidc_provider_mock

        users = [
            oidc_provider_mock.User(sub="demo-aino", claims={HETU: "010101-AINO"}),
            oidc_provider_mock.User(sub="demo-matti", claims={HETU: "020202-MATTI"}),
            oidc_provider_mock.User(sub="stranger", claims={HETU: "030303-STRANGER"}),
        ]
        self.app = oidc_provider_mock.app(require_nonce=True, user_claims=users)
        self.tamper: Tamper | None = None
        self.app.after_request(self._rewrite_id_token)
        self.server = werkzeug.serving.make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _rewrite_id_token(self, response: Any) -> Any:
        import flask

        if self.tamper is None or flask.request.path != "/oauth2/token":
            return response
        body = response.get_json()
        if response.status_code == 200 and "id_token" in body:
            jwk = flask.g.oidc_provider_mock_storage.jwk.as_dict(is_private=True)
            body["id_token"] = self.tamper(body["id_token"], RSAKey.import_key(jwk))
            response.set_data(json.dumps(body))
        return response

    def __enter__(self) -> Provider:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    def part(s: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        return value

    header, payload, signature = token.split(".")
    return part(header), part(payload), signature


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def resigned(change: dict[str, Any]) -> Tamper:
    """Claims changed, then signed again with the provider's own key: only claims checks fail."""

    def tamper(token: str, key: RSAKey) -> str:
        header, payload, _ = _segments(token)
        return jwt.encode(header, {**payload, **change}, key)

    return tamper


def swapped_subject(token: str, key: RSAKey) -> str:
    """Another person's subject under the original signature."""
    header, payload, signature = _segments(token)
    return f"{_b64(header)}.{_b64({**payload, 'sub': 'demo-matti'})}.{signature}"


def foreign_key(token: str, key: RSAKey) -> str:
    """The same claims and key id, signed by a key that is not the provider's."""
    header, payload, _ = _segments(token)
    return jwt.encode(header, payload, RSAKey.generate_key(2048))


def unsigned(token: str, key: RSAKey) -> str:
    """`alg: none` with no signature."""
    _, payload, _ = _segments(token)
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


@pytest.fixture
def provider() -> Iterator[Provider]:
    with Provider() as running:
        yield running


def start_broker(engine: Engine, data_dir: Path, issuer: str, **settings: Any) -> LiveBroker:
    """A live broker whose OpenID provider is `issuer`."""
    return LiveBroker(
        engine,
        data_dir,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret="provider-issued-secret",
        **settings,
    )


def link(engine: Engine, issuer: str, **identities: str) -> None:
    with transaction(engine) as session:
        for person, subject in identities.items():
            link_identity(session, person.replace("_", "-"), issuer=issuer, subject=subject)


@pytest.fixture
def broker(demo: Engine, tmp_path: Path, provider: Provider) -> Iterator[LiveBroker]:
    """The demo broker, Aino and Matti linked to their `sub` at the provider."""
    link(demo, provider.url, aino_virtanen="demo-aino", matti_korhonen="demo-matti")
    with start_broker(demo, tmp_path / "broker", provider.url) as live:
        yield live


class Browser:
    """A person's browser: one cookie jar for the broker and the provider, no auto-redirects."""

    def __init__(self, live: LiveBroker) -> None:
        self.live = live
        self.http = httpx.Client(timeout=15)

    def start(self, next_url: str = "/", lang: str | None = None) -> httpx.Response:
        params = {"next": next_url, **({"lang": lang} if lang else {})}
        return self.http.get(f"{self.live.url}/signin/oidc", params=params)

    def to_provider(self, next_url: str = "/", lang: str | None = None) -> str:
        """Start at the broker; the provider's authorization URL it sends the browser to."""
        started = self.start(next_url, lang)
        assert started.status_code == 303, started.text[:500]
        return started.headers["location"]

    def identify(self, authorize_url: str, sub: str = "demo-aino", deny: bool = False) -> str:
        """Open the provider's page, submit its form; the callback URL it redirects to."""
        page = self.http.get(authorize_url)
        assert page.status_code == 200, page.text[:500]
        assert 'name="sub"' in page.text
        form = {"action": "deny"} if deny else {"sub": sub}
        answered = self.http.post(authorize_url, data=form)
        assert answered.status_code == 302, answered.text[:500]
        return answered.headers["location"]

    def sign_in(self, sub: str = "demo-aino", next_url: str = "/") -> httpx.Response:
        """The whole round trip; the broker's answer at the callback."""
        return self.http.get(self.identify(self.to_provider(next_url), sub))

    def me(self) -> httpx.Response:
        return self.http.get(f"{self.live.url}/v1/me")

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser(broker: LiveBroker) -> Iterator[Browser]:
    b = Browser(broker)
    yield b
    b.close()


def sessions(live: LiveBroker) -> int:
    with transaction(live.runtime.engine, readonly=True) as session:
        return int(session.exec(select(func.count()).select_from(PersonSession)).one())


def assert_nobody_signed_in(live: LiveBroker, browser: Browser, answer: httpx.Response) -> None:
    assert COOKIE not in answer.cookies
    assert browser.me().status_code == 401
    assert sessions(live) == 0


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


# --- the story -----------------------------------------------------------------------------


def test_a_consumer_sends_aino_to_consent_and_she_signs_in_with_suomi_fi(
    broker: LiveBroker, browser: Browser
) -> None:
    consumer = register_consumer(broker)
    consent_url, _ = consumer.authorization_url(LABS, new_verifier())
    asked = browser.http.get(consent_url)
    assert asked.status_code == 303
    signin_page = browser.http.get(f"{broker.url}{asked.headers['location']}")
    assert "Kirjaudu sisään \u2013 Suomi.fi" in signin_page.text
    assert "/signin/oidc?next=" in signin_page.text

    next_path = consent_url.removeprefix(broker.url)
    done = browser.sign_in("demo-aino", next_url=next_path)

    assert done.status_code == 303, done.text[:500]
    assert done.headers["location"] == next_path
    assert COOKIE in done.cookies
    assert FLOW_COOKIE not in browser.http.cookies
    consent_page = browser.http.get(f"{broker.url}{done.headers['location']}")
    assert consent_page.status_code == 200
    assert "Aino Virtanen" in consent_page.text
    me = browser.me().json()
    assert (me["id"], me["language"]) == ("aino-virtanen", "fi")


def test_the_request_carries_pkce_s256_state_nonce_and_language(
    broker: LiveBroker, browser: Browser, provider: Provider
) -> None:
    authorize = browser.to_provider(lang="sv")
    assert authorize.startswith(f"{provider.url}/oauth2/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{broker.url}/signin/oidc/callback"
    assert "openid" in query["scope"].split()
    assert query["ui_locales"] == "sv"
    assert len(query["state"]) >= 20
    assert len(query["nonce"]) >= 20
    assert query["code_challenge_method"] == "S256"
    # The verifier stays with the broker (in its sealed cookie); only its S256 hash travels.
    sealed = browser.http.cookies[FLOW_COOKIE]
    _, flow, _ = _segments(sealed)
    digest = hashlib.sha256(flow["cv"].encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert flow["cv"] not in authorize


def test_next_is_kept_on_this_site(broker: LiveBroker, browser: Browser) -> None:
    done = browser.sign_in("demo-matti", next_url="https://evil.example/steal")
    assert done.status_code == 303
    assert done.headers["location"] == "/"
    assert browser.me().json()["id"] == "matti-korhonen"


def test_the_person_claim_can_be_the_personal_identity_code(
    demo: Engine, tmp_path: Path, provider: Provider
) -> None:
    link(demo, provider.url, karin_lindqvist="010101-AINO")
    with start_broker(demo, tmp_path / "broker", provider.url, oidc_person_claim=HETU) as live:
        person = Browser(live)
        try:
            # The provider's subject is demo-aino; the identity code links to Karin here.
            done = person.sign_in("demo-aino")
            assert done.status_code == 303, done.text[:500]
            assert person.me().json()["id"] == "karin-lindqvist"
        finally:
            person.close()


# --- refusals -------------------------------------------------------------------------------


def test_an_identity_linked_to_nobody_gets_a_page_in_her_language_and_no_account(
    broker: LiveBroker, browser: Browser
) -> None:
    with transaction(broker.runtime.engine, readonly=True) as session:
        persons = session.exec(select(func.count()).select_from(Person)).one()
        identities = session.exec(select(func.count()).select_from(PersonIdentity)).one()

    answer = browser.http.get(browser.identify(browser.to_provider(lang="sv"), "stranger"))

    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert 'lang="sv"' in answer.text
    assert "inget OmaData-konto är kopplat till din identifiering" in answer.text
    assert_nobody_signed_in(broker, browser, answer)
    with transaction(broker.runtime.engine, readonly=True) as session:
        assert session.exec(select(func.count()).select_from(Person)).one() == persons
        assert session.exec(select(func.count()).select_from(PersonIdentity)).one() == identities


def test_cancelling_at_the_provider_is_access_denied(broker: LiveBroker, browser: Browser) -> None:
    callback = browser.identify(browser.to_provider(), deny=True)
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
    assert callback.startswith(f"{broker.url}/signin/oidc/callback?")
    answer = browser.http.get(callback)
    assert answer.status_code == 400
    assert "Keskeytit tunnistautumisen" in answer.text
    assert_nobody_signed_in(broker, browser, answer)


def test_a_callback_with_another_state_is_refused(broker: LiveBroker, browser: Browser) -> None:
    callback = browser.identify(browser.to_provider())
    answer = browser.http.get(with_query(callback, state="not-the-state-we-sent"))
    assert answer.status_code == 400
    assert "toisessa selaimessa" in answer.text
    assert_nobody_signed_in(broker, browser, answer)


def test_a_callback_in_another_browser_is_refused(broker: LiveBroker, browser: Browser) -> None:
    callback = browser.identify(browser.to_provider())
    victim = Browser(broker)
    try:
        answer = victim.http.get(callback, headers={"accept-language": "en"})
        assert answer.status_code == 400
        assert "started in another browser" in answer.text
        assert_nobody_signed_in(broker, victim, answer)
    finally:
        victim.close()


def test_a_used_callback_does_not_sign_in_again(broker: LiveBroker, browser: Browser) -> None:
    callback = browser.identify(browser.to_provider())
    assert browser.http.get(callback).status_code == 303
    browser.http.cookies.delete(COOKIE)
    again = browser.http.get(callback)
    assert again.status_code == 400
    assert sessions(broker) == 1


def test_an_id_token_for_another_nonce_is_refused(broker: LiveBroker, browser: Browser) -> None:
    # The provider signs a genuine token, but for a nonce this browser's flow did not send.
    authorize = with_query(browser.to_provider(), nonce="a-nonce-from-another-flow")
    answer = browser.http.get(browser.identify(authorize))
    assert answer.status_code == 400
    assert "ei voitu varmistaa" in answer.text
    assert_nobody_signed_in(broker, browser, answer)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(swapped_subject, id="other-subject-under-the-old-signature"),
        pytest.param(foreign_key, id="signed-by-another-key"),
        pytest.param(unsigned, id="alg-none"),
        pytest.param(resigned({"aud": "another-client"}), id="wrong-audience"),
        # Authlib's azp rule alone would let this one through.
        pytest.param(
            resigned({"aud": "another-client", "azp": CLIENT_ID}), id="wrong-audience-our-azp"
        ),
        pytest.param(resigned({"iss": "https://evil.example"}), id="wrong-issuer"),
        pytest.param(resigned({"exp": int(time.time()) - 3600}), id="expired"),
        pytest.param(resigned({"nonce": "replayed"}), id="wrong-nonce"),
    ],
)
def test_a_tampered_id_token_is_refused(
    broker: LiveBroker, browser: Browser, provider: Provider, tamper: Tamper
) -> None:
    provider.tamper = tamper
    answer = browser.http.get(browser.identify(browser.to_provider(), "demo-aino"))
    assert answer.status_code == 400, answer.text[:500]
    assert "ei voitu varmistaa" in answer.text
    assert_nobody_signed_in(broker, browser, answer)


def test_the_untampered_token_still_passes_through_the_switch(
    broker: LiveBroker, browser: Browser, provider: Provider
) -> None:
    # The tampering hook itself must not be what makes tokens fail.
    provider.tamper = resigned({})
    assert browser.sign_in("demo-aino").status_code == 303
    assert browser.me().json()["id"] == "aino-virtanen"


def test_an_unreachable_provider_is_a_page_not_a_crash(demo: Engine, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with start_broker(demo, tmp_path / "broker", nobody) as live:
        person = Browser(live)
        try:
            answer = person.start(lang="en")
            assert answer.status_code == 502
            assert "cannot be reached" in answer.text
            assert FLOW_COOKIE not in answer.cookies
        finally:
            person.close()


def test_without_oidc_settings_there_is_no_button_and_no_route(live: LiveBroker) -> None:
    with httpx.Client(base_url=live.url) as http:
        assert "/signin/oidc" not in http.get("/signin").text
        assert http.get("/signin/oidc").status_code == 404
        assert http.get("/signin/oidc/callback?code=x&state=y").status_code == 404


# --- the flow cookie and settings, without a network --------------------------------------


def _flow(expires_at: int) -> oidc.Flow:
    return oidc.Flow("s", "n", "v", "http://b/cb", "/", "fi", expires_at)


def test_the_flow_cookie_opens_only_with_its_key_and_before_it_expires() -> None:
    key, now = os.urandom(32), time.time()
    sealed = _flow(int(now) + 60).seal(key)
    assert oidc.Flow.open(sealed, key, now) == _flow(int(now) + 60)
    with pytest.raises(oidc.FlowMismatch):
        oidc.Flow.open(sealed, os.urandom(32), now)
    with pytest.raises(oidc.FlowMismatch):
        oidc.Flow.open(sealed, key, now + 61)
    with pytest.raises(oidc.FlowMismatch):
        oidc.Flow.open(None, key, now)


def test_settings_insist_on_openid_and_on_https_in_production() -> None:
    with pytest.raises(ValidationError, match="openid"):
        Settings(oidc_scope="profile")
    with pytest.raises(ValidationError, match="BROKER_OIDC_ISSUER"):
        Settings(
            environment="production",
            database_url="postgresql+psycopg://db/broker",
            public_url="https://omadata.example",
            oidc_issuer="http://idp.example",
            oidc_client_id="omadata",
        )


# --- the operator links an identity with the CLI ------------------------------------------


def test_an_operator_links_an_identity_and_the_person_can_sign_in(
    tmp_path: Path, provider: Provider
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env = {**clean, "BROKER_DATA_DIR": str(tmp_path / "var"), "BROKER_OIDC_ISSUER": provider.url}

    def broker_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "broker.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for args in (("db", "upgrade"), ("catalogue", "load", "--demo")):
        assert broker_cli(*args).returncode == 0
    linked = broker_cli("person", "link-identity", "sam-taylor", "--subject", "demo-aino")
    assert linked.returncode == 0, linked.stderr
    assert json.loads(linked.stdout) == {
        "person": "sam-taylor",
        "issuer": provider.url,
        "linked": True,
        "new": True,
    }
    taken = broker_cli("person", "link-identity", "aino-virtanen", "--subject", "demo-aino")
    assert taken.returncode == 1
    assert "belongs to another person" in " ".join(taken.stderr.split())

    engine = create_db_engine(f"sqlite:///{tmp_path / 'var' / 'broker.sqlite3'}")
    try:
        with start_broker(engine, tmp_path / "var", provider.url) as live:
            person = Browser(live)
            try:
                assert person.sign_in("demo-aino").status_code == 303
                assert person.me().json()["id"] == "sam-taylor"
            finally:
                person.close()
    finally:
        engine.dispose()
