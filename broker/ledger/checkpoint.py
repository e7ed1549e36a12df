"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint): the signed head of the log.

A checkpoint is the text of a signed note: the origin (the log's name), the tree size in
decimal and the base64 Merkle root, one per line, then optional extension lines. Parsing
accepts extension lines, as the spec allows, but the broker never signs any.

    CheckpointError (ValueError)   the text is not a checkpoint, or not the expected log's

Signature problems raise the NoteError tree of broker.ledger.note.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from broker.ledger.note import (
    Note,
    NoteError,
    Signer,
    Verifier,
    check_key_name,
    open_note,
    sign_note,
)

HASH_SIZE = 32
# Go (tlog, transparency-dev/formats) and SQLite both hold sizes as signed 64-bit integers.
MAX_TREE_SIZE = (1 << 63) - 1

_SIZE = re.compile("0|[1-9][0-9]*")
_CONTROL = re.compile("[\x00-\x1f]")


class CheckpointError(ValueError):
    """A checkpoint's text is malformed, or it names another log than expected."""


def _quote(text: str, limit: int = 60) -> str:
    # Errors often carry hostile input; keep messages short enough to log.
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


def _check_line(line: str, what: str) -> None:
    if not line:
        raise CheckpointError(f"checkpoint {what} is empty")
    control = _CONTROL.search(line)
    if control:
        code = ord(control.group())
        raise CheckpointError(f"checkpoint {what} contains control character U+{code:04X}")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"checkpoint {what} is not valid Unicode (lone surrogate)") from None


@dataclass(frozen=True)
class Checkpoint:
    """A log head: origin, tree size and root hash, plus any extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError(f"tree size {self.size!r} is not an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size} is outside 0..{MAX_TREE_SIZE}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes, got {self.root_hash!r}")
        for number, line in enumerate(self.extensions, start=1):
            _check_line(line, f"extension line {number}")

    def to_text(self) -> str:
        """The note text: origin, size and base64 root hash, each followed by a newline."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text strictly; raise CheckpointError saying what is wrong.

        Needs >= 3 non-empty lines, a decimal size without leading zeros, a 32-byte base64 root.
        """
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint has {len(lines)} line(s); needs origin, tree size and root hash"
            )
        origin, size_text, root_text, *extensions = lines
        _check_line(origin, "origin")
        _check_line(size_text, "tree size")
        _check_line(root_text, "root hash")
        for number, line in enumerate(extensions, start=1):
            _check_line(line, f"extension line {number}")
        if not _SIZE.fullmatch(size_text):
            raise CheckpointError(
                f"tree size {_quote(size_text)} is not ASCII decimal without leading zeros"
            )
        # Checked before int() so a huge line cannot hit Python's int-conversion limit.
        if len(size_text) > len(str(MAX_TREE_SIZE)) or int(size_text) > MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {_quote(size_text)} exceeds {MAX_TREE_SIZE}")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError(f"root hash {_quote(root_text)} is not standard base64") from None
        # b64decode accepts non-zero padding bits; only the canonical spelling is a checkpoint.
        if base64.b64encode(root).decode("ascii") != root_text:
            raise CheckpointError(f"root hash {_quote(root_text)} is not canonical base64")
        if len(root) != HASH_SIZE:
            raise CheckpointError(f"root hash is {len(root)} bytes, not {HASH_SIZE}")
        return cls(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> bytes:
    """Sign the checkpoint as a note. The origin must be a valid key name; no extension lines.

    Raises CheckpointError for such a checkpoint, NoteError for a bad signer.
    """
    try:
        check_key_name(checkpoint.origin)
    except NoteError as exc:
        # The spec only recommends this form; the broker holds itself to it.
        raise CheckpointError(f"origin must have no spaces and no '+': {exc}") from None
    if checkpoint.extensions:
        raise CheckpointError("the broker does not sign checkpoints with extension lines")
    return sign_note(checkpoint.to_text(), signers)


def open_checkpoint(
    msg: bytes, verifiers: Sequence[Verifier], origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint and parse its text; if `origin` is given, it must match.

    Raises the NoteError tree for signature problems, CheckpointError for the text.
    """
    # Verify first: the spec says to ignore a note's text until a trusted key has signed it.
    note = open_note(msg, verifiers)
    checkpoint = Checkpoint.parse(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            f"checkpoint is for origin {_quote(checkpoint.origin)}, expected {_quote(origin)}"
        )
    return checkpoint, note
