"""JWK encoding of Ed25519 public keys (RFC 7517, RFC 8037) and thumbprints (RFC 7638)."""

from __future__ import annotations

import base64
import hashlib
import json


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE writes binary values."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of an unpadded base64url string; ValueError if it is not one."""
    if "=" in text:
        raise ValueError("base64url values in JOSE carry no padding")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def okp_jwk(public_key: bytes) -> dict[str, str]:
    """The required members of an Ed25519 public JWK."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_key)}


def thumbprint(public_key: bytes) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of the Ed25519 public JWK."""
    # RFC 7638 §3.2: required members only, sorted by name, no whitespace.
    canonical = json.dumps(okp_jwk(public_key), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())
