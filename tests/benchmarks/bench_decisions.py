"""Decision latency with 1,000,000 consents in the database, on SQLite and PostgreSQL.

    python -m tests.benchmarks.bench_decisions [--write] [--consents 1000000] [--samples 10000]

A migrated database with the demo catalogue gets 100 more consumer services, an agreement of
each with each demo source, and then `--consents` consents (10 per person) bulk-loaded straight
into `consent` and `consent_field` (executemany on SQLite, COPY on PostgreSQL), consistent with
broker/storage/tables.py. Then, for random (person, consumer, source, category, purpose)
requests, half of them for a consent that exists, it times what the release path does before
it fetches: `broker.consents.service.decide_release` (one query for the person's consents for
this consumer and source, their fields in the category and whether their agreements ask about
it, then `policies.decide`) in one read-only transaction, as `broker.releases.service` runs it.
And it prints the query plan of that lookup.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert, select, text

from broker.catalogue.files import demo_catalogue_path, read_catalogue
from broker.catalogue.service import load_catalogue
from broker.consents import service as consents
from broker.ledger.sequencer import unit_of_work
from broker.storage import create_db_engine, migrate, transaction
from broker.storage.tables import (
    AgreementField,
    Consent,
    ConsentField,
    DataAgreement,
    Person,
    Service,
)
from policies import ReleaseRequest
from tests.benchmarks import loadgen, report
from tests.benchmarks.deployment import postgres_database

SEED = 20261123
CONSENTS_PER_PERSON = 10
CONSUMERS = 100
TARGET_P99_MS = 2.0
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _world(engine: Engine) -> tuple[list[str], dict[str, list[tuple[str, str]]], list[str]]:
    """The demo's sources, the fields of each source's categories, and its purposes."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.source_id, f.category_code, f.name FROM data_field f "
                "JOIN data_category c ON c.code = f.category_code ORDER BY 1, 2, 3"
            )
        ).all()
        purposes = [r[0] for r in conn.execute(text("SELECT code FROM purpose ORDER BY code"))]
    fields: dict[str, list[tuple[str, str]]] = {}
    for source, category, name in rows:
        fields.setdefault(source, []).append((category, name))
    return sorted(fields), fields, purposes


def _chunks(rows: Iterator[dict[str, Any]], size: int = 50_000) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def populate(engine: Engine, total: int) -> dict[str, Any]:
    """Load the demo catalogue, the extra consumers and agreements, persons and consents."""
    rng = random.Random(SEED)
    with unit_of_work(engine) as (session, log):
        load_catalogue(session, log, read_catalogue(demo_catalogue_path()), NOW)
    sources, fields, purposes = _world(engine)
    consumers = [f"bench-consumer-{i:03}" for i in range(CONSUMERS)]
    persons = [f"bench-person-{i:07}" for i in range(max(1, total // CONSENTS_PER_PERSON))]
    created = NOW - timedelta(days=30)
    agreements: list[dict[str, Any]] = []  # pk, consumer, source, purpose, fields
    with engine.begin() as conn:
        conn.execute(
            insert(Service),
            [
                {
                    "id": c, "is_source": False, "is_consumer": True, "organisation": c,
                    "contact": f"{c}@example.org", "privacy_notice_url": "https://example.org",
                    "name": {"en": c}, "description": {"en": c}, "created_at": created,
                }
                for c in consumers
            ],
        )  # fmt: skip
        for consumer in consumers:
            for source in sources:
                purpose = rng.choice(purposes)
                pk = conn.execute(
                    insert(DataAgreement).returning(DataAgreement.pk),  # type: ignore[arg-type]
                    {
                        "agreement_id": f"{consumer}-{source}", "version": 1,
                        "consumer_id": consumer, "source_id": source, "purpose_code": purpose,
                        "lawful_basis": "consent", "retention_days": 30, "max_consent_days": 365,
                        "title": {"en": consumer}, "published_at": created,
                    },
                ).scalar_one()  # fmt: skip
                asked = rng.sample(fields[source], min(4, len(fields[source])))
                conn.execute(
                    insert(AgreementField),
                    [
                        {"agreement_pk": pk, "category_code": c, "field_name": f, "required": False}
                        for c, f in asked
                    ],
                )
                agreements.append(
                    {"pk": pk, "consumer": consumer, "source": source, "purpose": purpose,
                     "fields": asked}
                )  # fmt: skip
        conn.execute(
            insert(Person),
            [
                {"id": p, "display_name": p, "language": "fi", "created_at": created}
                for p in persons
            ],
        )
    statuses = ["given"] * 8 + ["withdrawn", "expired"]

    def consent_rows() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        for n in range(total):
            person = persons[n // CONSENTS_PER_PERSON]
            agreement = agreements[rng.randrange(len(agreements))]
            consent_id = f"{n:032x}"
            consent = {
                "id": consent_id, "person_id": person, "agreement_pk": agreement["pk"],
                "status": rng.choice(statuses), "valid_from": created,
                "valid_until": created + timedelta(days=365), "given_by_id": person,
                "actor_role": "self", "delegation_id": None, "created_at": created,
                "updated_at": created,
            }  # fmt: skip
            shared = agreement["fields"][: rng.randint(1, len(agreement["fields"]))]
            yield (
                consent,
                [
                    {"consent_id": consent_id, "category_code": c, "field_name": f}
                    for c, f in shared
                ],
            )

    started = time.perf_counter()
    field_count = _bulk_insert(engine, consent_rows())
    return {
        "persons": len(persons),
        "consumers": len(consumers),
        "agreements": len(agreements),
        "consent_fields": field_count,
        "load_s": time.perf_counter() - started,
        "agreement_rows": agreements,
        "person_ids": persons,
    }


CONSENT_COLUMNS = [c.name for c in Consent.__table__.columns]  # type: ignore[attr-defined]
FIELD_COLUMNS = ["consent_id", "category_code", "field_name"]


def _bulk_insert(
    engine: Engine, rows: Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]
) -> int:
    count = 0
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            batch: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
            for item in rows:
                batch.append(item)
                if len(batch) == 100_000:
                    count += _copy(cursor, batch)
                    batch = []
            count += _copy(cursor, batch)
            raw.commit()
        finally:
            raw.close()
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        return count
    with engine.begin() as conn:
        for chunk in _chunks(iter(rows), 50_000):
            conn.execute(insert(Consent), [c for c, _ in chunk])  # type: ignore[arg-type]
            fields = [f for _, fs in chunk for f in fs]
            conn.execute(insert(ConsentField), fields)
            count += len(fields)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return count


def _copy(cursor: Any, batch: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
    if not batch:
        return 0
    with cursor.copy(f"COPY consent ({', '.join(CONSENT_COLUMNS)}) FROM STDIN") as copy:
        for consent, _ in batch:
            copy.write_row([consent[c] for c in CONSENT_COLUMNS])
    fields = [f for _, fs in batch for f in fs]
    with cursor.copy(f"COPY consent_field ({', '.join(FIELD_COLUMNS)}) FROM STDIN") as copy:
        for field in fields:
            copy.write_row([field[c] for c in FIELD_COLUMNS])
    return len(fields)


def _requests(world: dict[str, Any], samples: int) -> list[ReleaseRequest]:
    """Half for a consent that exists (the person's, its agreement's terms), half at random."""
    rng = random.Random(SEED + 1)
    agreements = world["agreement_rows"]
    out = []
    with_consent: list[tuple[str, dict[str, Any]]] = []
    engine_rows = world["sample_consents"]
    for person, pk in engine_rows:
        with_consent.append((person, next(a for a in agreements if a["pk"] == pk)))
    for n in range(samples):
        if n % 2 == 0 and with_consent:
            person, agreement = with_consent[n // 2 % len(with_consent)]
        else:
            person, agreement = rng.choice(world["person_ids"]), rng.choice(agreements)
        category = rng.choice(agreement["fields"])[0]
        out.append(
            ReleaseRequest(
                person_id=person,
                consumer=agreement["consumer"],
                source=agreement["source"],
                category=category,
                purpose=agreement["purpose"],
            )
        )
    return out


def measure(engine: Engine, requests: Sequence[ReleaseRequest]) -> dict[str, Any]:
    """Time decide_release in its own read-only transaction for each request."""
    timings = []
    cpu = []
    permitted = 0
    now = datetime.now(UTC)
    for request in requests:
        started, started_cpu = time.perf_counter(), time.thread_time()
        with transaction(engine, readonly=True) as session:
            decision = consents.decide_release(session, request, now)
        timings.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
        permitted += decision.permitted
    timings.sort()
    cpu.sort()
    return {
        "cpu_p50_ms": loadgen.percentile(cpu, 0.50) * 1000,
        "cpu_p99_ms": loadgen.percentile(cpu, 0.99) * 1000,
        "samples": len(timings),
        "permitted": permitted,
        "p50_ms": loadgen.percentile(timings, 0.50) * 1000,
        "p99_ms": loadgen.percentile(timings, 0.99) * 1000,
        "max_ms": timings[-1] * 1000,
    }


def query_plans(engine: Engine, request: ReleaseRequest) -> list[str]:
    """The plan of each statement decide_release runs for `request`, as the database gives it."""
    ran: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            ran.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with transaction(engine, readonly=True) as session:
            consents.decide_release(session, request, datetime.now(UTC))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    out = []
    with engine.connect() as conn:
        for statement, parameters in ran:
            plan = conn.exec_driver_sql(explain + statement, parameters).all()
            steps = " / ".join(str(row[-1]).strip() for row in plan)
            out.append(f"`{' '.join(statement.split())[:90]}...`: {steps}")
    return out


def bench_database(name: str, url: str, total: int, samples: int) -> dict[str, Any]:
    """Load, then time the decisions on one database."""
    engine = create_db_engine(url)
    try:
        migrate.upgrade(engine)
        world = populate(engine, total)
        print(
            f"  {name}: loaded {total:,} consents and {world['consent_fields']:,} consent fields "
            f"for {world['persons']:,} persons in {world['load_s']:.0f} s"
        )
        picked = sorted({f"{random.Random(SEED + k).randrange(total):032x}" for k in range(500)})
        with engine.connect() as conn:
            world["sample_consents"] = [
                (r[0], r[1])
                for r in conn.execute(
                    select(Consent.person_id, Consent.agreement_pk).where(  # type: ignore[call-overload]
                        Consent.status == "given",
                        Consent.id.in_(picked),  # type: ignore[attr-defined]
                    )
                )
            ]
        requests = _requests(world, samples)
        measure(engine, requests[: min(500, samples)])  # warm the caches and the pool
        result = measure(engine, requests)
        result["plans"] = query_plans(engine, requests[0])
        result.update(name=name, consents=total, **{k: world[k] for k in (
            "persons", "consumers", "agreements", "consent_fields", "load_s")})  # fmt: skip
        return result
    finally:
        engine.dispose()


INTRO = """\
## Decision latency with 1,000,000 consents

Written by `tests/benchmarks/bench_decisions.py`. A freshly migrated database with the demo
catalogue, 100 more consumer services and an agreement of each with each demo source (asking
for up to 4 fields), then {consents:,} consents of {persons:,} persons (10 each, to random
agreements; 80 % given, 10 % withdrawn, 10 % expired) with {fields:,} consent fields,
bulk-loaded straight into `consent` and `consent_field` (executemany on SQLite, COPY on
PostgreSQL; `ANALYZE` after). The consents carry no history rows and the audit log holds only
the catalogue's entries: the decision reads neither. Then {samples:,} requests, half for a
consent that exists (its person, consumer, source, purpose and one of its categories), half
for a random person and agreement, each timed around
`broker.consents.service.decide_release` in its own read-only transaction (`transaction(engine,
readonly=True)`), which is what the release path does before the fetch: the person's consents
for this consumer and source with their fields in the category and whether their agreements ask
about it, one indexed query, then `policies.decide`. One process, no concurrency. The same is
measured first over a database of 10,000 consents: the yardstick for what size costs.

Target: p99 at most 2 ms.
"""

HEADER = [
    "Database",
    "Consents",
    "Load",
    "Samples",
    "Permitted",
    "p50 ms",
    "p99 ms",
    "max ms",
    "CPU p50 ms",
    "CPU p99 ms",
    "Target",
]


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["name"],
        f"{row['consents']:,}",
        f"{row['load_s']:.0f} s",
        f"{row['samples']:,}",
        f"{row['permitted']:,}",
        f"{row['p50_ms']:.2f}",
        f"{row['p99_ms']:.2f}",
        f"{row['max_ms']:.1f}",
        f"{row['cpu_p50_ms']:.2f}",
        f"{row['cpu_p99_ms']:.2f}",
        "met" if row["p99_ms"] <= TARGET_P99_MS else "**not met**",
    ]


ANALYSIS = """\
### Reading the figures

Every lookup uses an index (the plans above; on PostgreSQL the 200-odd `data_agreement` rows are
scanned, which its planner prefers at that size: with thousands of agreement versions an index
on `data_agreement (consumer_id, source_id)` would be wanted, a migration 0005 not added here).
The row over a database of 10,000 consents, measured in the same run, is the yardstick: what
the million consents add is the difference between the two rows, and the CPU columns (this
thread's CPU time per decision, so without the PostgreSQL server's share) show how much of
the wall time was work. Where the wall p99 is far above the CPU p99, the rest is the thread
waiting for a core on this shared 2-core machine (or, on PostgreSQL, for the server's process),
not the database's size. On PostgreSQL a decision is three round trips to the server (BEGIN
at REPEATABLE READ for the read-only snapshot, the one query, COMMIT; the pool does not ping
on checkout: a connection lost with a restarted server fails one request with a 503 and the
pool reconnects), each with the driver's and SQLAlchemy's work on the broker's side.
"""


def write(rows: list[dict[str, Any]], machine: dict[str, str], samples: int) -> None:
    """The decisions section of docs/performance.md."""
    first = rows[-1]
    lines = [
        INTRO.format(
            consents=first["consents"],
            persons=first["persons"],
            fields=first["consent_fields"],
            samples=samples,
        )
    ]
    lines += report.table(HEADER, [_cells(row) for row in rows])
    lines += ["", "Query plans (the statements decide_release ran for one request):", ""]
    for row in rows:
        if row["consents"] == first["consents"]:
            lines += [f"- {row['name']}:"] + [f"  - {plan}" for plan in row["plans"]]
    if any(row["p99_ms"] > TARGET_P99_MS for row in rows if row["consents"] == first["consents"]):
        lines += ["", ANALYSIS]
    lines += ["", "Machine:", "", *report.machine_lines(machine)]
    lines += [
        "",
        "Rerun this section alone: `python -m tests.benchmarks.bench_decisions --write`.",
    ]
    report.write_section("decisions", "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Load and measure on SQLite (and PostgreSQL when configured); print, and record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--consents", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument(
        "--baseline", type=int, default=10_000, help="consents of the small comparison database"
    )
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--write", action="store_true", help="rewrite the decisions section")
    args = parser.parse_args(argv)
    machine = report.machine_info()
    machine["load average at start"] = report.load_average()
    started = time.perf_counter()
    rows = []
    # The same measurement over a small database first: what is left is what size costs.
    sizes = [n for n in (args.baseline, args.consents) if n]
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'broker.sqlite3'}"
            rows.append(bench_database("SQLite", url, size, args.samples))
    postgres = os.environ.get("BROKER_TEST_POSTGRES_URL", "")
    if postgres and not args.sqlite_only:
        for size in sizes:
            with postgres_database(postgres) as url:
                rows.append(bench_database("PostgreSQL", url, size, args.samples))
    machine["load average at end"] = report.load_average()
    machine["run time"] = f"{time.perf_counter() - started:.0f} s"
    report.print_table(HEADER, [_cells(row) for row in rows])
    for row in [r for r in rows if r["consents"] == sizes[-1]]:
        print(f"  {row['name']} plans:")
        for plan in row["plans"]:
            print(f"    {plan}")
    if args.write:
        write(rows, machine, args.samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
