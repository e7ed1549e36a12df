"""The notifier: one daemon thread per broker process that delivers due notifications with
retries, and now and then marks consents past their `valid_until` expired.

All its state is in the database (the outbox and the consents), so a restarted broker carries
on where the last one stopped, and several processes share the work without doing it twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import Engine

from broker.auth.secrets import pairwise_subject, server_secret
from broker.consents import repository as consent_repo
from broker.consents import service as consents
from broker.ledger.sequencer import Ledger
from broker.notifications import outbox
from broker.notifications.sender import Sender, notification_claims, sign_notification
from broker.oauth.issuer import PAIRWISE_SECRET
from broker.settings import Settings
from broker.storage import transaction
from keys import KeyStore

_log = logging.getLogger(__name__)

EXPIRY_BATCH = 500
"""At most this many consents are marked expired per sweep; the next sweep takes the rest."""


class Notifier:
    """Delivers the outbox and sweeps expired consents until stopped. Start it once."""

    def __init__(
        self, engine: Engine, keystore: KeyStore, ledger: Ledger, settings: Settings
    ) -> None:
        self._engine = engine
        self._keystore = keystore
        self._ledger = ledger
        self._settings = settings
        self._issuer = settings.effective_public_url
        # A claim must outlast the sequential attempts of its whole batch, with a margin; only
        # a process that died mid-batch ever lets a lease run out.
        self._lease = timedelta(
            seconds=settings.notify_batch_size * settings.notify_timeout_seconds + 30
        )
        self._sender = Sender(settings.notify_timeout_seconds)
        self._secret: bytes | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
        self.delivered = 0
        self.failed_attempts = 0
        self.expired = 0

    def start(self) -> Notifier:
        """Start delivering and sweeping in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the attempt under way; claims not yet attempted are released at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._settings.notify_timeout_seconds + 10)
        self._sender.close()

    def deliver_due(self) -> int:
        """Attempt every notification due now, once each; how many were attempted."""
        attempted = 0
        while not self._stop.is_set():
            now = datetime.now(UTC)
            if not outbox.has_due(self._engine, now):
                break
            claimed = outbox.claim(
                self._engine, now, limit=self._settings.notify_batch_size, lease=self._lease
            )
            if not claimed:
                break
            for position, item in enumerate(claimed):
                if self._stop.is_set():
                    outbox.release(self._engine, claimed[position:])
                    return attempted
                self._attempt(item)
                attempted += 1
        return attempted

    def expire_due(self) -> int:
        """Mark consents whose `valid_until` has passed expired, each with its history, log
        entry and notifications in one unit; how many this process marked."""
        now = datetime.now(UTC)
        with transaction(self._engine, readonly=True) as session:
            due = consent_repo.due_for_expiry(session, now, limit=EXPIRY_BATCH)
        marked = 0
        for consent_id in due:
            if self._stop.is_set():
                break
            record = self._ledger.run(
                partial(consents.expire_consent, consent_id=consent_id, now=now)
            )
            marked += record is not None
        self.expired += marked
        return marked

    def _attempt(self, item: outbox.Claimed) -> None:
        now = datetime.now(UTC)
        subject = pairwise_subject(self._pairwise_secret(), item.sector, item.person_id)
        self._keystore.refresh()  # another process may have rotated the notify key
        token = sign_notification(
            self._keystore,
            notification_claims(item, issuer=self._issuer, subject=subject, now=now),
        )
        error = self._sender.post(item.webhook_url, token)
        done = datetime.now(UTC)
        if error is None:
            outbox.mark_delivered(self._engine, item, done)
            self.delivered += 1
            return
        self.failed_attempts += 1
        retry_at: datetime | None = None
        if item.attempt < self._settings.notify_max_attempts:
            delay = outbox.retry_delay(
                item.attempt,
                base=self._settings.notify_retry_base_seconds,
                cap=self._settings.notify_retry_max_seconds,
                jitter=random.random(),  # noqa: S311 - spreads retries; not a secret
            )
            retry_at = done + timedelta(seconds=delay)
        outbox.mark_failed(self._engine, item, done, error, retry_at=retry_at)
        if retry_at is None:
            _log.warning(
                "notification %s to client %s given up after %d attempts: %s",
                item.id,
                item.client_id,
                item.attempt,
                error,
            )

    def _pairwise_secret(self) -> bytes:
        # Created once for the whole broker and never changed, so one read per process will do.
        if self._secret is None:
            with transaction(self._engine) as session:
                self._secret = server_secret(session, PAIRWISE_SECRET, datetime.now(UTC))
        return self._secret

    def _loop(self) -> None:
        interval = self._settings.expiry_interval_seconds
        # The first sweep waits one interval: expiry is decided at request time anyway, and a
        # broker that has just started has more urgent work.
        next_sweep = time.monotonic() + interval
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + interval
                    self.expire_due()
                self.deliver_due()
            except Exception:  # a database hiccup must not end notifications for good
                _log.warning("notification round failed; will retry", exc_info=True)
            self._stop.wait(self._settings.notify_poll_seconds)
