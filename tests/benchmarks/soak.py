"""Soak: the demo stack under a steady mixed load for ten minutes; errors, lost log entries, memory.

    make soak                                    # 600 s
    SOAK_SECONDS=60 python -m tests.benchmarks.soak [--write]

The broker and the demo FHIR source each run in a process of their own (tests.benchmarks
.deployment), on SQLite, with the broker's rate limits on. Three demo persons each approve the
self-care app. Then, paced at `--rate` requests a second: releases of lab results with each
person's access token (most of the load), the person's own consent list, a token refresh
every two seconds, and every 8 s one person withdraws their consent and 4 s later gives it again
(a new consent flow, new tokens). The broker's RSS is sampled every 10 s.

At the end it fails (exit 1) unless: no answer was an error (a 403 is expected only for a
release with the token of a withdrawn consent), every 200 release has its `data.released` log
entry and every expected denial its `data.release_denied` (counted in the database), and memory
was flat: the mean RSS of the last two minutes at most 10 % above that of minutes 2 to 4.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from broker.storage import transaction
from tests.benchmarks import report
from tests.benchmarks.deployment import Deployment, deployed

PERSONS = ("aino-virtanen", "karin-lindqvist", "sam-taylor")
CATEGORY = "health.lab_results"
SAMPLE_EVERY = 10.0
MAX_GROWTH = 0.10


@dataclass
class Person:
    """One demo person: their signed-in browser, and the app's tokens for their consent."""

    id: str
    browser: Any
    token: dict[str, Any]
    consent_id: str = ""
    active: bool = True


@dataclass
class Tally:
    """What happened, by kind of request."""

    sent: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    released: int = 0
    denied: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)
    late: int = 0

    def error(self, what: str, response: httpx.Response) -> None:
        """Keep an unexpected answer (the first 20 in full)."""
        if len(self.errors) < 20:
            self.errors.append(f"{what}: {response.status_code} {response.text[:200]}")
        else:
            self.errors.append(what)


class Soak:
    """The load, one request at a time, paced; state follows each person's consent."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.http = httpx.Client(base_url=deployment.broker_url, timeout=30)
        self.tally = Tally()
        self.persons: list[Person] = []

    def join(self, person_id: str) -> None:
        """The person approves the self-care app; their browser stays signed in."""
        from tests.broker.oauth.flows import Browser

        browser = Browser(self.deployment.live())
        person = Person(person_id, browser, {})
        self._give(person)
        self.persons.append(person)

    def _give(self, person: Person) -> None:
        from tests.broker.oauth.flows import new_verifier

        consumer = self.deployment.consumer
        verifier = new_verifier()
        details = [{"type": "omadata_release", "agreement": "selfcare-labs-medications"}]
        url, _ = consumer.authorization_url(details, verifier)
        answered = person.browser.answer(person.browser.open_consent(url, person.id), "approve")
        if answered.status_code not in (302, 303):
            self.tally.error(f"give {person.id}", answered)
            return
        person.token = consumer.exchange(answered.headers["location"], verifier)
        person.active = True
        release = self._release(person)
        person.consent_id = release.json()["released"]["consent_id"] if release else ""

    def _release(self, person: Person) -> httpx.Response | None:
        self.tally.sent["release"] += 1
        answer = self.http.get(
            f"/v1/data/{CATEGORY}",
            headers={"Authorization": f"Bearer {person.token['access_token']}"},
        )
        if answer.status_code == 200 and person.active:
            self.tally.released += 1
            return answer
        if answer.status_code == 403 and not person.active:
            self.tally.denied += 1
            return None
        self.tally.error(f"release {person.id} (active={person.active})", answer)
        return None

    def _read_consents(self, person: Person) -> None:
        self.tally.sent["consent list"] += 1
        answer = person.browser.client.get("/v1/me/consents")
        if answer.status_code != 200:
            self.tally.error(f"consents of {person.id}", answer)

    def _refresh(self, person: Person) -> None:
        self.tally.sent["refresh"] += 1
        answer = self.deployment.consumer.refresh(person.token["refresh_token"])
        if answer.status_code != 200:
            self.tally.error(f"refresh {person.id}", answer)
            return
        person.token = answer.json()

    def _toggle(self, person: Person) -> None:
        if not person.active:
            self.tally.sent["give"] += 1
            self._give(person)
            return
        self.tally.sent["withdraw"] += 1
        me = person.browser.client.get("/v1/me").json()
        answer = person.browser.client.post(
            f"/v1/me/consents/{person.consent_id}/withdraw",
            headers={me["csrf_header"]: me["csrf_token"]},
        )
        if answer.status_code != 200:
            self.tally.error(f"withdraw {person.id}", answer)
            return
        person.active = False

    def step(self, n: int, rate: float) -> None:
        """The n-th request of the schedule."""
        every = max(1, round(rate))  # about once a second
        person = self.persons[n % len(self.persons)]
        if n % (every * 4) == every * 4 - 1:
            # Toggles come in pairs: one person withdraws, and gives again 4 s later.
            toggle = n // (every * 4)
            self._toggle(self.persons[(toggle // 2) % len(self.persons)])
        elif n % (every * 2) == every - 1 and person.active:
            self._refresh(person)
        elif n % 4 == 3:
            self._read_consents(person)
        else:
            self._release(person)

    def run(self, seconds: float, rate: float) -> None:
        """Send requests at `rate` a second for `seconds`, sampling the broker's RSS."""
        start = time.monotonic()
        next_sample = start
        n = 0
        while (now := time.monotonic()) < start + seconds:
            if now >= next_sample:
                self.tally.rss.append((now - start, self.deployment.broker.rss_bytes()))
                next_sample += SAMPLE_EVERY
            due = start + n / rate
            if due > now:
                time.sleep(due - now)
            elif now - due > 1.0:
                self.tally.late += 1
            self.step(n, rate)
            n += 1
        self.tally.rss.append((time.monotonic() - start, self.deployment.broker.rss_bytes()))

    def close(self) -> None:
        """Close the HTTP clients."""
        self.http.close()
        for person in self.persons:
            person.browser.close()


def _log_counts(deployment: Deployment) -> Counter[str]:
    with transaction(deployment.engine, readonly=True) as session:
        rows = session.connection().execute(
            text("SELECT event_type, count(*) FROM log_event GROUP BY event_type")
        )
        return Counter({str(kind): int(n) for kind, n in rows})


def memory(rss: list[tuple[float, int]], seconds: float) -> dict[str, float]:
    """Mean RSS of minutes 2-4 and of the last 2 minutes (for short runs: the second and the
    last quarter), their growth, and the least-squares slope in MB per minute."""
    if seconds >= 360:
        early = [r for t, r in rss if 120 <= t < 240]
        late = [r for t, r in rss if t >= seconds - 120]
    else:
        early = [r for t, r in rss if seconds / 4 <= t < seconds / 2]
        late = [r for t, r in rss if t >= seconds * 3 / 4]
    early = early or [rss[0][1]]
    late = late or [rss[-1][1]]
    mean_early, mean_late = sum(early) / len(early), sum(late) / len(late)
    times = [t for t, _ in rss]
    values = [r for _, r in rss]
    mt, mv = sum(times) / len(times), sum(values) / len(values)
    spread = sum((t - mt) ** 2 for t in times) or 1.0
    slope = sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / spread
    return {
        "early_mb": mean_early / 2**20,
        "late_mb": mean_late / 2**20,
        "growth": mean_late / mean_early - 1,
        "slope_mb_per_min": slope * 60 / 2**20,
        "first_mb": rss[0][1] / 2**20,
        "peak_mb": max(values) / 2**20,
    }


def soak(seconds: float, rate: float, database: str) -> dict[str, Any]:
    """Run the soak; its figures and whether each check passed."""
    with (
        tempfile.TemporaryDirectory(prefix="broker-soak-") as tmp,
        deployed(Path(tmp), database, rate_limits=True) as deployment,
    ):
        load = Soak(deployment)
        try:
            for person in PERSONS:
                load.join(person)
            before = _log_counts(deployment)
            released_before, denied_before = load.tally.released, load.tally.denied
            started = time.monotonic()
            load.run(seconds, rate)
            elapsed = time.monotonic() - started
        finally:
            load.close()
        after = _log_counts(deployment)
    tally = load.tally
    released = tally.released - released_before
    denied = tally.denied - denied_before
    logged_released = after["data.released"] - before["data.released"]
    logged_denied = after["data.release_denied"] - before["data.release_denied"]
    mem = memory(tally.rss, seconds)
    total = sum(tally.sent.values())
    return {
        "seconds": elapsed,
        "requests": total,
        "rate": total / elapsed,
        "sent": dict(tally.sent),
        "errors": tally.errors,
        "released": released,
        "logged_released": logged_released,
        "denied": denied,
        "logged_denied": logged_denied,
        "late": tally.late,
        "memory": mem,
        "rss": tally.rss,
        "checks": {
            "no errors": not tally.errors,
            "every release logged": released == logged_released,
            "every denial logged": denied == logged_denied,
            f"memory flat (growth < {MAX_GROWTH:.0%})": mem["growth"] < MAX_GROWTH,
        },
    }


def _summary(result: dict[str, Any]) -> list[str]:
    mem = result["memory"]
    sent = ", ".join(f"{kind} {n:,}" for kind, n in sorted(result["sent"].items()))
    return [
        f"{result['requests']:,} requests in {result['seconds']:.0f} s "
        f"({result['rate']:.1f}/s): {sent}",
        f"errors: {len(result['errors'])}",
        f"releases answered 200: {result['released']:,}; `data.released` entries added: "
        f"{result['logged_released']:,}",
        f"releases denied (withdrawn consent, expected): {result['denied']:,}; "
        f"`data.release_denied` entries added: {result['logged_denied']:,}",
        f"broker RSS: {mem['first_mb']:.1f} MB at the start, mean {mem['early_mb']:.1f} MB in "
        f"minutes 2-4, mean {mem['late_mb']:.1f} MB in the last 2 minutes "
        f"({mem['growth']:+.1%}), peak {mem['peak_mb']:.1f} MB; slope "
        f"{mem['slope_mb_per_min']:+.2f} MB/min",
        f"requests sent more than 1 s behind the schedule: {result['late']:,}",
    ]


def write(result: dict[str, Any], machine: dict[str, str], rate: float) -> None:
    """The soak section of docs/performance.md."""
    lines = [
        "## Soak",
        "",
        "Written by `tests/benchmarks/soak.py` (`make soak`; `SOAK_SECONDS` shortens it). The "
        "broker and the demo FHIR source in processes of their own, on SQLite, rate limits on; "
        f"three demo persons; requests paced at {rate:g}/s from one client, one at a time: "
        "releases of lab results with each person's access token, the person's consent list, "
        "a token refresh every 2 s, and every 8 s a person withdraws their consent and gives "
        "it again 4 s later (consent flow, new tokens). A release with the token of a withdrawn "
        "consent is expected to be denied (403). The broker's RSS is read from /proc every 10 s.",
        "",
        "| Check | Result |",
        "|---|---|",
    ]
    lines += [
        f"| {name} | {'passed' if ok else '**failed**'} |" for name, ok in result["checks"].items()
    ]
    lines += ["", *[f"- {line}" for line in _summary(result)]]
    if result["errors"]:
        lines += ["", "First errors:", "", *[f"- `{e}`" for e in result["errors"][:10]]]
    rss = ", ".join(f"{t:.0f} s {r / 2**20:.0f}" for t, r in result["rss"])
    lines += ["", f"RSS samples (MB): {rss}"]
    lines += ["", "Machine:", "", *report.machine_lines(machine)]
    report.write_section("soak", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600"))
    )
    parser.add_argument("--rate", type=float, default=30.0, help="requests a second")
    parser.add_argument("--write", action="store_true", help="rewrite the soak section")
    args = parser.parse_args(argv)
    machine = report.machine_info()
    machine["load average at start"] = report.load_average()
    result = soak(args.seconds, args.rate, "sqlite")
    machine["load average at end"] = report.load_average()
    for line in _summary(result):
        print(f"  {line}")
    for error in result["errors"][:20]:
        print(f"  ERROR {error}")
    for name, ok in result["checks"].items():
        print(f"  {'PASSED' if ok else 'FAILED'}  {name}")
    if args.write:
        write(result, machine, args.rate)
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
