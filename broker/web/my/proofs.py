"""What the browser needs to check a log entry itself: the leaf bytes, what the page shows
of it, and where the proof is for the pure-HTML fallback. static/verify.js does the checking."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from broker.ledger import store
from broker.ledger.events import decode_leaf
from broker.ledger.personal import PersonalEntry

# The leaf members the pages show; verify.js refuses an entry whose leaf says otherwise.
_SHOWN = (
    "type",
    "at",
    "consent",
    "consumer",
    "source",
    "purpose",
    "category",
    "fields",
    "reason",
    "delegation",
    "kind",
    "scope",
    "valid_until",
)


@dataclass(frozen=True)
class LogMark:
    """One entry to verify in the browser."""

    index: int
    leaf: str
    expect: str
    proof_url: str | None


def checkpoint_size(session: Session) -> int:
    """The tree size of the newest signed checkpoint, 0 before the first."""
    latest = store.latest_checkpoint(session)
    return int(latest.size) if latest is not None else 0


def leaf_body(entry: PersonalEntry) -> dict[str, Any]:
    """The entry's leaf, parsed: the very bytes the browser will hash."""
    return decode_leaf(base64.b64decode(entry.leaf))


def mark_of(entry: PersonalEntry, body: dict[str, Any], size: int) -> LogMark:
    """The verification data of one entry; `size` is the newest checkpoint's tree size."""
    expect = {key: body[key] for key in _SHOWN if key in body}
    proof = (
        f"/v1/log/proofs/inclusion?index={entry.index}&tree_size={size}"
        if entry.index < size
        else None
    )
    return LogMark(
        index=entry.index,
        leaf=entry.leaf,
        expect=json.dumps(expect, sort_keys=True, ensure_ascii=False, separators=(",", ":")),
        proof_url=proof,
    )
