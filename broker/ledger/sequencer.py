"""The only way state changes reach the database together with their log entries.

`Ledger.run(work)` hands a unit of work to this process's writer thread and waits until it is
durably committed. The writer group-commits: it takes every unit waiting (up to `max_batch`,
and for at most `max_batch_ms` of work), opens one transaction, locks the log head, runs each
unit in a savepoint, then writes all the batch's leaves, events and Merkle hashes and commits
once. A unit that raises is rolled back alone, with the log indexes it took; the others commit.
So a state change and its log entry commit together or not at all, and throughput does not fall
to one fsync per entry. Several processes serialise on the head row lock (PostgreSQL) or the
write lock (SQLite), so the log stays one gap-free sequence.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from broker.ledger import merkle, store
from broker.ledger.errors import LogUnavailable
from broker.ledger.events import LogRecord, encode_leaf, new_nonce, person_tag
from broker.storage import transaction

T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """Leaves appended in the current batch, not yet written."""

    start: int
    leaves: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def next_index(self) -> int:
        return self.start + len(self.leaves)

    def mark(self) -> int:
        return len(self.leaves)

    def rollback(self, mark: int) -> None:
        del self.leaves[mark:]
        del self.events[mark:]


class LogAppender:
    """Appends entries for one unit of work; valid only while that unit runs."""

    def __init__(self, session: Session, pending: _Pending) -> None:
        self._session = session
        self._pending = pending
        self._open = True

    def append(self, record: LogRecord) -> int:
        """Queue `record` for this batch and return the log index it will have."""
        if not self._open:
            raise LogUnavailable("this unit of work has finished; it cannot append any more")
        subject = None
        if record.person_id is not None:
            secret = store.secret_for(self._session, record.person_id, record.at)
            nonce = new_nonce()
            subject = (nonce, person_tag(secret, nonce))
        index = self._pending.next_index
        self._pending.leaves.append(encode_leaf(record, subject))
        self._pending.events.append(
            {
                "idx": index,
                "event_type": record.type.value,
                "at": record.at,
                "person_id": record.person_id,
                "consent_id": record.consent_id,
                "record": {**record.attributes, **record.private},
            }
        )
        return index

    def close(self) -> None:
        self._open = False


Work = Callable[[Session, LogAppender], T]


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[tuple[Session, LogAppender]]:
    """One state change and its log entries, committed alone in the caller's thread.

    For one-shot callers (the CLI, tests); a server uses `Ledger.run`, which batches.
    """
    with transaction(engine) as session:
        size, _ = store.head(session, lock=True)
        pending = _Pending(size)
        appender = LogAppender(session, pending)
        try:
            yield session, appender
            session.flush()
        finally:
            appender.close()
        if pending.leaves:
            _write(session, pending)


@dataclass
class _Unit(Generic[T]):
    work: Work[T]
    future: Future[T] = field(default_factory=Future)


_STOP = object()


class Ledger:
    """This process's log writer. Start it once; `run` may be called from any thread."""

    def __init__(
        self, engine: Engine, *, max_batch: int = 1000, max_batch_ms: float = 50.0
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._max_batch_s = max_batch_ms / 1000
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.units = 0

    def start(self) -> Ledger:
        """Start the writer thread (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ledger", daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Finish the units already queued, then stop the writer thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def __enter__(self) -> Ledger:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def run(self, work: Work[T], *, timeout: float = 30.0) -> T:
        """Run `work(session, log)` in a group-committed transaction; return once it is durable.

        Raises whatever `work` raised (nothing of it was kept), or LogUnavailable.
        """
        if self._thread is None:
            raise LogUnavailable("the log writer is not running")
        unit: _Unit[T] = _Unit(work)
        self._queue.put(unit)
        try:
            return unit.future.result(timeout)
        except TimeoutError:
            raise LogUnavailable("the log writer did not answer in time") from None

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Unit[Any]] = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            while batch:
                batch = self._commit(batch)

    def _commit(self, batch: list[_Unit[Any]]) -> list[_Unit[Any]]:
        """Commit as much of `batch` as fits in the time bound; return the units left over."""
        outcomes: list[tuple[_Unit[Any], bool, Any]] = []
        deadline = time.monotonic() + self._max_batch_s
        rest: list[_Unit[Any]] = []
        try:
            with transaction(self._engine) as session:
                size, _ = store.head(session, lock=True)
                pending = _Pending(size)
                for position, unit in enumerate(batch):
                    if outcomes and time.monotonic() > deadline:
                        rest = batch[position:]
                        break
                    outcomes.append(self._run_unit(session, pending, unit))
                if pending.leaves:
                    _write(session, pending)
        except Exception as exc:
            # The batch transaction itself failed (database down, lock timeout): nothing of it
            # was kept, so every unit in it fails with the same error.
            _log.warning("log batch of %d failed: %s", len(outcomes), type(exc).__name__)
            for unit, _, _ in outcomes:
                unit.future.set_exception(exc)
            return rest
        self.batches += 1
        self.units += len(outcomes)
        for unit, ok, value in outcomes:
            if ok:
                unit.future.set_result(value)
            else:
                unit.future.set_exception(value)
        return rest

    @staticmethod
    def _run_unit(
        session: Session, pending: _Pending, unit: _Unit[Any]
    ) -> tuple[_Unit[Any], bool, Any]:
        mark = pending.mark()
        appender = LogAppender(session, pending)
        try:
            with session.begin_nested():
                value = unit.work(session, appender)
                session.flush()
        except Exception as exc:
            pending.rollback(mark)
            return unit, False, exc
        finally:
            appender.close()
        return unit, True, value


def _write(session: Session, pending: _Pending) -> None:
    """Write a batch's leaves, event records and Merkle hashes, and move the head."""
    leaf_hashes = [merkle.leaf_hash(leaf) for leaf in pending.leaves]
    reader = store.DbHashReader(session)
    hashes = merkle.stored_hashes_for_batch(pending.start, leaf_hashes, reader)
    store.insert_leaves(
        session, [(pending.start + k, leaf) for k, leaf in enumerate(pending.leaves)]
    )
    store.insert_events(session, pending.events)
    store.insert_hashes(session, merkle.stored_hash_count(pending.start), hashes)
    new_size = pending.next_index
    store.set_head(session, new_size, merkle.tree_hash(new_size, reader))
