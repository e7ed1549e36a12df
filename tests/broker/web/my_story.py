"""The story behind the person's pages, told through the real use cases on a live broker.

Aino has consented to the self-care app (leaving one optional lab field out), withdrawn her
vaccination consent, and said no to the research register. Matti, Eelis's guardian, has
consented for Eelis. With `releases`, the app has fetched Aino's lab results and medicines
through a real FHIR source on loopback, was refused her vaccinations after she withdrew, and
once found the source gone; the research register was refused, as Aino had said no. Every
entry is in the log and covered by a signed checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session

from broker.consents import service as consents
from broker.demo import CONNECTORS_FILE
from broker.demo.sources import fhir
from broker.demo.stack import SOURCE_AUDIENCES, Served
from broker.errors import ReleaseDenied, SourceFailed
from broker.ledger import reader, store
from broker.ledger.sequencer import LogAppender
from broker.people.credentials import set_password
from broker.releases.service import DataRequest, release
from broker.storage import transaction
from connectors.base import Connector
from connectors.config import load_connectors
from policies import FieldRef
from tests.conftest import LiveBroker

PASSWORD = "correct horse battery staple"
AINO, MATTI, EELIS, KARIN, SAM = (
    "aino-virtanen",
    "matti-korhonen",
    "eelis-korhonen",
    "karin-lindqvist",
    "sam-taylor",
)
LABS_AGREEMENT = "selfcare-labs-medications"
LEFT_OUT = FieldRef("health.lab_results", "reference_range")


@dataclass
class Story:
    """What happened, by id and log index."""

    labs: str
    vaccinations: str
    research: str
    eelis: str
    released: list[int] = field(default_factory=list)
    denied: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _labs_fields() -> list[FieldRef]:
    return [
        FieldRef("health.lab_results", f) for f in ("test_name", "value", "unit", "taken_at")
    ] + [FieldRef("health.medications", f) for f in ("medication_name", "dosage", "atc_code")]


def tell(live: LiveBroker, *, releases: bool = False) -> Story:
    """Give, withdraw and refuse the consents (and make releases); wait until all is signed."""
    runtime = live.runtime
    now = datetime.now(UTC)
    with transaction(runtime.engine) as session:
        for person in (AINO, MATTI, KARIN, SAM):
            set_password(session, person, PASSWORD, now)

    def consents_of_the_story(session: Session, log: LogAppender) -> Story:
        labs = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id=LABS_AGREEMENT,
            fields=_labs_fields(),
            actor_id=AINO,
            now=now,
        )
        vaccinations = consents.give_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="selfcare-immunisations",
            actor_id=AINO,
            now=now,
        )
        consents.withdraw_consent(session, log, consent_id=vaccinations.id, actor_id=AINO, now=now)
        research = consents.refuse_consent(
            session,
            log,
            person_id=AINO,
            agreement_id="research-diagnoses",
            actor_id=AINO,
            now=now,
        )
        eelis = consents.give_consent(
            session,
            log,
            person_id=EELIS,
            agreement_id="selfcare-immunisations",
            actor_id=MATTI,
            now=now,
        )
        return Story(labs.id, vaccinations.id, research.id, eelis.id)

    story: Story = runtime.ledger.run(consents_of_the_story)
    if releases:
        _release(live, story)
    wait_until_signed(live)
    return story


def _release(live: LiveBroker, story: Story) -> None:
    runtime = live.runtime
    source = Served(
        fhir.create_app(
            live.url, SOURCE_AUDIENCES["patient-record"], f"{live.url}/.well-known/jwks.json"
        )
    ).start()
    connectors = load_connectors(
        CONNECTORS_FILE, base_urls={"patient-record": f"{source.url}/fhir"}, timeout=10
    )

    def ask(category: str, consent_id: str, sources: Mapping[str, Connector]) -> None:
        ask_as(DataRequest("selfcare-app", (consent_id,), category), sources)

    def ask_as(request: DataRequest, sources: Mapping[str, Connector]) -> None:
        try:
            done = release(
                runtime.engine,
                runtime.ledger,
                runtime.keystore,
                sources,
                issuer=live.settings.effective_public_url,
                request=request,
                now=datetime.now(UTC),
            )
            story.released.append(done.log_index)
        except ReleaseDenied as denied:
            story.denied.append(denied.log_index)
        except SourceFailed as failed:
            story.failed.append(failed.log_index)

    try:
        ask("health.lab_results", story.labs, connectors)
        ask("health.medications", story.labs, connectors)
        ask("health.immunisations", story.vaccinations, connectors)
        ask("health.lab_results", story.labs, {})
        research = DataRequest("research-register", (story.research,), "health.diagnoses")
        ask_as(research, connectors)
    finally:
        for connector in connectors.values():
            connector.close()
        source.stop()
    assert (len(story.released), len(story.denied), len(story.failed)) == (2, 2, 1)


def wait_until_signed(live: LiveBroker, timeout: float = 10) -> None:
    """Wait until a signed checkpoint covers every entry of the log."""
    deadline = time.monotonic() + timeout
    while True:
        with transaction(live.runtime.engine, readonly=True) as session:
            size = reader.tree_size(session)
            latest = store.latest_checkpoint(session)
            if latest is not None and latest.size >= size:
                return
        if time.monotonic() > deadline:
            raise AssertionError("no checkpoint covers the log")
        time.sleep(0.05)
