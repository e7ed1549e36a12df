"""OAuth 2.0: clients, codes, refresh tokens, revocations, registration, sessions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:51:43.534084
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broker.storage.types import UTCDateTime


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('broker_secret',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('oauth_revoked_jti',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    op.create_table('oauth_seen_jti',
    sa.Column('namespace', sa.String(length=100), nullable=False),
    sa.Column('jti', sa.String(length=256), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('namespace', 'jti')
    )
    op.create_table('oauth_client',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('client_secret_hash', sa.String(length=128), nullable=True),
    sa.Column('service_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('client_name', sa.String(length=200), nullable=False),
    sa.Column('redirect_uris', sa.JSON(), nullable=False),
    sa.Column('grant_types', sa.JSON(), nullable=False),
    sa.Column('scope', sa.String(length=500), nullable=False),
    sa.Column('token_endpoint_auth_method', sa.String(length=40), nullable=False),
    sa.Column('jwks', sa.JSON(), nullable=True),
    sa.Column('webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('disabled_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], ),
    sa.PrimaryKeyConstraint('client_id')
    )
    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_client_service_id'), ['service_id'], unique=False)

    op.create_table('oauth_registration_token',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('service_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('used_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['service_id'], ['service.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_table('person_credential',
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('person_id')
    )
    op.create_table('person_session',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('acting_for', sa.String(length=64), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['acting_for'], ['person.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id_hash')
    )
    with op.batch_alter_table('person_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_session_person_id'), ['person_id'], unique=False)

    op.create_table('oauth_code',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('scope', sa.String(length=500), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('code_challenge_method', sa.String(length=10), nullable=False),
    sa.Column('authorization_details', sa.JSON(), nullable=False),
    sa.Column('consent_ids', sa.JSON(), nullable=False),
    sa.Column('auth_time', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('used_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('code_hash')
    )
    op.create_table('oauth_refresh_token',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=500), nullable=False),
    sa.Column('authorization_details', sa.JSON(), nullable=False),
    sa.Column('consent_ids', sa.JSON(), nullable=False),
    sa.Column('dpop_jkt', sa.String(length=64), nullable=True),
    sa.Column('issued_at', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('used_at', UTCDateTime(), nullable=True),
    sa.Column('revoked_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('oauth_refresh_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_refresh_token_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_refresh_token_family_id'), ['family_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('oauth_refresh_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_refresh_token_family_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_refresh_token_client_id'))

    op.drop_table('oauth_refresh_token')
    op.drop_table('oauth_code')
    with op.batch_alter_table('person_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_session_person_id'))

    op.drop_table('person_session')
    op.drop_table('person_credential')
    op.drop_table('oauth_registration_token')
    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_client_service_id'))

    op.drop_table('oauth_client')
    op.drop_table('oauth_seen_jti')
    op.drop_table('oauth_revoked_jti')
    op.drop_table('broker_secret')
