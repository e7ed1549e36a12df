"""The broker's Ed25519 signing keys: one set per use, rotated with an overlap, published forever.

Public surface: `KeyStore` (open, ensure, current, signing_keys, rotate, public_keys, jwks,
refresh), `SigningKey`, `PublicKeyInfo`, `KeyUse` and the one error, `KeyStoreError`.
"""

from keys._errors import KeyStoreError
from keys._model import KeyUse, PublicKeyInfo
from keys._store import KeyStore, SigningKey

__all__ = ["KeyStore", "KeyStoreError", "KeyUse", "PublicKeyInfo", "SigningKey"]
