"""Signing checkpoints: only of a log that verifies, and never inconsistent with the last one.

On start `verify_stored_log` rebuilds every stored hash from the leaves and checks the head and
every stored checkpoint against the rebuild. `sign_if_grown` then signs a new checkpoint when
the tree has grown, after proving it consistent with the previous checkpoint.

Several broker processes may sign the same log. They take turns (a PostgreSQL advisory lock;
on SQLite the write lock every writing transaction takes), each reading the newest checkpoint
once it has its turn, so checkpoints only ever grow; and the timers skip a tick when another
process signed moments ago, so N processes sign about as often as one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from broker.ledger import merkle, store
from broker.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    sign_checkpoint,
)
from broker.ledger.errors import LogIntegrityError
from broker.ledger.note import Ed25519Signer, NoteError, Verifier
from broker.storage import transaction
from keys import KeyStore, KeyUse

_log = logging.getLogger(__name__)


def log_verifiers(keystore: KeyStore, origin: str) -> list[Verifier]:
    """Note verifiers for every log key ever used, retired ones included."""
    return [Verifier(origin, info.public_key) for info in keystore.public_keys(KeyUse.LOG)]


class CheckpointSigner:
    """Signs checkpoints of one log with the log keys in force."""

    def __init__(self, engine: Engine, keystore: KeyStore, origin: str) -> None:
        self._engine = engine
        self._keys = keystore
        self._origin = origin

    def verify_stored_log(self) -> int:
        """Rebuild the tree from the leaves and check it against everything stored; the size.

        Raises LogIntegrityError naming the first disagreement.
        """
        rebuilt = merkle.MemoryHashStore()
        with transaction(self._engine, readonly=True) as session:
            size, root = store.head(session)
            expected = 0
            chunk: list[bytes] = []
            for index, leaf in store.iter_leaves(session):
                if index != expected:
                    raise LogIntegrityError(f"log entry {expected} is missing")
                chunk.append(merkle.leaf_hash(leaf))
                expected += 1
                if len(chunk) == 1000:
                    rebuilt.append_records(chunk)
                    chunk = []
            rebuilt.append_records(chunk)
            if expected != size:
                raise LogIntegrityError(f"the head says {size} entries but {expected} are stored")
            stored = store.stored_hash_rows(session, 0, merkle.stored_hash_count(size) + 1)
            if len(stored) != merkle.stored_hash_count(size):
                raise LogIntegrityError("stored Merkle hashes are missing or extra")
            mine = rebuilt.read_hashes(range(len(stored)))
            for (position, stored_hash), rebuilt_hash in zip(stored, mine, strict=True):
                if stored_hash != rebuilt_hash:
                    level, n = merkle.split_stored_hash_index(position)
                    raise LogIntegrityError(
                        f"stored hash at level {level}, position {n} does not match the leaves"
                    )
            if size and merkle.tree_hash(size, rebuilt) != root:
                raise LogIntegrityError("the head's root does not match the leaves")
            verifiers = log_verifiers(self._keys, self._origin)
            for cp in store.checkpoints(session):
                if cp.size > size:
                    raise LogIntegrityError(f"a checkpoint of size {cp.size} is beyond the log")
                want = merkle.tree_hash(cp.size, rebuilt) if cp.size else merkle.EMPTY_ROOT
                if cp.root != want:
                    raise LogIntegrityError(
                        f"the checkpoint of size {cp.size} disagrees with the log"
                    )
                try:
                    signed, _ = open_checkpoint(cp.note, verifiers, origin=self._origin)
                except (NoteError, CheckpointError) as exc:
                    raise LogIntegrityError(
                        f"the checkpoint of size {cp.size} does not verify: {exc}"
                    ) from None
                if signed.size != cp.size or signed.root_hash != cp.root:
                    raise LogIntegrityError(f"the checkpoint of size {cp.size} was altered")
        return size

    def sign_if_grown(
        self, now: datetime | None = None, *, min_interval: float = 0.0
    ) -> Checkpoint | None:
        """Sign a checkpoint of the current tree if it grew since the last; None if it did not.

        Also None, signing nothing, while another process signs, or if the newest checkpoint
        is younger than `min_interval` seconds (the timers of several processes).
        """
        self._keys.refresh()
        with transaction(self._engine) as session:
            if not _signing_turn(session):
                return None  # another process is signing; its next tick covers this growth
            # Read the clock in turn, so that checkpoints are signed in the order of their times.
            now = now or datetime.now(UTC)
            size, root = store.head(session)
            last = store.latest_checkpoint(session)
            if last is not None and last.size >= size:
                return None
            if (
                last is not None
                and min_interval > 0
                and now - last.signed_at < timedelta(seconds=min_interval)
            ):
                return None
            if last is not None and last.size > 0:
                proof = merkle.prove_tree(size, last.size, store.DbHashReader(session))
                try:
                    merkle.verify_consistency(last.size, size, last.root, root, proof)
                except merkle.ProofError as exc:
                    raise LogIntegrityError(
                        f"refusing to sign: size {size} is not consistent with the checkpoint "
                        f"of size {last.size} ({exc})"
                    ) from None
            signers = [
                Ed25519Signer(self._origin, key.private_key())
                for key in self._keys.signing_keys(KeyUse.LOG, now)
            ]
            checkpoint = Checkpoint(origin=self._origin, size=size, root_hash=root)
            note = sign_checkpoint(checkpoint, signers)
            try:
                with session.begin_nested():
                    added = store.add_checkpoint(session, size, root, note, now)
            except IntegrityError:
                added = False  # another broker process signed this size first
        return checkpoint if added else None


# pg_try_advisory_xact_lock's key: any constant the broker's database uses for nothing else.
_SIGNING_LOCK = 0x6F6D_6164_0001


def _signing_turn(session: Session) -> bool:
    """Whether this transaction may sign: on PostgreSQL, it holds the signing lock until its
    end; on SQLite, BEGIN IMMEDIATE already made it the only writer."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    taken = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _SIGNING_LOCK})
    return bool(taken.scalar())


class CheckpointTimer:
    """Calls `sign` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, sign: Callable[[], object], interval: float) -> None:
        self._sign = sign
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoints", daemon=True)

    def start(self) -> CheckpointTimer:
        """Start signing in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the signing under way, if any."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._sign()
            except LogIntegrityError:
                _log.critical("checkpoint signing stopped: the log does not verify", exc_info=True)
                return
            except Exception:  # a database hiccup must not end signing for good
                _log.warning("checkpoint signing failed; will retry", exc_info=True)
