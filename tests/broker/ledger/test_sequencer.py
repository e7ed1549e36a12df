"""Appends are atomic with their state change, group-committed, and gap-free across processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from broker.consents import service as consents
from broker.errors import InvalidInput
from broker.ledger import merkle, store
from broker.ledger.events import EventType, LogRecord, decode_leaf, leaf_is_about
from broker.ledger.sequencer import Ledger, LogAppender, unit_of_work
from broker.people import service as people
from broker.storage import create_db_engine, transaction
from broker.storage.tables import Consent, LogEvent, Person, PersonSecret
from tests.conftest import NOW


def _record(n: int, person: str | None = None) -> LogRecord:
    return LogRecord(
        type=EventType.DATA_RELEASED,
        at=NOW,
        person_id=person,
        attributes={"consumer": "selfcare-app", "n": n, "fields": ["health.lab_results.value"]},
    )


def _log_state(engine: Engine) -> tuple[int, list[int], bytes]:
    with transaction(engine, readonly=True) as session:
        size, root = store.head(session)
        indexes = [i for i, _ in store.iter_leaves(session)]
    return size, indexes, root


def _root_of_leaves(engine: Engine) -> bytes:
    with transaction(engine, readonly=True) as session:
        hashes = [merkle.leaf_hash(leaf) for _, leaf in store.iter_leaves(session)]
    return merkle.root_from_leaf_hashes(hashes)


def test_a_consent_and_its_log_entry_commit_together(demo: Engine) -> None:
    with Ledger(demo) as ledger:
        record = ledger.run(
            lambda s, log: consents.give_consent(
                s,
                log,
                person_id="aino-virtanen",
                agreement_id="selfcare-immunisations",
                actor_id="aino-virtanen",
                now=NOW,
            )
        )
    with transaction(demo, readonly=True) as session:
        events = session.exec(select(LogEvent).where(LogEvent.consent_id == record.id)).all()
    assert [e.event_type for e in events] == ["consent.given"]


def test_a_unit_that_fails_leaves_neither_state_nor_entry_and_spares_the_others(
    demo: Engine,
) -> None:
    before, _, _ = _log_state(demo)
    start = threading.Barrier(9)
    results: dict[int, object] = {}

    def work(n: int) -> None:
        start.wait()
        try:
            results[n] = ledger.run(
                lambda s, log: (
                    people.add_person(
                        s, display_name=f"P{n}", language="fi", now=NOW, person_id=f"p-{n}"
                    ),
                    log.append(_record(n, f"p-{n}")),
                    _fail_if_odd(n),
                )[1]
            )
        except InvalidInput as exc:
            results[n] = exc

    with Ledger(demo) as ledger:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        start.wait()
        for t in threads:
            t.join()
    size, indexes, root = _log_state(demo)
    assert size == before + 4
    assert indexes == list(range(size))
    assert root == _root_of_leaves(demo)
    with transaction(demo, readonly=True) as session:
        created = set(session.exec(select(Person.id).where(Person.id.startswith("p-"))).all())  # type: ignore[union-attr]
    assert created == {f"p-{n}" for n in range(0, 8, 2)}
    assert all(isinstance(results[n], InvalidInput) for n in range(1, 8, 2))


def _fail_if_odd(n: int) -> None:
    if n % 2:
        raise InvalidInput(f"unit {n} fails on purpose")


def test_concurrent_appends_are_batched_into_few_commits_and_stay_gap_free(
    engine: Engine,
) -> None:
    writers, per_writer = 32, 25
    with Ledger(engine) as ledger:

        def work(w: int) -> None:
            for k in range(per_writer):
                ledger.run(lambda _s, log, n=w * per_writer + k: log.append(_record(n)))

        threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches, units = ledger.batches, ledger.units
    size, indexes, root = _log_state(engine)
    assert size == writers * per_writer == units
    assert indexes == list(range(size))
    assert root == _root_of_leaves(engine)
    assert batches < units / 2, "concurrent appends should share commits"


def test_run_returns_the_index_the_entry_got(engine: Engine) -> None:
    with Ledger(engine) as ledger:
        first = ledger.run(lambda _s, log: log.append(_record(0)))
        second = ledger.run(lambda _s, log: (log.append(_record(1)), log.append(_record(2))))
    assert first == 0
    assert second == (1, 2)


def test_an_appender_cannot_be_used_after_its_unit(engine: Engine) -> None:
    with unit_of_work(engine) as (_, log):
        log.append(_record(0))
    from broker.ledger.errors import LogUnavailable

    with pytest.raises(LogUnavailable):
        log.append(_record(1))


def test_a_stopped_ledger_refuses_work_instead_of_hanging(engine: Engine) -> None:
    from broker.ledger.errors import LogUnavailable

    with pytest.raises(LogUnavailable):
        Ledger(engine).run(lambda _s, log: log.append(_record(0)))


def _append_from_process(url: str, worker: int, count: int) -> None:
    engine = create_db_engine(url)
    with Ledger(engine) as ledger:
        threads = []
        for t in range(4):

            def work(t: int = t) -> None:
                for k in range(count // 4):
                    ledger.run(lambda _s, log, n=worker * 10_000 + k: log.append(_record(n)))

            threads.append(threading.Thread(target=work))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    engine.dispose()


def test_several_processes_appending_at_once_make_one_consistent_log(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    # fork: the children need nothing but the engine URL, and spawn re-imports for seconds.
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_from_process, args=(url, w, 120)) for w in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    size, indexes, root = _log_state(engine)
    assert size == 360
    assert indexes == list(range(360))
    assert root == _root_of_leaves(engine)


def test_no_consent_row_exists_without_its_entry(demo: Engine) -> None:
    with Ledger(demo) as ledger:
        for person in ("aino-virtanen", "sam-taylor", "karin-lindqvist"):
            ledger.run(
                lambda s, log, p=person: consents.give_consent(
                    s,
                    log,
                    person_id=p,
                    agreement_id="selfcare-immunisations",
                    actor_id=p,
                    now=datetime.now(UTC),
                )
            )
    with transaction(demo, readonly=True) as session:
        consent_ids = set(session.exec(select(Consent.id)).all())
        logged = set(
            session.exec(
                select(LogEvent.consent_id).where(LogEvent.event_type == "consent.given")
            ).all()
        )
        total = session.exec(select(func.count()).select_from(LogEvent)).one()
    assert consent_ids == logged
    assert total == 4 + 3  # the demo's four published agreements, then the three consents


def _queued_behind_a_gate(
    ledger: Ledger, works: list[Callable[[Session, LogAppender], object]]
) -> list[object]:
    """Run `works` as one batch: each is queued while the writer is held in a unit of its own."""
    gate, held = threading.Event(), threading.Event()
    results: list[object] = [None] * len(works)

    def hold(_s: Session, _log: LogAppender) -> None:
        held.set()
        gate.wait(30)

    def call(k: int) -> None:
        try:
            results[k] = ledger.run(works[k])
        except Exception as exc:
            results[k] = exc

    holder = threading.Thread(target=ledger.run, args=(hold,))
    holder.start()
    assert held.wait(30)
    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(works))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while ledger._queue.qsize() < len(works) and time.monotonic() < deadline:
        time.sleep(0.01)
    # All queued while the writer is held, so it takes them as one batch once let go.
    assert ledger._queue.qsize() == len(works)
    gate.set()
    holder.join()
    for t in threads:
        t.join()
    return results


def _person_and_entry(n: int, *, fail: bool = False) -> Callable[[Session, LogAppender], int]:
    def work(s: Session, log: LogAppender) -> int:
        people.add_person(s, display_name=f"P{n}", language="fi", now=NOW, person_id=f"p-{n}")
        index = log.append(_record(n, f"p-{n}"))
        _fail_if_odd(1 if fail else 0)
        return index

    return work


def test_a_failing_unit_in_a_batch_fails_alone_and_the_others_commit_once(engine: Engine) -> None:
    works = [_person_and_entry(n, fail=n in (2, 5)) for n in range(8)]
    with Ledger(engine) as ledger:
        results = _queued_behind_a_gate(ledger, works)
        retries = ledger.retries
    assert retries == 1  # the optimistic run, then one careful run with savepoints
    assert isinstance(results[2], InvalidInput)
    assert isinstance(results[5], InvalidInput)
    committed = [n for n in range(8) if n not in (2, 5)]
    # The indexes returned are those of the run that committed: consecutive, in queue order.
    assert [results[n] for n in committed] == list(range(6))
    size, indexes, root = _log_state(engine)
    assert (size, indexes, root) == (6, list(range(6)), _root_of_leaves(engine))
    with transaction(engine, readonly=True) as session:
        created = sorted(session.exec(select(Person.id).where(Person.id.startswith("p-"))).all())  # type: ignore[union-attr]
        logged = sorted(session.exec(select(LogEvent.person_id)).all())  # type: ignore[arg-type]
    assert created == logged == [f"p-{n}" for n in committed]


def test_an_entry_the_database_refuses_fails_only_its_own_unit(engine: Engine) -> None:
    # The tag secret of a person who does not exist cannot be stored (foreign key), which is
    # found only when the batch is written: the batch is then retried unit by unit.
    def nobody(_s: Session, log: LogAppender) -> int:
        return log.append(_record(99, "nobody-at-all"))

    works = [_person_and_entry(0), nobody, _person_and_entry(1)]
    with Ledger(engine) as ledger:
        results = _queued_behind_a_gate(ledger, works)
        retries = ledger.retries
    assert retries == 1
    assert isinstance(results[1], IntegrityError)
    assert results[0] == 0
    assert results[2] == 1
    size, indexes, root = _log_state(engine)
    assert (size, indexes, root) == (2, [0, 1], _root_of_leaves(engine))


def test_a_shredded_secret_is_never_used_again(demo: Engine) -> None:
    person = "aino-virtanen"
    with Ledger(demo) as ledger:
        first = ledger.run(lambda _s, log: log.append(_record(1, person)))
        with transaction(demo, readonly=True) as session:
            old = store.find_secret(session, person)
        with transaction(demo) as session:
            session.execute(delete(PersonSecret).where(PersonSecret.person_id == person))  # type: ignore[arg-type]
        second = ledger.run(lambda _s, log: log.append(_record(2, person)))
    with transaction(demo, readonly=True) as session:
        new = store.find_secret(session, person)
        leaves = dict(store.leaves(session, first, second + 1))
    assert old is not None
    assert new is not None
    assert new != old
    assert leaf_is_about(decode_leaf(leaves[first]), old)
    assert not leaf_is_about(decode_leaf(leaves[second]), old)
    assert leaf_is_about(decode_leaf(leaves[second]), new)


def test_units_of_one_process_share_commits_but_each_person_gets_one_secret(
    demo: Engine,
) -> None:
    persons = ["aino-virtanen", "sam-taylor", "karin-lindqvist"]
    works = [
        (lambda _s, log, p=p, n=n: log.append(_record(n, p))) for n, p in enumerate(persons * 3)
    ]
    with Ledger(demo) as ledger:
        _queued_behind_a_gate(ledger, works)
    with transaction(demo, readonly=True) as session:
        secrets = {p: store.find_secret(session, p) for p in persons}
        events = session.exec(select(LogEvent).where(LogEvent.event_type == "data.released")).all()
        leaves = dict(store.leaves(session, 0, 1000))
    assert len(events) == 9
    for event in events:
        assert event.person_id is not None
        secret = secrets[event.person_id]
        assert secret is not None
        assert leaf_is_about(decode_leaf(leaves[event.idx]), secret)
