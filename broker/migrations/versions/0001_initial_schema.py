"""Initial schema: catalogue, persons, delegations, consents and their append-only history.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 09:03:54.035025
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.storage.types import UTCDateTime


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('person',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('purpose',
    sa.Column('code', sa.String(length=63), nullable=False),
    sa.Column('dpv', sa.String(length=200), nullable=False),
    sa.Column('name', sa.JSON(), nullable=False),
    sa.Column('description', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('service',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('is_source', sa.Boolean(), nullable=False),
    sa.Column('is_consumer', sa.Boolean(), nullable=False),
    sa.Column('organisation', sa.String(length=300), nullable=False),
    sa.Column('contact', sa.String(length=300), nullable=False),
    sa.Column('privacy_notice_url', sa.String(length=2000), nullable=False),
    sa.Column('name', sa.JSON(), nullable=False),
    sa.Column('description', sa.JSON(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('data_agreement',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('consumer_id', sa.String(length=64), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('purpose_code', sa.String(length=63), nullable=False),
    sa.Column('lawful_basis', sa.String(length=200), nullable=False),
    sa.Column('retention_days', sa.Integer(), nullable=False),
    sa.Column('max_consent_days', sa.Integer(), nullable=False),
    sa.Column('title', sa.JSON(), nullable=False),
    sa.Column('published_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['consumer_id'], ['service.id'], ),
    sa.ForeignKeyConstraint(['purpose_code'], ['purpose.code'], ),
    sa.ForeignKeyConstraint(['source_id'], ['service.id'], ),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('agreement_id', 'version')
    )
    with op.batch_alter_table('data_agreement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_data_agreement_agreement_id'), ['agreement_id'], unique=False)

    op.create_table('data_category',
    sa.Column('code', sa.String(length=100), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.JSON(), nullable=False),
    sa.Column('description', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['service.id'], ),
    sa.PrimaryKeyConstraint('code')
    )
    with op.batch_alter_table('data_category', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_data_category_source_id'), ['source_id'], unique=False)

    op.create_table('delegation',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('delegate_id', sa.String(length=64), nullable=False),
    sa.Column('principal_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('ended_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['delegate_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['principal_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('delegation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delegation_delegate_id'), ['delegate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delegation_principal_id'), ['principal_id'], unique=False)

    op.create_table('person_identity',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('issuer', sa.String(length=500), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issuer', 'subject')
    )
    with op.batch_alter_table('person_identity', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_identity_person_id'), ['person_id'], unique=False)

    op.create_table('consent',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('agreement_pk', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('valid_from', UTCDateTime(), nullable=False),
    sa.Column('valid_until', UTCDateTime(), nullable=False),
    sa.Column('given_by_id', sa.String(length=64), nullable=False),
    sa.Column('actor_role', sa.String(length=20), nullable=False),
    sa.Column('delegation_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['agreement_pk'], ['data_agreement.pk'], ),
    sa.ForeignKeyConstraint(['delegation_id'], ['delegation.id'], ),
    sa.ForeignKeyConstraint(['given_by_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_agreement_pk'), ['agreement_pk'], unique=False)
        batch_op.create_index('ix_consent_person_agreement', ['person_id', 'agreement_pk'], unique=False)

    op.create_table('data_field',
    sa.Column('category_code', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('description', sa.JSON(), nullable=False),
    sa.Column('special_category', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['category_code'], ['data_category.code'], ),
    sa.PrimaryKeyConstraint('category_code', 'name')
    )
    op.create_table('agreement_field',
    sa.Column('agreement_pk', sa.Integer(), nullable=False),
    sa.Column('category_code', sa.String(length=100), nullable=False),
    sa.Column('field_name', sa.String(length=63), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['agreement_pk'], ['data_agreement.pk'], ),
    sa.ForeignKeyConstraint(['category_code', 'field_name'], ['data_field.category_code', 'data_field.name'], ),
    sa.PrimaryKeyConstraint('agreement_pk', 'category_code', 'field_name')
    )
    op.create_table('consent_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('consent_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=True),
    sa.Column('actor_role', sa.String(length=20), nullable=False),
    sa.Column('note', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['consent_id'], ['consent.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('consent_id', 'seq')
    )
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_event_consent_id'), ['consent_id'], unique=False)

    op.create_table('consent_field',
    sa.Column('consent_id', sa.String(length=64), nullable=False),
    sa.Column('category_code', sa.String(length=100), nullable=False),
    sa.Column('field_name', sa.String(length=63), nullable=False),
    sa.ForeignKeyConstraint(['category_code', 'field_name'], ['data_field.category_code', 'data_field.name'], ),
    sa.ForeignKeyConstraint(['consent_id'], ['consent.id'], ),
    sa.PrimaryKeyConstraint('consent_id', 'category_code', 'field_name')
    )
    _forbid_history_rewrites()


def _forbid_history_rewrites() -> None:
    """Make consent history append-only in the database itself, not only in our code."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER consent_event_no_{action.lower()} BEFORE {action} ON consent_event "
                "BEGIN SELECT RAISE(ABORT, 'consent history is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION consent_event_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'consent history is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER consent_event_append_only BEFORE UPDATE OR DELETE ON consent_event "
            "FOR EACH ROW EXECUTE FUNCTION consent_event_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS consent_event_no_update")
        op.execute("DROP TRIGGER IF EXISTS consent_event_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS consent_event_append_only ON consent_event")
        op.execute("DROP FUNCTION IF EXISTS consent_event_append_only()")
    op.drop_table('consent_field')
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_event_consent_id'))

    op.drop_table('consent_event')
    op.drop_table('agreement_field')
    op.drop_table('data_field')
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_person_agreement')
        batch_op.drop_index(batch_op.f('ix_consent_agreement_pk'))

    op.drop_table('consent')
    with op.batch_alter_table('person_identity', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_identity_person_id'))

    op.drop_table('person_identity')
    with op.batch_alter_table('delegation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delegation_principal_id'))
        batch_op.drop_index(batch_op.f('ix_delegation_delegate_id'))

    op.drop_table('delegation')
    with op.batch_alter_table('data_category', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_data_category_source_id'))

    op.drop_table('data_category')
    with op.batch_alter_table('data_agreement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_data_agreement_agreement_id'))

    op.drop_table('data_agreement')
    op.drop_table('service')
    op.drop_table('purpose')
    op.drop_table('person')
