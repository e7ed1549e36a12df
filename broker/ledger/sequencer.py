"""The only way state changes reach the database together with their log entries.

`Ledger.run(work)` hands a unit of work to this process's writer thread and waits until it is
durably committed. The writer group-commits: it takes every unit waiting (up to `max_batch`,
lingering a moment for more while units keep arriving), opens one transaction, locks the log
head and runs the units one after another, then writes all the batch's leaves, events and
Merkle hashes and commits once. So a state change and its log entry commit together or not at
all, and throughput does not fall to one fsync per entry. Several processes serialise on the
head row lock (PostgreSQL) or the write lock (SQLite), so the log stays one gap-free sequence.

Units run optimistically, with no savepoint each (a savepoint costs more than a typical unit):
when one raises, the batch is rolled back, that unit fails alone, and the others run again,
each in a savepoint this time, so that any further failure is rolled back alone. Should the
database refuse what a unit appended only when the batch is written, the units are committed
one by one, so that again only that unit fails. A unit may therefore run more than once; only
the run that commits leaves anything in the database.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from broker.errors import DatabaseUnavailable
from broker.ledger import merkle, store
from broker.ledger.errors import LogUnavailable
from broker.ledger.events import NONCE_BYTES, LogRecord, encode_leaf, person_tag
from broker.storage import transaction
from broker.storage.database import unavailable

T = TypeVar("T")
_log = logging.getLogger(__name__)


class _Pending:
    """Records appended in the current batch, not yet written."""

    __slots__ = ("records", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.records: list[LogRecord] = []

    @property
    def next_index(self) -> int:
        return self.start + len(self.records)

    def mark(self) -> int:
        return len(self.records)

    def rollback(self, mark: int) -> None:
        del self.records[mark:]


class LogAppender:
    """Appends entries for one unit of work; valid only while that unit runs."""

    __slots__ = ("_open", "_pending")

    def __init__(self, pending: _Pending) -> None:
        self._pending = pending
        self._open = True

    def append(self, record: LogRecord) -> int:
        """Queue `record` for this batch and return the log index it will have."""
        if not self._open:
            raise LogUnavailable("this unit of work has finished; it cannot append any more")
        pending = self._pending
        index = pending.start + len(pending.records)
        # The leaf bytes are made when the batch is written: the person tags of a whole batch
        # then need one read of the person secrets, not one per entry.
        pending.records.append(record)
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
        appender = LogAppender(pending)
        try:
            yield session, appender
            session.flush()
        finally:
            appender.close()
        if pending.records:
            _write(session, pending)
    store.note_committed_size(engine, pending.next_index)


class _Unit(Generic[T]):
    """One unit of work and, once the writer is done with it, its outcome."""

    __slots__ = ("done", "error", "value", "work")

    def __init__(self, work: Work[T]) -> None:
        self.work = work
        # A bare lock as the completion signal: the caller blocks acquiring it, the writer
        # releases it. Cheaper than a Future, whose condition variable costs more per unit.
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None

    def succeed(self, value: Any) -> None:
        self.value = value
        self.done.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.release()


class _UnitFailed(Exception):
    """Unit `position` of the batch raised `error`; the batch must be rolled back."""

    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(position)
        self.position = position
        self.error = error


_STOP = object()


class Ledger:
    """This process's log writer. Start it once; `run` may be called from any thread.

    A batch is at most `max_batch` units and stops taking more after `max_batch_ms` of work.
    While fewer units wait than recent batches had, the writer lingers up to `linger_ms` for
    them: callers that were just answered are usually about to send their next unit.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 1000,
        max_batch_ms: float = 50.0,
        linger_ms: float = 2.0,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._max_batch_s = max_batch_ms / 1000
        self._linger_s = linger_ms / 1000
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Counters for monitoring and the benchmark: batches and units committed, batches run
        # again after a failure, and seconds spent in committed batches and in their COMMIT.
        self.batches = 0
        self.units = 0
        self.retries = 0
        self.batch_seconds = 0.0
        self.commit_seconds = 0.0
        # Only the writer thread uses it; set after each commit.
        self._frontier: _Frontier | None = None

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

        Raises whatever `work` raised (nothing of it was kept), DatabaseUnavailable, or
        LogUnavailable. `work` may run more than once (see the module's docstring): it must act
        only through `session` and `log`, and what it returns comes from the run that committed.
        """
        if self._thread is None:
            raise LogUnavailable("the log writer is not running")
        unit: _Unit[T] = _Unit(work)
        self._queue.put(unit)
        if not unit.done.acquire(timeout=timeout):
            raise LogUnavailable("the log writer did not answer in time")
        if unit.error is not None:
            translated = unavailable(unit.error)
            if translated is not None and translated is not unit.error:
                raise translated from unit.error
            raise unit.error
        return unit.value  # type: ignore[no-any-return]

    def _loop(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        expected = 1
        stopping = False
        while not stopping:
            first = get()
            if first is _STOP:
                return
            batch: list[_Unit[Any]] = [first]
            deadline = time.monotonic() + self._linger_s
            while len(batch) < self._max_batch:
                try:
                    item = get_nowait()
                except queue.Empty:
                    # Fewer than last time: wait a little for the callers just answered,
                    # sleeping in short steps so that they get the interpreter meanwhile.
                    if len(batch) >= expected or time.monotonic() >= deadline:
                        break
                    time.sleep(0.0001)
                    continue
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            # What the callers sustained lately: a batch cut short by a slow caller should not
            # set the bar for the next, but a load that fell lowers it within a few batches.
            expected = max(len(batch), expected * 7 // 8)
            while batch:
                batch = self._commit(batch)

    def _commit(self, batch: list[_Unit[Any]]) -> list[_Unit[Any]]:
        """Commit as much of `batch` as fits in the time bound; return the units left over."""
        try:
            return self._settle(*self._attempt(batch, careful=False))
        except _UnitFailed as failed:
            # Nothing of the batch was kept. The unit that raised fails alone; the units before
            # it run again with the rest, each in a savepoint now.
            self.retries += 1
            batch[failed.position].fail(failed.error)
            batch = batch[: failed.position] + batch[failed.position + 1 :]
            if not batch:
                return []
            try:
                return self._settle(*self._attempt(batch, careful=True))
            except Exception as exc:
                return self._isolate(batch, exc)
        except Exception as exc:
            return self._isolate(batch, exc)

    def _settle(
        self, done: list[_Unit[Any]], rest: list[_Unit[Any]], outcomes: list[tuple[bool, Any]]
    ) -> list[_Unit[Any]]:
        """Answer the callers of a committed batch; return the units left for the next."""
        self.batches += 1
        self.units += len(done)
        for unit, (ok, value) in zip(done, outcomes, strict=True):
            if ok:
                unit.succeed(value)
            else:
                unit.fail(value)
        return rest

    def _isolate(self, batch: list[_Unit[Any]], exc: Exception) -> list[_Unit[Any]]:
        """The batch failed outside its units' own work; fail only the units to blame."""
        if len(batch) == 1 or isinstance(
            exc, OperationalError | InterfaceError | DatabaseUnavailable
        ):
            # The database itself failed (down, locked, disconnected): nothing was kept, and
            # trying again unit by unit would only fail again, slower.
            _log.warning("log batch of %d failed: %s", len(batch), type(exc).__name__)
            for unit in batch:
                unit.fail(exc)
            return []
        # What one unit appended was refused when the batch was written (a record naming no
        # person, a value too long for its column): commit the units one by one so that only
        # that unit fails.
        self.retries += 1
        for unit in batch:
            self._commit([unit])
        return []

    def _attempt(
        self, batch: list[_Unit[Any]], *, careful: bool
    ) -> tuple[list[_Unit[Any]], list[_Unit[Any]], list[tuple[bool, Any]]]:
        """One transaction over the batch: (units run, units left for later, their outcomes).

        Not careful: the first unit to raise aborts the attempt with _UnitFailed. Careful: each
        unit runs in a savepoint and a failure is rolled back alone.
        """
        outcomes: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        deadline = time.monotonic() + self._max_batch_s
        count = len(batch)
        with transaction(self._engine) as session:
            size, _ = store.head(session, lock=True)
            pending = _Pending(size)
            for position, unit in enumerate(batch):
                if outcomes and time.monotonic() > deadline:
                    count = position
                    break
                mark = pending.mark()
                appender = LogAppender(pending)
                try:
                    if careful:
                        with session.begin_nested():
                            value = unit.work(session, appender)
                            session.flush()
                    else:
                        value = unit.work(session, appender)
                        # Flushed here so that a unit's own writes fail in its own turn.
                        session.flush()
                except Exception as exc:
                    if not careful:
                        raise _UnitFailed(position, exc) from exc
                    pending.rollback(mark)
                    outcomes.append((False, exc))
                    continue
                finally:
                    appender.close()
                outcomes.append((True, value))
            frontier = _write(session, pending, self._frontier) if pending.records else None
            committing = time.perf_counter()
        done = time.perf_counter()
        self.commit_seconds += done - committing
        self.batch_seconds += done - started
        # Only a committed batch's frontier may be trusted by the next one.
        if frontier is not None:
            self._frontier = frontier
        store.note_committed_size(self._engine, pending.next_index)
        return batch[:count], batch[count:], outcomes


class _Frontier:
    """The stored hashes of a log's compact range (the roots of the perfect subtrees that its
    size decomposes into), which are all that the next batch's hashes and root need."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int, hashes: dict[int, bytes]) -> None:
        self.size = size
        self.hashes = hashes


class _BatchHashes:
    """A HashReader over the hashes known in memory, reading any others in the transaction."""

    __slots__ = ("known", "storage")

    def __init__(self, session: Session, known: dict[int, bytes]) -> None:
        self.known = known
        self.storage = store.DbHashReader(session)

    def read_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        """The hashes at `indexes`, in order."""
        known = self.known
        missing = [i for i in indexes if i not in known]
        if missing:
            known.update(zip(missing, self.storage.read_hashes(missing), strict=True))
        return [known[i] for i in indexes]


def _write(session: Session, pending: _Pending, frontier: _Frontier | None = None) -> _Frontier:
    """Write a batch's leaves, event records and Merkle hashes, and move the head.

    `frontier`, if it is that of the log as this transaction found it, spares reading stored
    hashes back. Returns the frontier of the log as the batch leaves it.
    """
    records = pending.records
    start = pending.start
    persons = {r.person_id: r.at for r in reversed(records) if r.person_id is not None}
    secrets = store.secrets_for(session, persons) if persons else {}
    # One read of the system's randomness for the whole batch's nonces.
    randomness = os.urandom(NONCE_BYTES * len(records))
    leaves: list[bytes] = []
    events: list[dict[str, Any]] = []
    for k, record in enumerate(records):
        subject = None
        if record.person_id is not None:
            nonce = randomness[k * NONCE_BYTES : (k + 1) * NONCE_BYTES]
            subject = (nonce, person_tag(secrets[record.person_id], nonce))
        leaves.append(encode_leaf(record, subject))
        events.append(
            {
                "idx": start + k,
                "event_type": record.type.value,
                "at": record.at,
                "person_id": record.person_id,
                "consent_id": record.consent_id,
                "record": {**record.attributes, **record.private},
            }
        )
    leaf_hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    known = dict(frontier.hashes) if frontier is not None and frontier.size == start else {}
    reader = _BatchHashes(session, known)
    hashes = merkle.stored_hashes_for_batch(start, leaf_hashes, reader)
    base = merkle.stored_hash_count(start)
    store.insert_leaves(session, [(start + k, leaf) for k, leaf in enumerate(leaves)])
    store.insert_events(session, events)
    store.insert_hashes(session, base, hashes)
    known.update(enumerate(hashes, base))
    new_size = pending.next_index
    store.set_head(session, new_size, merkle.tree_hash(new_size, reader))
    # tree_hash read exactly the new size's compact range, so `known` holds all of it.
    return _Frontier(new_size, {i: known[i] for i in _compact_range(new_size)})


def _compact_range(size: int) -> list[int]:
    """The stored-hash indexes of the perfect subtrees that `size` records decompose into."""
    return [
        merkle.stored_hash_index(level, (size >> level) - 1)
        for level in reversed(range(size.bit_length()))
        if size >> level & 1
    ]
