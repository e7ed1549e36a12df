"""`make demo`: the whole story over real HTTP, step by step, in plain words.

Everything runs on free loopback ports with a fresh database and fresh keys in a temporary
directory. Each step says what it does and checks what should happen; the first failure stops
the walk with a non-zero exit.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.service import load_catalogue
from broker.demo.browser import ScriptedBrowser
from broker.demo.stack import DemoStack, start_demo
from broker.ledger.sequencer import unit_of_work
from broker.oauth import clients
from broker.people.credentials import set_password
from broker.runtime import open_keystore
from broker.settings import Settings
from broker.storage import create_db_engine, migrate, transaction

LAB_FIELDS = {"test_code", "test_name", "value", "unit", "reference_range", "taken_at"}


class WalkFailed(Exception):
    """A step did not do what it should."""


def check(condition: bool, message: str) -> None:
    """WalkFailed with `message` unless `condition`."""
    if not condition:
        raise WalkFailed(message)


class Walk:
    """The demo story, one numbered step at a time."""

    def __init__(
        self, stack: DemoStack, passwords: dict[str, str], work: Path, say: Callable[[str], None]
    ) -> None:
        self.stack = stack
        self.passwords = passwords
        self.work = work
        self.say = say
        self.broker = stack.broker.url
        self.app = stack.selfcare_app.url
        self.step = 0

    def tell(self, text: str) -> None:
        """Print one step."""
        self.step += 1
        self.say(f"{self.step:2}. {text}")

    def connect(self, user: str, *, leave_out: frozenset[str] = frozenset()) -> ScriptedBrowser:
        """The person opens the self-care app, connects it to OmaData and approves."""
        browser = ScriptedBrowser(self.broker, self.passwords)
        page = browser.follow(
            browser.client.get(f"{self.app}/connect"), user=user, until=f"{self.app}/callback"
        )
        check(
            page.status_code == 200 and "/oauth/authorize" in page.text,
            f"the consent page did not open ({page.status_code})",
        )
        answered = browser.answer_consent(page, "approve", leave_out=leave_out)
        back = browser.follow(answered, user=user, until="\0")
        check(back.status_code == 200, f"the app did not show the result ({back.status_code})")
        return browser

    def received(self) -> list[dict[str, Any]]:
        """What the self-care app holds now."""
        items: list[dict[str, Any]] = httpx.get(f"{self.app}/received", timeout=15).json()["items"]
        return items

    def labs(self) -> dict[str, Any]:
        """The lab-results item of what the app received."""
        return next(i for i in self.received() if i["category"] == "health.lab_results")

    def run(self) -> None:
        """Every step, in order."""
        self.tell(
            f"The broker, two data sources and the self-care app are up: broker {self.broker}, "
            f"app {self.app}. The app is registered as an OAuth client ({self.stack.client_id})."
        )

        aino = self.connect("aino-virtanen")
        labs = self.labs()
        check(labs["status"] == 200, f"Aino's lab results were not released: {labs}")
        release = labs["release"]
        got = set(release["released"]["fields"])
        check(got == LAB_FIELDS, f"expected every lab field, got {sorted(got)}")
        check(len(release["released"]["records"]) > 0, "the source returned no lab results")
        self.tell(
            "Aino signed in, read the consent page and approved. The app received "
            f"{len(release['released']['records'])} lab results with fields {sorted(got)}; "
            f"the release is log entry {release['log_index']}."
        )

        me = aino.client.get(f"{self.broker}/v1/me").json()
        consent_id = release["released"]["consent_id"]
        withdrawn = aino.client.post(
            f"{self.broker}/v1/me/consents/{consent_id}/withdraw",
            headers={me["csrf_header"]: me["csrf_token"]},
        )
        check(
            withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn",
            f"withdrawal failed: {withdrawn.status_code} {withdrawn.text[:200]}",
        )
        self.tell("Aino withdrew her consent.")
        aino.close()

        httpx.post(f"{self.app}/refresh", timeout=30)
        labs = self.labs()
        problem = labs.get("problem") or {}
        check(
            labs["status"] == 403 and problem.get("reason") == "consent_withdrawn",
            f"the release after withdrawal was not denied: {labs}",
        )
        self.tell(
            "The app asked for Aino's data again and got nothing: "
            f'"{problem.get("detail")}" The denial is log entry {problem.get("log_index")}.'
        )

        karin = self.connect(
            "karin-lindqvist", leave_out=frozenset({"health.lab_results.reference_range"})
        )
        karin.close()
        labs = self.labs()
        check(labs["status"] == 200, f"Karin's lab results were not released: {labs}")
        fields = set(labs["release"]["released"]["fields"])
        records = labs["release"]["released"]["records"]
        check(
            "reference_range" not in fields and all("reference_range" not in r for r in records),
            "a field Karin left out was released",
        )
        self.tell(
            "Karin approved but left out the reference ranges. The app received only "
            f"{sorted(fields)}."
        )

        with transaction(self.stack.runtime.engine) as session:
            auditor = clients.register_auditor(session, name="Demo auditor", now=datetime.now(UTC))
        token = httpx.post(
            f"{self.broker}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "audit:read"},
            auth=(auditor.client_id, auditor.client_secret or ""),
        ).json()["access_token"]
        vkey = httpx.get(f"{self.broker}/v1/log/key").text.strip()
        self.stack.runtime.signer.sign_if_grown()
        audit_dir = self.work / "audit"
        fetched = _broker_cli("audit", "fetch", self.broker, str(audit_dir), token=token)
        check(fetched.returncode == 0, f"the auditor could not fetch the log: {fetched.stderr}")
        verified = _broker_cli("audit", "verify", str(audit_dir), "--key", vkey, "--check-leaves")
        check(
            verified.returncode == 0, f"the log did not verify: {verified.stdout}{verified.stderr}"
        )
        self.tell(
            "An auditor fetched the log and verified it offline with only the broker's public key:"
        )
        for line in verified.stdout.strip().splitlines():
            self.say(f"      {line}")


def _broker_cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    # The token goes in the environment, not the command line that `ps` shows.
    env = {**os.environ, "BROKER_AUDIT_TOKEN": token} if token else None
    return subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def prepare(data_dir: Path) -> tuple[Settings, dict[str, str]]:
    """A fresh database with the demo catalogue, and a password for each demo person."""
    settings = Settings(data_dir=data_dir, checkpoint_interval_seconds=0.2)
    engine = create_db_engine(settings.effective_database_url)
    migrate.upgrade(engine)
    spec = read_catalogue(demo_catalogue_path())
    passwords = {p.id: secrets.token_urlsafe(12) for p in spec.persons}
    with unit_of_work(engine) as (session, log):
        load_catalogue(session, log, spec, datetime.now(UTC))
        for person, password in passwords.items():
            set_password(session, person, password, datetime.now(UTC))
    engine.dispose()
    open_keystore(settings)
    return settings, passwords


def main(say: Callable[[str], None] = print) -> int:
    """Run the walk; 0 when every step did what it should."""
    with tempfile.TemporaryDirectory(prefix="omadata-demo-") as tmp:
        work = Path(tmp)
        settings, passwords = prepare(work / "broker")
        stack = start_demo(settings)
        try:
            Walk(stack, passwords, work, say).run()
        except (WalkFailed, httpx.HTTPError, StopIteration, KeyError) as failure:
            say(f"FAILED: {failure!r}")
            return 1
        finally:
            stack.stop()
    say("The whole story worked.")
    return 0
