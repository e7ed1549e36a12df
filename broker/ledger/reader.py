"""Read-side use cases of the log: the latest checkpoint, proofs, and pages of entries."""

from __future__ import annotations

from sqlmodel import Session

from broker.errors import InvalidInput, NotFound
from broker.ledger import merkle, store


def latest_checkpoint(session: Session) -> bytes:
    """The newest signed checkpoint note; NotFound before the first is signed."""
    checkpoint = store.latest_checkpoint(session)
    if checkpoint is None:
        raise NotFound("No checkpoint has been signed yet.")
    return checkpoint.note


def tree_size(session: Session) -> int:
    """How many entries the log holds now."""
    size, _ = store.head(session)
    return size


def inclusion_proof(session: Session, index: int, tree_size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of entry `index` in the tree of `tree_size` entries."""
    committed = store.CommittedHashReader.of(session)
    if committed is None:
        size, _ = store.head(session)
        _check_inclusion_request(index, tree_size, size)
        return merkle.prove_record(tree_size, index, store.DbHashReader(session))
    # The cheap size check first; the log's real size only if it fails, for the message.
    if not 0 < tree_size <= committed.size(at_least=tree_size):
        _check_inclusion_request(index, tree_size, committed.size())
    _check_inclusion_request(index, tree_size, tree_size)
    reads = merkle.record_proof_reads(tree_size, index)
    return merkle.record_proof_from_reads(reads, committed.read_hashes(reads.indexes, reads.levels))


def _check_inclusion_request(index: int, tree_size: int, size: int) -> None:
    if not 0 < tree_size <= size:
        raise InvalidInput(f"tree_size must be between 1 and the log's size {size}.")
    if not 0 <= index < tree_size:
        raise InvalidInput(f"index must be between 0 and tree_size - 1 ({tree_size - 1}).")


def consistency_proof(session: Session, first: int, second: int) -> list[bytes]:
    """The RFC 9162 consistency proof between the trees of `first` and `second` entries."""
    committed = store.CommittedHashReader.of(session)
    if committed is None:
        size, _ = store.head(session)
    else:
        size = committed.size(at_least=second)
        if not 0 < first <= second <= size:
            size = committed.size()  # the message names the log's real size
    if not 0 < first <= second <= size:
        raise InvalidInput(
            f"Need 0 < first <= second <= {size}; a proof from size 0 is not defined."
        )
    hashes = store.DbHashReader(session) if committed is None else committed
    return merkle.prove_tree(second, first, hashes)


def entries(session: Session, start: int, end: int, page_size: int) -> list[tuple[int, bytes]]:
    """Entries start <= index < end, at most `page_size` of them, as (index, exact leaf bytes)."""
    if start < 0 or end <= start:
        raise InvalidInput("Need 0 <= start < end.")
    return store.leaves(session, start, min(end, start + page_size))
