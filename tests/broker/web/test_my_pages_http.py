"""The person's pages over plain HTTP on both engines: who may see and change what, CSRF, and
delegations that end taking effect at once. (The browser tests cover the pages themselves.)"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from broker.ledger.sequencer import unit_of_work
from broker.people import delegates
from broker.people.access import delegations_of
from broker.storage import transaction
from broker.storage.tables import Consent, Person
from tests.broker.oauth.flows import Browser
from tests.broker.web.my_story import AINO, EELIS, KARIN, MATTI, SAM, Story, tell
from tests.conftest import LiveBroker

SignIn = Callable[[str], httpx.Client]


@pytest.fixture
def story(live: LiveBroker) -> Story:
    return tell(live)


@pytest.fixture
def person(live: LiveBroker, story: Story) -> Iterator[SignIn]:
    opened: list[Browser] = []

    def signed_in(user: str) -> httpx.Client:
        browser = Browser(live)
        opened.append(browser)
        answer = browser.sign_in(user, next_url="/my")
        assert answer.status_code == 303, answer.text
        return browser.client

    yield signed_in
    for browser in opened:
        browser.close()


def _csrf(client: httpx.Client, path: str = "/my") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def _status(live: LiveBroker, consent_id: str) -> str:
    with transaction(live.runtime.engine, readonly=True) as session:
        row = session.get(Consent, consent_id)
        assert row is not None
        return row.status


def test_the_pages_ask_for_sign_in_and_come_back_afterwards(live: LiveBroker) -> None:
    anonymous = httpx.Client(base_url=live.url)
    assert anonymous.get("/").headers["location"] == "/my"
    for path in ("/my", "/my/activity?service=x", "/my/people", "/my/export.json"):
        answer = anonymous.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/signin?next=%2Fmy")
    assert anonymous.post("/my/view", data={"person": AINO}).status_code == 303
    anonymous.close()


def test_no_change_happens_without_the_sessions_csrf_token(
    live: LiveBroker, story: Story, person: SignIn
) -> None:
    aino = person(AINO)
    assert aino.post(f"/my/consents/{story.labs}/withdraw", data={}).status_code == 400
    wrong = {"csrf": "not-the-token"}
    assert aino.post(f"/my/consents/{story.labs}/withdraw", data=wrong).status_code == 400
    assert _status(live, story.labs) == "given"
    assert aino.post("/my/language", data={**wrong, "language": "en"}).status_code == 400
    assert aino.post("/my/people/delegates", data={**wrong, "person": SAM}).status_code == 400
    with transaction(live.runtime.engine, readonly=True) as session:
        aino_row = session.get(Person, AINO)
        assert aino_row is not None
        assert aino_row.language == "fi"
        assert not [
            d
            for d in delegations_of(session, AINO, datetime.now(UTC)).delegates
            if d.delegate_id == SAM
        ]
    token = _csrf(aino)
    done = aino.post(f"/my/consents/{story.labs}/withdraw", data={"csrf": token})
    assert done.status_code == 303
    assert _status(live, story.labs) == "withdrawn"


def test_another_persons_consent_is_not_found_and_cannot_be_withdrawn(
    live: LiveBroker, story: Story, person: SignIn
) -> None:
    sam = person(SAM)
    token = _csrf(sam)
    for path in (
        f"/my/consents/{story.labs}",
        f"/my/consents/{story.labs}/withdraw",
        f"/my/consents/{story.labs}/receipts/fhir",
        "/my/consents/no-such-consent",
    ):
        answer = sam.get(path)
        assert answer.status_code == 404, path
        assert "We could not find this." in answer.text  # in Sam's language
    refused = sam.post(f"/my/consents/{story.labs}/withdraw", data={"csrf": token})
    assert refused.status_code == 404
    assert _status(live, story.labs) == "given"
    assert sam.post("/my/view", data={"csrf": token, "person": AINO}).status_code == 403
    aino = person(AINO)
    assert aino.get(f"/my/consents/{story.labs}/receipts/pdf").status_code == 404
    assert (
        aino.post("/my/language", data={"csrf": _csrf(aino), "language": "de"}).status_code == 422
    )


def test_a_guardian_exports_the_childs_data_and_only_theirs(
    live: LiveBroker, story: Story, person: SignIn
) -> None:
    matti = person(MATTI)
    switched = matti.post("/my/view", data={"csrf": _csrf(matti), "person": EELIS})
    assert switched.status_code == 303
    archive = matti.get("/my/export.json")
    assert archive.status_code == 200
    assert archive.headers["content-disposition"].startswith('attachment; filename="omadata-eelis')
    body = archive.json()
    assert (body["person"]["id"], body["exported_by"]["id"]) == (EELIS, MATTI)
    assert [c["id"] for c in body["consents"]] == [story.eelis]
    assert {r["consent_id"] for r in body["receipts"]} == {story.eelis}
    assert all(e["consent_id"] in {story.eelis, None} for e in body["log"]["entries"])


def test_an_ended_mandate_stops_showing_the_other_persons_data_at_once(
    live: LiveBroker, story: Story, person: SignIn
) -> None:
    karin = person(KARIN)
    assert karin.post("/my/view", data={"csrf": _csrf(karin), "person": AINO}).status_code == 303
    assert "Aino Virtanen" in karin.get("/my").text.split("<main", 1)[1].split("</section>")[0]
    assert karin.get(f"/my/consents/{story.labs}").status_code == 200
    with transaction(live.runtime.engine, readonly=True) as session:
        mandate = next(d for d in delegations_of(session, AINO, datetime.now(UTC)).delegates)
    with unit_of_work(live.runtime.engine) as (session, log):
        delegates.end_delegation(
            session, log, delegation_id=mandate.id, actor_id=AINO, now=datetime.now(UTC)
        )
    page = karin.get("/my").text
    assert "Du ser dina egna uppgifter." in page
    assert karin.get(f"/my/consents/{story.labs}").status_code == 404
