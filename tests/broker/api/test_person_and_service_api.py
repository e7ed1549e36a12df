"""The authenticated API as its users meet it: a person, a guardian, a consumer, a source."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from broker.oauth import clients
from broker.storage import transaction
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
    give_passwords(live, "aino-virtanen", "matti-korhonen", "karin-lindqvist")
    return register_consumer(live)


@pytest.fixture
def browsers(live: LiveBroker) -> Iterator[dict[str, Browser]]:
    made = {who: Browser(live) for who in ("aino", "matti", "karin")}
    yield made
    for browser in made.values():
        browser.close()


def consent(
    consumer: Consumer, browser: Browser, user: str, subject: str | None = None
) -> dict[str, Any]:
    """The person approves the consumer's request on the consent page; the consumer's tokens."""
    verifier = new_verifier()
    url, _ = consumer.authorization_url(LABS, verifier)
    answered = browser.answer(browser.open_consent(url, user), "approve", subject=subject)
    redirect_params(answered)
    return consumer.exchange(answered.headers["location"], verifier)


def csrf(browser: Browser) -> dict[str, str]:
    me = browser.client.get("/v1/me").json()
    return {me["csrf_header"]: me["csrf_token"]}


def client_token(live: LiveBroker, client_id: str, secret: str | None, scope: str) -> str:
    assert secret is not None
    response = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_aino_sees_her_consent_and_its_log_entry_and_withdraws_it(
    live: LiveBroker, consumer: Consumer, browsers: dict[str, Browser]
) -> None:
    aino = browsers["aino"]
    tokens = consent(consumer, aino, "aino-virtanen")
    consent_id = tokens["authorization_details"][0]["consent_id"]

    me = aino.client.get("/v1/me").json()
    assert me["id"] == "aino-virtanen"
    assert me["display_name"] == "Aino Virtanen"
    listed = aino.client.get("/v1/me/consents").json()
    assert [(c["id"], c["status"]) for c in listed] == [(consent_id, "given")]
    assert [h["event_type"] for h in listed[0]["history"]] == ["consent.given"]

    entries = aino.client.get("/v1/me/log-entries").json()
    given = [e for e in entries if e["consent_id"] == consent_id]
    assert [e["type"] for e in given] == ["consent.given"]
    # The leaf she is shown is the very leaf an auditor reads at that index.
    with transaction(live.runtime.engine) as session:
        auditor = clients.register_auditor(session, name="Auditor", now=datetime.now(UTC))
    audit = client_token(live, auditor.client_id, auditor.client_secret, "audit:read")
    index = given[0]["index"]
    logged = httpx.get(
        f"{live.url}/v1/log/entries",
        params={"start": index, "end": index + 1},
        headers={"Authorization": f"Bearer {audit}"},
    ).json()
    assert logged == [{"index": index, "leaf": given[0]["leaf"]}]

    refused = aino.client.post(f"/v1/me/consents/{consent_id}/withdraw")
    assert refused.status_code == 403
    assert aino.client.get("/v1/me/consents").json()[0]["status"] == "given"

    withdrawn = aino.client.post(f"/v1/me/consents/{consent_id}/withdraw", headers=csrf(aino))
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"
    assert [(h["event_type"], h["actor_role"]) for h in withdrawn.json()["history"]] == [
        ("consent.given", "self"),
        ("consent.withdrawn", "self"),
    ]
    after = consumer.refresh(tokens["refresh_token"])
    assert after.json()["error"] == "invalid_grant"
    types = [e["type"] for e in aino.client.get("/v1/me/log-entries").json()]
    assert types[-2:] == ["consent.given", "consent.withdrawn"]

    again = aino.client.post(f"/v1/me/consents/{consent_id}/withdraw", headers=csrf(aino))
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/consent-not-active"


def test_karin_may_look_at_ainos_consents_but_not_withdraw_them(
    consumer: Consumer, browsers: dict[str, Browser]
) -> None:
    tokens = consent(consumer, browsers["aino"], "aino-virtanen")
    consent_id = tokens["authorization_details"][0]["consent_id"]
    karin = browsers["karin"]
    assert karin.sign_in("karin-lindqvist").status_code == 303
    mandates = karin.client.get("/v1/me/delegations").json()["acting_for"]
    assert [(d["principal_id"], d["kind"], d["scope"]) for d in mandates] == [
        ("aino-virtanen", "mandate", ["view"])
    ]
    seen = karin.client.get("/v1/me/consents", params={"person": "aino-virtanen"}).json()
    assert [c["id"] for c in seen] == [consent_id]
    assert karin.client.get("/v1/me/consents").json() == []

    refused = karin.client.post(f"/v1/me/consents/{consent_id}/withdraw", headers=csrf(karin))
    assert refused.status_code == 403
    assert refused.json()["type"] == "/problems/not-permitted"
    assert consumer.introspect(tokens["access_token"])["active"] is True


def test_matti_withdraws_for_his_son_and_the_history_says_a_guardian_did(
    consumer: Consumer, browsers: dict[str, Browser]
) -> None:
    matti = browsers["matti"]
    tokens = consent(consumer, matti, "matti-korhonen", subject="eelis-korhonen")
    consent_id = tokens["authorization_details"][0]["consent_id"]
    held = matti.client.get("/v1/me/delegations").json()
    assert [(d["principal_name"], d["kind"]) for d in held["acting_for"]] == [
        ("Eelis Korhonen", "guardian")
    ]
    assert matti.client.get("/v1/me/consents").json() == []
    eelis = matti.client.get("/v1/me/consents", params={"person": "eelis-korhonen"}).json()
    assert [c["id"] for c in eelis] == [consent_id]

    withdrawn = matti.client.post(f"/v1/me/consents/{consent_id}/withdraw", headers=csrf(matti))
    assert withdrawn.status_code == 200, withdrawn.text
    last = withdrawn.json()["history"][-1]
    assert (last["event_type"], last["actor_id"], last["actor_role"]) == (
        "consent.withdrawn",
        "matti-korhonen",
        "guardian",
    )


def test_consumer_and_source_see_the_consent_under_different_pseudonyms(
    live: LiveBroker, consumer: Consumer, browsers: dict[str, Browser]
) -> None:
    tokens = consent(consumer, browsers["aino"], "aino-virtanen")
    consent_id = tokens["authorization_details"][0]["consent_id"]
    jwks = KeySet.import_key_set(httpx.get(f"{live.url}/.well-known/jwks.json").json())
    sub = jwt.decode(tokens["access_token"], jwks, algorithms=["Ed25519"]).claims["sub"]

    as_consumer = client_token(live, consumer.client_id, consumer.client_secret, "consents:read")
    held = httpx.get(
        f"{live.url}/v1/consumer/consents", headers={"Authorization": f"Bearer {as_consumer}"}
    ).json()
    assert [(c["id"], c["subject"], c["status"]) for c in held] == [(consent_id, sub, "given")]
    assert "aino" not in str(held).lower()

    with transaction(live.runtime.engine) as session:
        source = clients.register_service_client(
            session, service_id="patient-record", redirect_uris=[], now=datetime.now(UTC)
        )
    as_source = client_token(live, source.client_id, source.client_secret, "source:consents")
    named = httpx.get(
        f"{live.url}/v1/source/consents", headers={"Authorization": f"Bearer {as_source}"}
    ).json()
    assert [c["id"] for c in named] == [consent_id]
    assert named[0]["subject"] != sub
    assert named[0]["fields"] == held[0]["fields"]


def test_an_auditor_counts_consents_per_service_purpose_and_month(
    live: LiveBroker, consumer: Consumer, browsers: dict[str, Browser]
) -> None:
    consent(consumer, browsers["aino"], "aino-virtanen")
    consent(consumer, browsers["matti"], "matti-korhonen", subject="eelis-korhonen")
    with transaction(live.runtime.engine) as session:
        auditor = clients.register_auditor(session, name="Auditor", now=datetime.now(UTC))
    token = client_token(live, auditor.client_id, auditor.client_secret, "audit:read")
    counts = httpx.get(
        f"{live.url}/v1/audit/counts", headers={"Authorization": f"Bearer {token}"}
    ).json()
    month = datetime.now(UTC).strftime("%Y-%m")
    given = [
        c
        for c in counts
        if (c["month"], c["service"], c["event_type"]) == (month, "selfcare-app", "consent.given")
    ]
    assert [(c["purpose"], c["count"]) for c in given] == [("self_care_guidance", 2)]
