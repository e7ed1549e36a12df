"""The key store: Ed25519 signing keys per use, their rotation and their public windows.

On disk, in one owner-only directory:

    manifest.json   every key's kid, use, public key and window (public data, written atomically)
    <kid>.pem       each private key, PKCS8, encrypted with the passphrase when one is given
    .lock           flock target that serialises creation and rotation across processes

The manifest is the truth: a key file it does not name (left by a crash between writing the key
and writing the manifest) is ignored.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from keys._errors import KeyStoreError
from keys._files import (
    FileVersion,
    check_private,
    ensure_private_dir,
    exclusive_lock,
    file_version,
    read_private,
    write_atomic,
)
from keys._jwk import b64url, b64url_decode, okp_jwk, thumbprint
from keys._model import KeyUse, PublicKeyInfo

MANIFEST = "manifest.json"
LOCK = ".lock"

JWK = dict[str, str | int]


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The pattern also keeps a tampered manifest from naming a key file outside the directory.
    kid: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    use: KeyUse
    x: str
    created_at: AwareDatetime
    not_before: AwareDatetime
    not_after: AwareDatetime | None = None
    retired_at: AwareDatetime | None = None

    def info(self) -> PublicKeyInfo:
        return PublicKeyInfo(
            kid=self.kid,
            use=self.use,
            public_key=b64url_decode(self.x),
            created_at=self.created_at.astimezone(UTC),
            not_before=self.not_before.astimezone(UTC),
            not_after=None if self.not_after is None else self.not_after.astimezone(UTC),
            retired_at=None if self.retired_at is None else self.retired_at.astimezone(UTC),
        )


class _Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    # Oldest first: creation appends.
    keys: tuple[_Entry, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class _State:
    keys: tuple[PublicKeyInfo, ...]
    version: FileVersion | None


class SigningKey:
    """A private signing key with its public info. Its repr never shows key material."""

    __slots__ = ("_info", "_private")

    def __init__(self, info: PublicKeyInfo, private: Ed25519PrivateKey) -> None:
        self._info = info
        self._private = private

    @property
    def info(self) -> PublicKeyInfo:
        """The public half and validity window of this key."""
        return self._info

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the public JWK."""
        return self._info.kid

    @property
    def use(self) -> KeyUse:
        """The one job this key does."""
        return self._info.use

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._info.public_key

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        return self._private.sign(data)

    def private_key(self) -> Ed25519PrivateKey:
        """The cryptography key object, for JOSE libraries; do not log or persist it."""
        return self._private

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, use={self.use.value!r})"


class KeyStore:
    """Ed25519 signing keys in an owner-only directory; open it with `KeyStore.open`."""

    def __init__(self, directory: Path, password: bytes | None, state: _State) -> None:
        self._directory = directory
        self._password = password
        self._state = state
        # Private keys never change once written, so a decrypted key stays valid across reloads.
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._cache_lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path | str, passphrase: str | None, *, production: bool) -> KeyStore:
        """Open (creating if absent) the store in `directory`, checking modes and passphrase.

        Raises KeyStoreError in production without a passphrase, on a wrong passphrase, on a
        directory or file others can read, and on a damaged manifest.
        """
        if passphrase is None and production:
            raise KeyStoreError(
                "refusing to start in production mode without a key passphrase: "
                "private signing keys are only stored unencrypted in development"
            )
        if passphrase == "":
            raise KeyStoreError("the key passphrase is empty; give a real one or none at all")
        path = Path(directory)
        ensure_private_dir(path)
        store = cls(
            path, None if passphrase is None else passphrase.encode("utf-8"), _State((), None)
        )
        store._state = store._read_state()
        for info in store._state.keys:
            check_private(store._key_path(info.kid))
        # Decrypting the current keys now makes a wrong passphrase fail at start, not mid-request.
        for info in store._state.keys:
            if info.not_after is None:
                store._load_private(info)
        return store

    @property
    def directory(self) -> Path:
        """The directory the keys live in."""
        return self._directory

    def ensure(self, use: KeyUse, now: datetime) -> SigningKey:
        """The current key for `use`, creating the first one (valid from `now`) if there is none.

        Safe against other processes doing the same: exactly one first key is created.
        """
        now = _utc(now)
        found = self._current_info(self._state, use)
        if found is not None:
            return self._signing_key(found)
        with exclusive_lock(self._directory / LOCK):
            # Another process may have created it since we last read the manifest.
            state = self._read_state()
            self._state = state
            found = self._current_info(state, use)
            if found is not None:
                return self._signing_key(found)
            return self._add_key(state, use, now)

    def current(self, use: KeyUse) -> SigningKey:
        """The newest key for `use`; KeyStoreError if there is none yet (see `ensure`)."""
        found = self._current_info(self._state, use)
        if found is None:
            raise KeyStoreError(f"there is no {use.value} key yet; create it with ensure()")
        return self._signing_key(found)

    def signing_keys(self, use: KeyUse, now: datetime) -> list[SigningKey]:
        """Every key for `use` whose window includes `now`, newest first.

        Right after a rotation that is both the new and the previous key, so that a verifier
        who knows only one of them can still check a checkpoint signed by both.
        """
        now = _utc(now)
        return [
            self._signing_key(info)
            for info in reversed(self._state.keys)
            if info.use is use and info.valid_at(now)
        ]

    def rotate(self, use: KeyUse, overlap: timedelta, now: datetime) -> SigningKey:
        """Add a new current key for `use`, valid from `now`, and return it.

        The previous current key keeps signing until `now + overlap`; no public key is removed.
        """
        now = _utc(now)
        if overlap < timedelta(0):
            raise ValueError("overlap must not be negative")
        with exclusive_lock(self._directory / LOCK):
            # Rotate what is on disk, not what this instance last saw.
            state = self._read_state()
            self._state = state
            previous = self._current_info(state, use)
            if previous is not None and now < previous.not_before:
                raise KeyStoreError(
                    f"cannot rotate the {use.value} key at {now.isoformat()}: the current key "
                    f"{previous.kid} is valid only from {previous.not_before.isoformat()}"
                )
            return self._add_key(state, use, now, previous, now + overlap)

    def public_keys(self, use: KeyUse | None = None) -> list[PublicKeyInfo]:
        """Every key ever created (for `use`, or for all uses), expired ones too, newest first."""
        return [info for info in reversed(self._state.keys) if use is None or info.use is use]

    def jwks(self, uses: KeyUse | Iterable[KeyUse]) -> dict[str, list[JWK]]:
        """A JWK Set (RFC 7517, RFC 8037) of every public key for `uses`, newest first per use.

        Each key carries its window as "nbf" and, once set, "exp" (unix seconds); these members
        are not registered for JWKs, and RFC 7517 §4 tells readers to ignore unknown ones.
        """
        # A KeyUse is a str, hence iterable: take a single one as itself, not as its letters.
        wanted = [uses] if isinstance(uses, KeyUse) else list(dict.fromkeys(uses))
        entries: list[JWK] = []
        for use in wanted:
            for info in self.public_keys(use):
                jwk: JWK = {
                    **okp_jwk(info.public_key),
                    "kid": info.kid,
                    "use": "sig",
                    # RFC 9864 fully specified name; JOSE libraries refuse "EdDSA" by default now.
                    "alg": "Ed25519",
                    "nbf": int(info.not_before.timestamp()),
                }
                if info.not_after is not None:
                    jwk["exp"] = int(info.not_after.timestamp())
                entries.append(jwk)
        return {"keys": entries}

    @property
    def revision(self) -> object:
        """An opaque token that is a new object whenever the set of keys changed (created,
        rotated, or reloaded by `refresh`); compare it with `is` to keep what depends on it."""
        return self._state

    def refresh(self) -> bool:
        """Reload the manifest if it changed on disk (say, another process rotated).

        Cheap when nothing changed: one stat. Returns whether anything was reloaded.
        """
        if file_version(self._directory / MANIFEST) == self._state.version:
            return False
        self._state = self._read_state()
        return True

    def __repr__(self) -> str:
        return f"KeyStore({str(self._directory)!r})"

    # -- internals ----------------------------------------------------------------------------

    def _key_path(self, kid: str) -> Path:
        return self._directory / f"{kid}.pem"

    @staticmethod
    def _current_info(state: _State, use: KeyUse) -> PublicKeyInfo | None:
        for info in reversed(state.keys):
            if info.use is use and info.not_after is None:
                return info
        return None

    def _signing_key(self, info: PublicKeyInfo) -> SigningKey:
        return SigningKey(info, self._load_private(info))

    def _load_private(self, info: PublicKeyInfo) -> Ed25519PrivateKey:
        with self._cache_lock:
            cached = self._private.get(info.kid)
        if cached is not None:
            return cached
        path = self._key_path(info.kid)
        try:
            pem, _ = read_private(path)
        except FileNotFoundError:
            raise KeyStoreError(f"private key file {path} is missing") from None
        try:
            key = _load_pem(pem, self._password)
        except TypeError:
            # cryptography says TypeError when encryption and passphrase do not match up.
            if self._password is None:
                raise KeyStoreError(
                    f"private key file {path} is encrypted; a key passphrase is needed"
                ) from None
            raise KeyStoreError(
                f"private key file {path} is not encrypted but a passphrase was given; "
                "rotate the key to store it encrypted"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise KeyStoreError(
                f"cannot decrypt private key file {path}: wrong key passphrase, "
                "or the file is damaged"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"private key file {path} does not hold an Ed25519 key")
        if key.public_key().public_bytes_raw() != info.public_key:
            raise KeyStoreError(
                f"private key file {path} does not match the public key in the manifest"
            )
        with self._cache_lock:
            self._private[info.kid] = key
        return key

    def _read_state(self) -> _State:
        path = self._directory / MANIFEST
        try:
            raw, version = read_private(path)
        except FileNotFoundError:
            return _State((), None)
        try:
            manifest = _Manifest.model_validate_json(raw)
            keys = tuple(entry.info() for entry in manifest.keys)
        except (ValidationError, ValueError) as exc:
            raise KeyStoreError(f"key manifest {path} is damaged: {exc}") from None
        _check_consistent(path, keys)
        return _State(keys, version)

    def _add_key(
        self,
        state: _State,
        use: KeyUse,
        now: datetime,
        previous: PublicKeyInfo | None = None,
        previous_not_after: datetime | None = None,
    ) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes_raw()
        info = PublicKeyInfo(
            kid=thumbprint(public),
            use=use,
            public_key=public,
            created_at=now,
            not_before=now,
            not_after=None,
            retired_at=None,
        )
        pem = _dump_pem(private, self._password)
        keys = list(state.keys)
        if previous is not None:
            keys[keys.index(previous)] = dataclasses.replace(
                previous, not_after=previous_not_after, retired_at=now
            )
        keys.append(info)
        # Key file first, manifest second: a crash in between leaves an unused key file, never a
        # manifest naming a key that does not exist.
        write_atomic(self._key_path(info.kid), pem)
        write_atomic(self._directory / MANIFEST, _encode(keys))
        with self._cache_lock:
            self._private[info.kid] = private
        self._state = _State(tuple(keys), file_version(self._directory / MANIFEST))
        return SigningKey(info, private)


def _encode(keys: list[PublicKeyInfo]) -> bytes:
    manifest = _Manifest(
        keys=tuple(
            _Entry(
                kid=info.kid,
                use=info.use,
                x=b64url(info.public_key),
                created_at=info.created_at,
                not_before=info.not_before,
                not_after=info.not_after,
                retired_at=info.retired_at,
            )
            for info in keys
        )
    )
    return manifest.model_dump_json(indent=2).encode("utf-8") + b"\n"


def _check_consistent(path: Path, keys: tuple[PublicKeyInfo, ...]) -> None:
    seen: set[str] = set()
    current: set[KeyUse] = set()
    for info in keys:
        if len(info.public_key) != 32 or thumbprint(info.public_key) != info.kid:
            raise KeyStoreError(f"key manifest {path} is damaged: {info.kid} is not its thumbprint")
        if info.kid in seen:
            raise KeyStoreError(f"key manifest {path} is damaged: {info.kid} appears twice")
        seen.add(info.kid)
        if info.not_after is None:
            if info.use in current:
                raise KeyStoreError(
                    f"key manifest {path} is damaged: two current {info.use.value} keys"
                )
            current.add(info.use)


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


# Encrypted keys use the OpenSSH format because its KDF (bcrypt-pbkdf) has a tunable cost;
# cryptography's PKCS#8 encryption is fixed at 2,048 PBKDF2 rounds, cheap to brute-force. At 32
# rounds unlocking one key costs about 0.35 s on a 2-core machine.
KDF_ROUNDS = 32
_OPENSSH = b"-----BEGIN OPENSSH PRIVATE KEY-----"


def _dump_pem(private: Ed25519PrivateKey, password: bytes | None) -> bytes:
    if password is None:
        return private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    encryption = (
        serialization.PrivateFormat.OpenSSH.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .build(password)
    )
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    )


def _load_pem(pem: bytes, password: bytes | None) -> object:
    if pem.startswith(_OPENSSH):
        if password is None:
            raise TypeError("encrypted key without a passphrase")
        return serialization.load_ssh_private_key(pem, password)
    return serialization.load_pem_private_key(pem, password)
