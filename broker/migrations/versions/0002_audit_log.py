"""The audit log: leaves, stored Merkle hashes, the head, checkpoints, event records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:16:28.534954
"""
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.storage.types import UTCDateTime


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('log_checkpoint',
    sa.Column('size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('root', sa.LargeBinary(), nullable=False),
    sa.Column('note', sa.LargeBinary(), nullable=False),
    sa.Column('signed_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('size')
    )
    op.create_table('log_hash',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('log_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('root', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('log_leaf',
    sa.Column('idx', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('leaf', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('idx')
    )
    op.create_table('log_event',
    sa.Column('idx', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=True),
    sa.Column('consent_id', sa.String(length=64), nullable=True),
    sa.Column('record', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['idx'], ['log_leaf.idx'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('idx')
    )
    with op.batch_alter_table('log_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_log_event_consent_id'), ['consent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_log_event_event_type'), ['event_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_log_event_person_id'), ['person_id'], unique=False)

    op.create_table('person_secret',
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('secret', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('person_id')
    )
    # The empty tree's root is SHA-256 of nothing (RFC 9162 section 2.1.1).
    op.execute(
        sa.text("INSERT INTO log_head (id, size, root) VALUES (1, 0, :root)").bindparams(
            root=hashlib.sha256(b"").digest()
        )
    )
    for table in _APPEND_ONLY:
        _make_append_only(table)


# Leaves, their hashes and checkpoints are never changed once written; the Merkle tree makes any
# change detectable, and these triggers make it take a deliberate act of a database owner.
_APPEND_ONLY = ("log_leaf", "log_hash", "log_checkpoint")


def _make_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    else:
        op.execute(
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")



def downgrade() -> None:
    for table in _APPEND_ONLY:
        _drop_append_only(table)
    op.drop_table('person_secret')
    with op.batch_alter_table('log_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_log_event_person_id'))
        batch_op.drop_index(batch_op.f('ix_log_event_event_type'))
        batch_op.drop_index(batch_op.f('ix_log_event_consent_id'))

    op.drop_table('log_event')
    op.drop_table('log_leaf')
    op.drop_table('log_head')
    op.drop_table('log_hash')
    op.drop_table('log_checkpoint')

