"""attribute index: the derived, versioned file_attribute_values table, backfilled

Revision ID: 0005_attr_index
Revises: 0004_imports
Create Date: 2026-11-25

The backfill rebuilds the whole history from the instances' own lifetimes, so queries
``as_of`` an old revision answer on a migrated store as they did before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from annostream.service.attribute_index import history_rows

revision = '0005_attr_index'
down_revision = '0004_imports'
branch_labels = None
depends_on = None

_FILES_PER_BATCH = 2000


def upgrade() -> None:
    table = op.create_table(
        'file_attribute_values',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('number', sa.Float(), nullable=True),
        sa.Column('created_rev', sa.Integer(), nullable=False),
        sa.Column('deleted_rev', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['file_id'], ['files.id'],
                                name=op.f('fk_file_attribute_values_file_id_files')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_file_attribute_values')),
    )
    _backfill(table)
    op.create_index(op.f('ix_file_attribute_values_key_kind_number_file_id'), 'file_attribute_values',
                    ['key', 'kind', 'number', 'file_id'])
    op.create_index(op.f('ix_file_attribute_values_file_id_deleted_rev'), 'file_attribute_values',
                    ['file_id', 'deleted_rev'])
    op.create_index(op.f('ix_file_attribute_values_key_kind_text_file_id'), 'file_attribute_values',
                    ['key', 'kind', 'text', 'file_id'],
                    postgresql_where=sa.text('length(text) < 1000'))


def _backfill(table: sa.Table) -> None:
    conn = op.get_bind()
    instances = sa.table('instances', sa.column('file_id'), sa.column('attributes', sa.JSON),
                         sa.column('created_rev'), sa.column('deleted_rev'))
    files = sa.table('files', sa.column('id'))
    after = -1
    while True:
        ids = list(conn.execute(sa.select(files.c.id).where(files.c.id > after)
                                .order_by(files.c.id).limit(_FILES_PER_BATCH)).scalars())
        if not ids:
            return
        after = ids[-1]
        rows = conn.execute(sa.select(instances).where(instances.c.file_id.in_(ids))).mappings()
        fresh = list(history_rows(rows))
        if fresh:
            conn.execute(sa.insert(table), fresh)


def downgrade() -> None:
    op.drop_table('file_attribute_values')
