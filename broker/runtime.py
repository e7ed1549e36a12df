"""The long-lived parts of a running broker, started and stopped together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from broker.demo import CONNECTORS_FILE
from broker.ledger.sequencer import Ledger
from broker.ledger.signer import CheckpointSigner, CheckpointTimer
from broker.notifications.worker import Notifier
from broker.ratelimit import RateLimits
from broker.settings import Environment, Settings
from broker.storage import create_db_engine
from connectors.base import Connector
from connectors.config import load_connectors
from keys import KeyStore, KeyUse

_log = logging.getLogger(__name__)


def open_keystore(settings: Settings) -> KeyStore:
    """The key store named by `settings`, with a key for every use we sign with."""
    passphrase = settings.key_passphrase.get_secret_value() if settings.key_passphrase else None
    keystore = KeyStore.open(
        settings.effective_keys_dir,
        passphrase,
        production=settings.environment is Environment.PRODUCTION,
    )
    now = datetime.now(UTC)
    for use in KeyUse:
        keystore.ensure(use, now)
    return keystore


def open_sources(settings: Settings) -> dict[str, Connector]:
    """A connector per source named by the settings' connectors file (the demo's by default)."""
    path = settings.connectors_file
    if path is None and settings.environment is Environment.DEVELOPMENT:
        path = CONNECTORS_FILE
    if path is None:
        return {}
    return load_connectors(
        path, base_urls=settings.source_base_urls, timeout=settings.source_timeout_seconds
    )


@dataclass
class Runtime:
    """Engine, keys, log writer, checkpoint signer, notifier and rate limits of one broker
    process."""

    settings: Settings
    engine: Engine
    keystore: KeyStore
    ledger: Ledger
    signer: CheckpointSigner
    sources: dict[str, Connector] = field(default_factory=dict)
    limits: RateLimits | None = None  # set from the settings in __post_init__
    _timer: CheckpointTimer | None = field(default=None, repr=False)
    notifier: Notifier | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.limits is None:
            self.limits = RateLimits.from_settings(self.settings)

    @classmethod
    def create(
        cls,
        settings: Settings,
        engine: Engine | None = None,
        sources: dict[str, Connector] | None = None,
    ) -> Runtime:
        """Build (but do not start) the runtime for `settings`; `sources` replace the file's."""
        engine = engine or create_db_engine(settings.effective_database_url)
        keystore = open_keystore(settings)
        return cls(
            settings=settings,
            engine=engine,
            keystore=keystore,
            ledger=Ledger(engine),
            signer=CheckpointSigner(engine, keystore, settings.log_origin),
            sources=open_sources(settings) if sources is None else sources,
        )

    def start(self) -> Runtime:
        """Verify the stored log, sign a first checkpoint, start the writer, the signer and the
        notifier (webhooks and the expiry sweep).

        Raises LogIntegrityError, and so refuses to start, if the stored log does not verify.
        """
        size = self.signer.verify_stored_log()
        _log.info("audit log verified: %d entries", size)
        self.signer.sign_if_grown()
        self.ledger.start()
        interval = self.settings.checkpoint_interval_seconds
        # Skipping while the newest checkpoint is younger than most of an interval keeps N
        # broker processes on one database to about one checkpoint per interval between them.
        self._timer = CheckpointTimer(
            lambda: self.signer.sign_if_grown(min_interval=interval * 0.8), interval
        ).start()
        self.notifier = Notifier(self.engine, self.keystore, self.ledger, self.settings).start()
        return self

    def stop(self) -> None:
        """Stop notifying (its sweep writes through the log), stop signing, finish queued log
        writes, sign what they added."""
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier = None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.ledger.close()
        self.signer.sign_if_grown()
        for connector in self.sources.values():
            connector.close()
