"""staged blobs and import idempotency keys

Revision ID: 0004_imports
Revises: 0003_keys
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_imports'
down_revision = '0003_keys'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('staged_blobs',
    sa.Column('project_id', _ID, nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_staged_blobs_project_id_projects')),
    sa.ForeignKeyConstraint(['sha256'], ['blobs.sha256'], name=op.f('fk_staged_blobs_sha256_blobs')),
    sa.PrimaryKeyConstraint('project_id', 'sha256', name=op.f('pk_staged_blobs'))
    )
    op.create_table('import_keys',
    sa.Column('project_id', _ID, nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_import_keys_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'key', name=op.f('pk_import_keys'))
    )


def downgrade() -> None:
    op.drop_table('import_keys')
    op.drop_table('staged_blobs')
