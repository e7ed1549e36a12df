"""A person consents through the authorization code flow; tokens follow the consent's life."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlmodel import select

from broker.consents import service as consents
from broker.storage import transaction
from broker.storage.tables import Consent, LogEvent
from tests.broker.oauth.flows import (
    Browser,
    Consumer,
    give_passwords,
    new_verifier,
    redirect_params,
    register_consumer,
)
from tests.conftest import LiveBroker

LABS = [{"type": "omadata_release", "agreement": "selfcare-labs-medications"}]


@pytest.fixture
def consumer(live: LiveBroker) -> Consumer:
    give_passwords(live, "aino-virtanen", "matti-korhonen")
    return register_consumer(live)


@pytest.fixture
def browser(live: LiveBroker) -> Any:
    b = Browser(live)
    yield b
    b.close()


def _consent(
    consumer: Consumer,
    browser: Browser,
    user: str = "aino-virtanen",
    drop: set[str] = frozenset(),
    subject: str | None = None,
) -> dict[str, Any]:
    verifier = new_verifier()
    url, state = consumer.authorization_url(LABS, verifier)
    page = browser.open_consent(url, user)
    assert page.status_code == 200, page.text[:300]
    answered = browser.answer(page, "approve", drop=drop, subject=subject)
    params = redirect_params(answered)
    assert params["state"] == state
    return consumer.exchange(answered.headers["location"], verifier)


def test_aino_consents_and_the_app_gets_a_token_naming_her_consent(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = _consent(consumer, browser)
    assert token["token_type"] == "Bearer"
    assert "refresh_token" in token
    jwks = KeySet.import_key_set(httpx.get(f"{live.url}/.well-known/jwks.json").json())
    claims = jwt.decode(token["access_token"], jwks, algorithms=["Ed25519"]).claims
    assert claims["aud"] == f"{live.url}/v1"
    assert claims["client_id"] == consumer.client_id
    assert claims["sub"] != "aino-virtanen"
    detail = claims["authorization_details"][0]
    assert detail["type"] == "omadata_release"
    assert detail["agreement"] == "selfcare-labs-medications"
    with transaction(live.runtime.engine, readonly=True) as session:
        consent = session.get(Consent, claims["consent_id"])
        assert consent is not None
        assert consent.person_id == "aino-virtanen"
        logged = session.exec(select(LogEvent).where(LogEvent.consent_id == consent.id)).all()
    assert [e.event_type for e in logged] == ["consent.given"]
    assert token["authorization_details"] == claims["authorization_details"]


def test_optional_fields_left_out_are_not_granted(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = _consent(
        consumer,
        browser,
        drop={"health.lab_results.reference_range", "health.medications.atc_code"},
    )
    fields = set(token["authorization_details"][0]["fields"])
    assert "health.lab_results.value" in fields
    assert "health.lab_results.reference_range" not in fields
    assert "health.medications.atc_code" not in fields


def test_refusal_is_recorded_and_the_app_hears_access_denied(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    url, _ = consumer.authorization_url(LABS, new_verifier())
    page = browser.open_consent(url, "aino-virtanen")
    params = redirect_params(browser.answer(page, "refuse"))
    assert params["error"] == "access_denied"
    with transaction(live.runtime.engine, readonly=True) as session:
        listed = consents.list_consents(session, "aino-virtanen", datetime.now(UTC))
    assert [c.status.value for c in listed] == ["refused"]


def test_a_guardian_consents_for_the_child_and_the_record_says_so(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = _consent(consumer, browser, user="matti-korhonen", subject="eelis-korhonen")
    with transaction(live.runtime.engine, readonly=True) as session:
        record = consents.get_consent(
            session, token["authorization_details"][0]["consent_id"], datetime.now(UTC)
        )
    assert record.person_id == "eelis-korhonen"
    assert record.given_by == "matti-korhonen"
    assert record.actor_role.value == "guardian"


def test_withdrawal_stops_refresh_and_introspection_at_once(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = _consent(consumer, browser)
    assert consumer.introspect(token["access_token"])["active"] is True
    refreshed = consumer.refresh(token["refresh_token"])
    assert refreshed.status_code == 200
    newer = refreshed.json()
    assert newer["refresh_token"] != token["refresh_token"]
    consent_id = newer["authorization_details"][0]["consent_id"]
    live.runtime.ledger.run(
        lambda s, log: consents.withdraw_consent(
            s, log, consent_id=consent_id, actor_id="aino-virtanen", now=datetime.now(UTC)
        )
    )
    assert consumer.introspect(newer["access_token"]) == {"active": False}
    after = consumer.refresh(newer["refresh_token"])
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_a_rotated_refresh_token_used_again_revokes_the_family(
    live: LiveBroker, consumer: Consumer, browser: Browser
) -> None:
    token = _consent(consumer, browser)
    first = consumer.refresh(token["refresh_token"]).json()
    replay = consumer.refresh(token["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert consumer.refresh(first["refresh_token"]).status_code == 400


def test_a_code_works_once(live: LiveBroker, consumer: Consumer, browser: Browser) -> None:
    verifier = new_verifier()
    url, _ = consumer.authorization_url(LABS, verifier)
    page = browser.open_consent(url, "aino-virtanen")
    answered = browser.answer(page, "approve")
    consumer.exchange(answered.headers["location"], verifier)
    code = redirect_params(answered)["code"]
    again = httpx.post(
        f"{live.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:9/callback",
            "code_verifier": verifier,
        },
        auth=(consumer.client_id, consumer.client_secret),
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
