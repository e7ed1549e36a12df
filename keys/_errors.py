"""The one error the key store raises on purpose."""

from __future__ import annotations


class KeyStoreError(Exception):
    """The key store cannot be opened or used safely; the message says why and what to do."""
