"""Webhook notifications over real HTTP: signed, retried with backoff, durable across restarts,
delivered once by several brokers, and sent for expiries the background sweep marks."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from sqlalchemy import Engine
from sqlmodel import col, select

from broker.consents import service as consents
from broker.ledger.sequencer import unit_of_work
from broker.notifications import outbox
from broker.notifications.sender import CONTENT_TYPE, TYPE
from broker.oauth import clients
from broker.storage import create_db_engine, transaction
from broker.storage.tables import Consent, ConsentEvent, LogEvent, NotificationOutbox
from keys import KeyUse
from tests.broker.notifications.receiver import Receiver
from tests.broker.oauth.flows import (
    LABS,
    REDIRECT_URI,
    Browser,
    Consumer,
    give_passwords,
    new_verifier,
    redirect_params,
)
from tests.conftest import LiveBroker, free_port

AGREEMENT = "selfcare-labs-medications"
FAST = {
    "notify_poll_seconds": 0.05,
    "notify_retry_base_seconds": 0.5,
    "expiry_interval_seconds": 3600.0,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().serve()
    yield hook
    hook.stop()


def add_client(engine: Engine, webhook_url: str | None) -> clients.IssuedClient:
    """A self-care app client at the broker, with `webhook_url` registered."""
    with transaction(engine) as session:
        return clients.register_service_client(
            session,
            service_id="selfcare-app",
            redirect_uris=[REDIRECT_URI],
            now=datetime.now(UTC),
            webhook_url=webhook_url,
        )


def give(engine: Engine, person: str) -> str:
    """A consent of `person` to the labs agreement, given now; its id."""
    with unit_of_work(engine) as (session, log):
        return consents.give_consent(
            session,
            log,
            person_id=person,
            agreement_id=AGREEMENT,
            actor_id=person,
            now=datetime.now(UTC),
        ).id


def withdraw(engine: Engine, consent_id: str, person: str) -> None:
    with unit_of_work(engine) as (session, log):
        consents.withdraw_consent(
            session, log, consent_id=consent_id, actor_id=person, now=datetime.now(UTC)
        )


def outbox_rows(engine: Engine) -> list[NotificationOutbox]:
    with transaction(engine, readonly=True) as session:
        return list(session.exec(select(NotificationOutbox)).all())


def outbox_rows_in(session: Any) -> list[NotificationOutbox]:
    return list(session.exec(select(NotificationOutbox)).all())


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(jws.extract_compact(token.encode()).payload)
    return claims


def test_a_withdrawal_sends_one_signed_notification_with_the_consumers_subject(
    demo: Engine, tmp_path: Path, receiver: Receiver
) -> None:
    with LiveBroker(demo, tmp_path / "broker", **FAST) as live:
        receiver.brokers = [live.url]
        give_passwords(live, "aino-virtanen")
        issued = add_client(demo, receiver.url)
        add_client(demo, None)  # another client of the same app, with no webhook: not told
        assert issued.client_secret is not None
        consumer = Consumer(live, issued.client_id, issued.client_secret)
        browser = Browser(live)
        try:
            verifier = new_verifier()
            url, _ = consumer.authorization_url(LABS, verifier)
            answered = browser.answer(browser.open_consent(url, "aino-virtanen"), "approve")
            redirect_params(answered)
            token = consumer.exchange(answered.headers["location"], verifier)
            consent_id = token["authorization_details"][0]["consent_id"]
            assert outbox_rows(demo) == []  # giving a consent is not notified
            csrf = browser.client.get("/v1/me").json()["csrf_token"]
            withdrawn = browser.client.post(
                f"/v1/me/consents/{consent_id}/withdraw", headers={"X-CSRF-Token": csrf}
            )
            assert withdrawn.status_code == 200, withdrawn.text
        finally:
            browser.close()

        [got] = receiver.wait_for(1)
        time.sleep(0.3)  # several polls later: still one
        assert len(receiver.requests) == 1
        assert got.error is None, got.error
        assert got.content_type == CONTENT_TYPE
        assert got.header["typ"] == TYPE
        assert got.header["alg"] == "Ed25519"
        assert got.header["kid"] == live.runtime.keystore.current(KeyUse.NOTIFY).kid
        [row] = outbox_rows(demo)
        claims = got.claims
        assert claims["iss"] == live.url
        assert claims["aud"] == issued.client_id
        assert claims["jti"] == row.id
        assert claims["event"] == "consent.withdrawn"
        assert claims["consent_id"] == consent_id
        assert claims["agreement"] == AGREEMENT
        # The consumer can match the person: the same pairwise subject as its access tokens.
        assert claims["sub"] == unverified_claims(token["access_token"])["sub"]
        assert abs(claims["at"] - time.time()) < 30
        assert "aino" not in json.dumps(claims).lower()
        assert "Virtanen" not in json.dumps(claims)
        assert (row.attempts, row.next_attempt_at, row.failed_at) == (1, None, None)
        assert row.delivered_at is not None


def test_a_change_that_rolls_back_notifies_nobody(demo: Engine, receiver: Receiver) -> None:
    add_client(demo, receiver.url)
    consent_id = give(demo, "aino-virtanen")
    with pytest.raises(RuntimeError), unit_of_work(demo) as (session, log):
        consents.withdraw_consent(
            session, log, consent_id=consent_id, actor_id="aino-virtanen", now=datetime.now(UTC)
        )
        assert len(outbox_rows_in(session)) == 1  # enqueued beside the change...
        raise RuntimeError("the transaction fails after the change")
    assert outbox_rows(demo) == []  # ...and gone with it


def test_failed_deliveries_are_retried_with_growing_delays(
    demo: Engine, tmp_path: Path, receiver: Receiver
) -> None:
    base = FAST["notify_retry_base_seconds"]
    receiver.script = [500, 500]
    with LiveBroker(demo, tmp_path / "broker", **FAST) as live:
        receiver.brokers = [live.url]
        add_client(demo, receiver.url)
        withdraw(demo, give(demo, "aino-virtanen"), "aino-virtanen")
        first, second, third = receiver.wait_for(3)
        time.sleep(0.3)
    assert len(receiver.requests) == 3
    assert [r.status for r in (first, second, third)] == [500, 500, 200]
    assert all(r.error is None for r in (first, second, third))
    assert len({r.claims["jti"] for r in (first, second, third)}) == 1  # one notification
    wait_1, wait_2 = second.at - first.at, third.at - second.at
    # base·2^(n-1) less up to a quarter of jitter: [0.75, 1] base, then [1.5, 2] base.
    assert 0.75 * base <= wait_1 < 1.0 * base + 1.0
    assert 1.5 * base <= wait_2 < 2.0 * base + 1.0
    assert wait_2 > wait_1
    [row] = outbox_rows(demo)
    assert row.attempts == 3
    assert row.delivered_at is not None
    assert row.last_error == "HTTP 500"  # what failed last, nothing of the body


def test_a_notification_is_given_up_after_the_last_attempt(
    demo: Engine, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script = [503] * 10
    settings = {**FAST, "notify_retry_base_seconds": 0.05, "notify_max_attempts": 3}
    with LiveBroker(demo, tmp_path / "broker", **settings) as live:
        receiver.brokers = [live.url]
        add_client(demo, receiver.url)
        withdraw(demo, give(demo, "aino-virtanen"), "aino-virtanen")
        receiver.wait_for(3)
        wait_until(lambda: outbox_rows(demo)[0].failed_at is not None)
        time.sleep(0.5)
    assert len(receiver.requests) == 3
    [row] = outbox_rows(demo)
    assert (row.attempts, row.next_attempt_at, row.delivered_at) == (3, None, None)
    assert row.last_error == "HTTP 503"


def test_a_notification_pending_when_the_broker_stops_arrives_after_a_restart(
    demo: Engine, tmp_path: Path
) -> None:
    port = free_port()  # the receiver is down: nothing listens here yet
    hook = Receiver()
    settings = {**FAST, "notify_retry_base_seconds": 0.2}
    with LiveBroker(demo, tmp_path / "broker", **settings):
        add_client(demo, f"http://127.0.0.1:{port}/hook")
        withdraw(demo, give(demo, "aino-virtanen"), "aino-virtanen")
        wait_until(lambda: outbox_rows(demo)[0].attempts >= 2)
    [pending] = outbox_rows(demo)
    assert pending.delivered_at is None
    assert pending.next_attempt_at is not None
    assert pending.last_error == "connection failed"

    restarted = LiveBroker(demo, tmp_path / "broker", **settings)  # same database and keys
    hook.brokers = [restarted.url]
    hook.serve(port)
    try:
        with restarted:
            [got] = hook.wait_for(1)
            time.sleep(0.3)
    finally:
        hook.stop()
    assert len(hook.requests) == 1
    assert got.error is None, got.error
    assert got.claims["jti"] == pending.id
    assert got.claims["event"] == "consent.withdrawn"
    [row] = outbox_rows(demo)
    assert row.delivered_at is not None
    assert row.attempts == pending.attempts + 1


def test_the_sweep_marks_an_expired_consent_logs_it_and_notifies(
    demo: Engine, tmp_path: Path, receiver: Receiver
) -> None:
    add_client(demo, receiver.url)
    past = give(demo, "aino-virtanen")
    current = give(demo, "sam-taylor")
    with transaction(demo) as session:
        consent = session.get(Consent, past)
        assert consent is not None
        consent.valid_until = datetime.now(UTC) - timedelta(seconds=1)  # time has passed
        session.add(consent)
    settings = {**FAST, "expiry_interval_seconds": 0.2}
    with LiveBroker(demo, tmp_path / "broker", **settings) as live:
        receiver.brokers = [live.url]
        [got] = receiver.wait_for(1)
        assert live.runtime.notifier.expire_due() == 0  # nothing left to mark
    assert got.error is None, got.error
    assert (got.claims["event"], got.claims["consent_id"]) == ("consent.expired", past)
    with transaction(demo, readonly=True) as session:
        statuses = {c.id: c.status for c in session.exec(select(Consent)).all()}
        assert statuses == {past: "expired", current: "given"}
        last = session.exec(
            select(ConsentEvent)
            .where(ConsentEvent.consent_id == past)
            .order_by(col(ConsentEvent.seq).desc())
        ).first()
        assert last is not None
        assert (last.event_type, last.actor_role, last.actor_id) == (
            "consent.expired",
            "system",
            None,
        )
        logged = session.exec(
            select(LogEvent).where(LogEvent.event_type == "consent.expired")
        ).all()
        assert [e.consent_id for e in logged] == [past]


def test_two_brokers_on_one_database_deliver_each_notification_once(
    demo: Engine, tmp_path: Path
) -> None:
    hook = Receiver(delay=0.1).serve()  # slow, so that both brokers' claims overlap
    add_client(demo, hook.url)
    for _ in range(12):
        withdraw(demo, give(demo, "aino-virtanen"), "aino-virtanen")
    expired = [give(demo, person) for person in ("sam-taylor", "karin-lindqvist")]
    with transaction(demo) as session:
        for consent_id in expired:
            consent = session.get(Consent, consent_id)
            assert consent is not None
            consent.valid_until = datetime.now(UTC) - timedelta(seconds=1)
            session.add(consent)
    # The second broker has its own engine, as a second process would.
    other = create_db_engine(demo.url.render_as_string(hide_password=False))
    settings = {**FAST, "notify_batch_size": 2, "expiry_interval_seconds": 0.2}
    try:
        first = LiveBroker(demo, tmp_path / "broker", **settings)
        second = LiveBroker(other, tmp_path / "broker", **settings)
        hook.brokers = [first.url, second.url]
        with first, second:
            hook.wait_for(14)
            time.sleep(0.5)  # any duplicate would arrive meanwhile
            delivered = [first.runtime.notifier.delivered, second.runtime.notifier.delivered]
    finally:
        hook.stop()
        other.dispose()
    assert all(r.error is None for r in hook.requests)
    jtis = Counter(r.claims["jti"] for r in hook.requests)
    assert len(jtis) == 14
    assert set(jtis.values()) == {1}
    assert {r.claims["iss"] for r in hook.requests} == {first.url, second.url}
    assert sum(delivered) == 14
    assert min(delivered) > 0  # both brokers took part
    rows = outbox_rows(demo)
    assert {r.id for r in rows} == set(jtis)
    assert all(r.attempts == 1 and r.delivered_at is not None for r in rows)
    with transaction(demo, readonly=True) as session:
        logged = session.exec(
            select(LogEvent.consent_id).where(LogEvent.event_type == "consent.expired")
        ).all()
    assert sorted(logged) == sorted(expired)  # each marked once, by one of the two


def test_concurrent_claims_never_share_a_row(demo: Engine) -> None:
    for _ in range(40):
        add_client(demo, "http://127.0.0.1:9/hook")
    withdraw(demo, give(demo, "aino-virtanen"), "aino-virtanen")  # one row per client
    claimed: list[str] = []

    def claim_all() -> None:
        while batch := outbox.claim(demo, datetime.now(UTC), limit=1, lease=timedelta(minutes=5)):
            claimed.extend(item.id for item in batch)

    threads = [threading.Thread(target=claim_all) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(claimed) == 40
    assert len(set(claimed)) == 40


# SKIP LOCKED is PostgreSQL's; SQLite serialises claims at BEGIN, so only PostgreSQL runs this.
@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_row_locked_by_another_claim_is_skipped_not_waited_for(demo: Engine) -> None:
    for _ in range(3):
        add_client(demo, "http://127.0.0.1:9/hook")
    withdraw(demo, give(demo, "aino-virtanen"), "aino-virtanen")
    with transaction(demo) as session:
        held = session.exec(
            select(NotificationOutbox)
            .order_by(col(NotificationOutbox.id))
            .limit(1)
            .with_for_update()
        ).first()
        assert held is not None
        got: list[outbox.Claimed] = []
        claiming = threading.Thread(
            target=lambda: got.extend(
                outbox.claim(demo, datetime.now(UTC), limit=10, lease=timedelta(minutes=5))
            )
        )
        claiming.start()
        claiming.join(timeout=5)
        assert not claiming.is_alive(), "the claim waited for the locked row"
    claiming.join()
    assert len(got) == 2
    assert held.id not in {item.id for item in got}
