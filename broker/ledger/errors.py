"""Errors of the audit log.

LogError
├── LogIntegrityError   stored leaves, hashes or checkpoints disagree: the log was altered
└── LogUnavailable      the log writer is stopped or did not answer in time
"""

from __future__ import annotations

from broker.errors import BrokerError


class LogError(BrokerError):
    """Base of the audit log's errors."""

    code = "log-error"
    title = "Audit log error"


class LogIntegrityError(LogError):
    """The stored log does not verify; the broker must not sign or append until resolved."""

    code = "log-integrity"
    title = "The audit log does not verify"


class LogUnavailable(LogError):
    """The log writer is not running or timed out; nothing was changed."""

    code = "log-unavailable"
    title = "The audit log is unavailable"
