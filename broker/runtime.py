"""The long-lived parts of a running broker, started and stopped together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from broker.ledger.sequencer import Ledger
from broker.ledger.signer import CheckpointSigner, CheckpointTimer
from broker.settings import Environment, Settings
from broker.storage import create_db_engine
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


@dataclass
class Runtime:
    """Engine, keys, log writer and checkpoint signer of one broker process."""

    settings: Settings
    engine: Engine
    keystore: KeyStore
    ledger: Ledger
    signer: CheckpointSigner
    _timer: CheckpointTimer | None = field(default=None, repr=False)

    @classmethod
    def create(cls, settings: Settings, engine: Engine | None = None) -> Runtime:
        """Build (but do not start) the runtime for `settings`."""
        engine = engine or create_db_engine(settings.effective_database_url)
        keystore = open_keystore(settings)
        return cls(
            settings=settings,
            engine=engine,
            keystore=keystore,
            ledger=Ledger(engine),
            signer=CheckpointSigner(engine, keystore, settings.log_origin),
        )

    def start(self) -> Runtime:
        """Verify the stored log, sign a first checkpoint, start the writer and the signer.

        Raises LogIntegrityError, and so refuses to start, if the stored log does not verify.
        """
        size = self.signer.verify_stored_log()
        _log.info("audit log verified: %d entries", size)
        self.signer.sign_if_grown()
        self.ledger.start()
        self._timer = CheckpointTimer(
            self.signer.sign_if_grown, self.settings.checkpoint_interval_seconds
        ).start()
        return self

    def stop(self) -> None:
        """Stop signing, finish queued log writes, sign what they added."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.ledger.close()
        self.signer.sign_if_grown()
