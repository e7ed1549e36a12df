"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, compatible with Go's sumdb/note.

A signed note is UTF-8 text ending in a newline, a blank line, then one or more signature
lines `— <key name> <base64(4-byte big-endian key id || signature)>`. The text may itself
contain blank lines: the signatures start after the last one. A verifier ignores signatures
by keys it does not know, which is what lets a log rotate keys: during an overlap it signs
with the old and the new key, and readers holding either accept.

Parsing is strict: base64 must be canonical, so one signature has exactly one spelling.

    NoteError (ValueError)       a bad key name, verifier key, signer or signing request
    ├── MalformedNoteError       the bytes are not a well-formed signed note, or the text
    │                            cannot be signed (no final newline, control characters, ...)
    ├── UnverifiedNoteError      well-formed, but no signature is by a known key (.note)
    └── InvalidSignatureError    a signature by a known key (same name and id) does not verify
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519_TYPE = 0x01
ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
KEY_ID_SIZE = 4
# The spec asks verifiers to cap the signature count but accept at least 16; Go caps at 100.
MAX_SIGNATURES = 100
# Room for 100 post-quantum signatures (~5 kB each) plus text; checkpoints are ~100 bytes.
MAX_NOTE_SIZE = 1 << 20

_DASH = "\u2014 "
# Everything below U+0020 except the newline: the spec forbids these anywhere in a note.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
# Go parses the id with strconv.ParseUint(s, 16, 32), which accepts either case.
_KEY_ID_HEX = re.compile("[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A key, signer or signed note is unusable; subclasses say how a note failed."""


class MalformedNoteError(NoteError):
    """The bytes do not follow the signed-note format, or the text cannot be signed."""


class UnverifiedNoteError(NoteError):
    """The note is well-formed but carries no signature by any known key."""

    def __init__(self, note: Note) -> None:
        keys = ", ".join(f"{s.name}+{s.key_id:08x}" for s in note.unverified)
        super().__init__(f"note has no signature by a known key (signed only by {keys})")
        self.note = note


class InvalidSignatureError(NoteError):
    """A signature names a known key (same name and id) but does not verify."""

    def __init__(self, name: str, key_id: int) -> None:
        super().__init__(f"invalid signature for known key {name}+{key_id:08x}")
        self.name = name
        self.key_id = key_id


def _quote(text: str, limit: int = 60) -> str:
    # Errors often carry hostile input; keep messages short enough to log.
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None


def _b64decode(text: str) -> bytes | None:
    """Decode standard base64, or None unless `text` is the one canonical spelling."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    # b64decode accepts non-zero padding bits; re-encoding rejects those second spellings.
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def check_key_name(name: str) -> None:
    """Raise NoteError unless `name` is a valid key name: non-empty, no Unicode space, no '+'.

    Control characters are refused too, since a name appears in notes that forbid them.
    """
    if not name:
        raise NoteError("key name is empty")
    if "+" in name:
        raise NoteError(f"key name {_quote(name)} contains '+'")
    for char in name:
        if char.isspace():
            raise NoteError(f"key name {_quote(name)} contains a space (U+{ord(char):04X})")
    control = _CONTROL.search(name)
    if control:
        code = ord(control.group())
        raise NoteError(f"key name {_quote(name)} contains a control character (U+{code:04X})")
    if _utf8(name) is None:
        raise NoteError(f"key name {_quote(name)} is not valid Unicode (lone surrogate)")


def ed25519_key_id(name: str, public_key: bytes) -> int:
    """The key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4], big-endian."""
    check_key_name(name)
    if len(public_key) != ED25519_KEY_SIZE:
        raise NoteError(f"Ed25519 public key is {len(public_key)} bytes, not 32")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()
    return int.from_bytes(digest[:KEY_ID_SIZE], "big")


def format_vkey(name: str, public_key: bytes) -> str:
    """The verifier key text `<name>+<8 hex key id>+<base64(0x01 || key)>` for an Ed25519 key."""
    key_id = ed25519_key_id(name, public_key)
    encoded = base64.b64encode(bytes([ED25519_TYPE]) + public_key).decode("ascii")
    return f"{name}+{key_id:08x}+{encoded}"


class Verifier:
    """An Ed25519 public key under a name: checks signatures made by the matching Signer."""

    __slots__ = ("_key", "_key_id", "_name", "_public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        """Wrap a raw 32-byte Ed25519 public key; raise NoteError for a bad name or key."""
        self._key_id = ed25519_key_id(name, public_key)
        self._name = name
        self._public_key = bytes(public_key)
        try:
            self._key = Ed25519PublicKey.from_public_bytes(self._public_key)
        except ValueError as exc:
            raise NoteError(f"not a usable Ed25519 public key: {exc}") from None

    @property
    def name(self) -> str:
        """The key name signatures must carry."""
        return self._name

    @property
    def key_id(self) -> int:
        """The 32-bit key id signatures must carry."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    @property
    def vkey(self) -> str:
        """This key as verifier key text, the form operators configure."""
        return format_vkey(self._name, self._public_key)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True if `sig` is a valid Ed25519 signature of `msg` by this key."""
        if len(sig) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self._name, self._public_key) == (other._name, other._public_key)

    def __hash__(self) -> int:
        return hash((self._name, self._public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


def parse_vkey(text: str) -> Verifier:
    """Parse verifier key text `<name>+<key id>+<base64 key>`; raise NoteError if invalid.

    The key id must match the key, the type byte must be 0x01 and the key 32 bytes long.
    """
    # Only the first two '+' separate fields: standard base64 may itself contain '+'.
    name, sep1, rest = text.partition("+")
    id_hex, sep2, key_b64 = rest.partition("+")
    if not sep1 or not sep2:
        raise NoteError(f"verifier key {_quote(text)} is not <name>+<key id>+<base64 key>")
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteError(f"verifier key id {_quote(id_hex)} is not 8 hexadecimal digits")
    raw = _b64decode(key_b64)
    if raw is None:
        raise NoteError(f"verifier key data {_quote(key_b64)} is not canonical standard base64")
    if not raw:
        raise NoteError("verifier key data is empty")
    if raw[0] != ED25519_TYPE:
        raise NoteError(f"verifier key type 0x{raw[0]:02x} is not Ed25519 (0x01)")
    if len(raw) != 1 + ED25519_KEY_SIZE:
        raise NoteError(f"Ed25519 verifier key is {len(raw) - 1} bytes, not 32")
    verifier = Verifier(name, raw[1:])
    if verifier.key_id != int(id_hex, 16):
        raise NoteError(
            f"verifier key id {id_hex} does not match the key (it hashes to {verifier.key_id:08x})"
        )
    return verifier


class Signer(Protocol):
    """Anything that signs note text under a key name and 32-bit key id."""

    @property
    def name(self) -> str:
        """The key name written on the signature line."""
        ...

    @property
    def key_id(self) -> int:
        """The 32-bit key id written before the signature bytes."""
        ...

    def sign(self, msg: bytes) -> bytes:
        """The signature of `msg` (the note text, including its final newline)."""
        ...


class Ed25519Signer:
    """A Signer holding an Ed25519 private key; its repr never shows the key."""

    __slots__ = ("_key_id", "_name", "_private_key", "_public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Sign as `name` with `private_key`; raise NoteError for an invalid name."""
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = ed25519_key_id(name, public)
        self._name = name
        self._private_key = private_key
        self._public_key = public

    @property
    def name(self) -> str:
        """The key name written on the signature line."""
        return self._name

    @property
    def key_id(self) -> int:
        """The 32-bit key id derived from the name and public key."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `msg`."""
        return self._private_key.sign(msg)

    def verifier(self) -> Verifier:
        """The Verifier for this key, to hand to readers."""
        return Verifier(self._name, self._public_key)

    def __repr__(self) -> str:
        return f"Ed25519Signer({format_vkey(self._name, self._public_key)!r})"


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key id and the signature bytes (without the id)."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """The signature line as it appears in a note, with its final newline."""
        blob = self.key_id.to_bytes(KEY_ID_SIZE, "big") + self.signature
        return f"{_DASH}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text and its signatures, split by whether a known key made them."""

    text: str
    verified: list[Signature] = field(default_factory=list)
    unverified: list[Signature] = field(default_factory=list)


def _text_bytes(text: str) -> bytes:
    """The UTF-8 bytes of note text to be signed; MalformedNoteError if it is not note text."""
    if not text:
        raise MalformedNoteError("note text is empty")
    if not text.endswith("\n"):
        raise MalformedNoteError("note text does not end in a newline")
    control = _CONTROL.search(text)
    if control:
        code = ord(control.group())
        raise MalformedNoteError(
            f"note text contains control character U+{code:04X} at offset {control.start()}"
        )
    data = _utf8(text)
    if data is None:
        raise MalformedNoteError("note text is not valid Unicode (lone surrogate)")
    return data


def sign_note(text: str, signers: Sequence[Signer]) -> bytes:
    """Sign `text` (non-empty, ending in a newline, no control characters) with every signer.

    Returns text, a blank line and one signature line per signer, in the given order.
    """
    body = _text_bytes(text)
    if not signers:
        raise NoteError("a note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise NoteError(f"{len(signers)} signers, more than the {MAX_SIGNATURES} a note may carry")
    seen: set[tuple[str, int]] = set()
    lines: list[str] = []
    for signer in signers:
        name, key_id = signer.name, signer.key_id
        check_key_name(name)
        if isinstance(key_id, bool) or not 0 <= key_id < 1 << 32:
            raise NoteError(f"signer {name} has key id {key_id!r}, not a 32-bit unsigned integer")
        if (name, key_id) in seen:
            raise NoteError(f"signer {name}+{key_id:08x} is listed twice")
        seen.add((name, key_id))
        sig = signer.sign(body)
        if not sig:
            raise NoteError(f"signer {name}+{key_id:08x} returned an empty signature")
        lines.append(Signature(name, key_id, bytes(sig)).line())
    msg = body + b"\n" + "".join(lines).encode("utf-8")
    if len(msg) > MAX_NOTE_SIZE:
        raise MalformedNoteError(f"signed note would be {len(msg)} bytes, over {MAX_NOTE_SIZE}")
    return msg


def _parse_signature_line(line: str, number: int) -> Signature:
    where = f"signature line {number}"
    if not line.startswith(_DASH):
        raise MalformedNoteError(f"{where} does not start with an em dash and a space")
    name, space, encoded = line[len(_DASH) :].partition(" ")
    if not space:
        raise MalformedNoteError(f"{where} has no space between key name and signature")
    try:
        check_key_name(name)
    except NoteError as exc:
        raise MalformedNoteError(f"{where}: {exc}") from None
    raw = _b64decode(encoded)
    if raw is None:
        raise MalformedNoteError(f"{where}: signature is not canonical standard base64")
    if len(raw) <= KEY_ID_SIZE:
        raise MalformedNoteError(
            f"{where}: signature is {len(raw)} bytes; needs a 4-byte key id and a signature"
        )
    return Signature(name, int.from_bytes(raw[:KEY_ID_SIZE], "big"), raw[KEY_ID_SIZE:])


def _parse(msg: bytes) -> tuple[str, list[Signature]]:
    if len(msg) > MAX_NOTE_SIZE:
        raise MalformedNoteError(f"note is {len(msg)} bytes, over the {MAX_NOTE_SIZE} allowed")
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNoteError(f"note is not valid UTF-8 (byte {exc.start})") from None
    control = _CONTROL.search(decoded)
    if control:
        code = ord(control.group())
        raise MalformedNoteError(
            f"note contains control character U+{code:04X} at offset {control.start()}"
        )
    split = decoded.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line between text and signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block:
        raise MalformedNoteError("note has no signature lines after its last blank line")
    if not block.endswith("\n"):
        raise MalformedNoteError("last signature line does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has {len(lines)} signatures, over {MAX_SIGNATURES}")
    return text, [_parse_signature_line(line, i) for i, line in enumerate(lines, start=1)]


def _index(verifiers: Sequence[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        other = known.setdefault(slot, verifier)
        if other != verifier:
            # Two keys with one name and id: a misconfiguration (or a planted key), not data.
            raise NoteError(f"two different verifier keys are both {slot[0]}+{slot[1]:08x}")
    return known


def open_note(msg: bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse `msg` strictly and check it against `verifiers`; return the verified Note.

    Unknown keys' signatures are kept in `unverified`; needs at least one valid known one.
    """
    known = _index(verifiers)
    text, signatures = _parse(msg)
    body = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    valid: set[Signature] = set()
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        # Every signature by a known key is checked, repeats included: one bad one is tampering.
        if sig not in valid:
            if not verifier.verify(body, sig.signature):
                raise InvalidSignatureError(sig.name, sig.key_id)
            valid.add(sig)
        if all((v.name, v.key_id) != (sig.name, sig.key_id) for v in verified):
            verified.append(sig)
    note = Note(text=text, verified=verified, unverified=unverified)
    if not verified:
        raise UnverifiedNoteError(note)
    return note
