"""The export archive: consents with their histories, delegations, every log entry about the
person with its inclusion proof against one signed checkpoint, and signed receipts.

Everything in it can be checked offline with public data only: the checkpoint with the log's
verifier key (also in the archive, and at /v1/log/key), each entry's inclusion proof against
the checkpoint's root, and each receipt's JWS against the broker's JWKS (also in the archive).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlmodel import Session

from broker.consents import service as consents
from broker.ledger import merkle, reader, store
from broker.ledger.checkpoint import Checkpoint
from broker.ledger.note import format_vkey
from broker.ledger.personal import entries_seen_by
from broker.people.access import delegations_of
from broker.people.service import get_person
from broker.receipts import ReceiptFormat, load_subject, signed_receipt
from keys import KeyStore, KeyUse

FORMAT = "omadata-export/1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_archive(
    session: Session,
    keystore: KeyStore,
    *,
    viewer_id: str,
    person_id: str,
    log_origin: str,
    broker_url: str,
    language: str,
    now: datetime,
) -> dict[str, Any]:
    """The archive of `person_id` as `viewer_id` may see it (NotPermitted otherwise)."""
    records = consents.consents_seen_by(session, viewer_id=viewer_id, person_id=person_id, now=now)
    entries = entries_seen_by(session, viewer_id=viewer_id, person_id=person_id, now=now)
    person = get_person(session, person_id)
    latest = store.latest_checkpoint(session)
    size = int(latest.size) if latest is not None else 0
    note = bytes(latest.note).decode("utf-8") if latest is not None else None
    log_entries = []
    for entry in entries:
        leaf = base64.b64decode(entry.leaf)
        covered = entry.index < size
        log_entries.append(
            {
                "index": entry.index,
                "type": entry.type,
                "at": entry.at.isoformat(),
                "consent_id": entry.consent_id,
                "leaf": entry.leaf,
                "leaf_hash": _b64(merkle.leaf_hash(leaf)),
                "inclusion_proof": [
                    _b64(h) for h in reader.inclusion_proof(session, entry.index, size)
                ]
                if covered
                else None,
            }
        )
    receipts = []
    for record in records:
        subject = load_subject(
            session, record.id, now=now, language=language, broker_url=broker_url
        )
        for fmt in ReceiptFormat:
            receipts.append(
                {
                    "consent_id": record.id,
                    "format": fmt.value,
                    "profile": fmt.profile,
                    "content_type": fmt.content_type,
                    "jws": signed_receipt(keystore, subject, fmt),
                }
            )
    viewer = get_person(session, viewer_id)
    return {
        "format": FORMAT,
        "exported_at": now.isoformat(),
        "broker": broker_url,
        "exported_by": {"id": viewer.id, "display_name": viewer.display_name},
        "person": {
            "id": person.id,
            "display_name": person.display_name,
            "language": person.language,
            "birth_date": person.birth_date.isoformat() if person.birth_date else None,
        },
        "consents": [r.model_dump(mode="json") for r in records],
        "delegations": delegations_of(session, person_id, now).model_dump(mode="json"),
        "log": {
            "origin": log_origin,
            "verifier_key": format_vkey(log_origin, keystore.current(KeyUse.LOG).public_key),
            "checkpoint": note,
            "tree_size": size,
            "root_hash": _b64(Checkpoint.parse(_text_of(note)).root_hash) if note else None,
            "entries": log_entries,
        },
        "receipts": receipts,
        "receipt_keys": keystore.jwks(KeyUse.RECEIPT),
    }


def _text_of(note: str) -> str:
    """The text of a signed note: everything up to its last blank line."""
    return note[: note.rfind("\n\n") + 1]
