"""dataset counts: the derived, versioned per-dataset aggregates, backfilled at the head

Revision ID: 0006_dataset_counts
Revises: 0005_attr_index
Create Date: 2026-11-26

The backfill is set-based (one INSERT ... SELECT ... GROUP BY per kind of row, from the
derived per-file tables joined with the live memberships), so it runs in the database at
the speed of two grouped scans. It writes each project's state at its head revision and
sets ``projects.counts_from`` to that head: revisions before it are counted as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from annostream.service.dataset_counts import rebuild_counts

revision = '0006_dataset_counts'
down_revision = '0005_attr_index'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # A plain ADD COLUMN (a batch copy of projects on SQLite would have to drop it).
    op.add_column('projects', sa.Column('counts_from', sa.Integer(), nullable=True))
    op.create_table(
        'dataset_counts',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('dataset_id', _ID, nullable=False),
        sa.Column('label_id', _ID, nullable=True),
        sa.Column('count', sa.Integer(), nullable=True),
        sa.Column('key', sa.String(length=200), nullable=True),
        sa.Column('kind', sa.String(length=8), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('number', sa.Float(), nullable=True),
        sa.Column('files', sa.Integer(), nullable=False),
        sa.Column('created_rev', sa.Integer(), nullable=False),
        sa.Column('deleted_rev', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'],
                                name=op.f('fk_dataset_counts_dataset_id_datasets')),
        sa.ForeignKeyConstraint(['label_id'], ['labels.id'], name=op.f('fk_dataset_counts_label_id_labels')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_counts')),
    )
    rebuild_counts(op.get_bind())
    op.create_index(op.f('ix_dataset_counts_dataset_id_label_id_count'), 'dataset_counts',
                    ['dataset_id', 'label_id', 'count'])
    op.create_index(op.f('ix_dataset_counts_dataset_id_key_kind_text'), 'dataset_counts',
                    ['dataset_id', 'key', 'kind', 'text'])
    op.create_index(op.f('ix_dataset_counts_dataset_id_key_kind_number'), 'dataset_counts',
                    ['dataset_id', 'key', 'kind', 'number'])


def downgrade() -> None:
    op.drop_table('dataset_counts')
    op.execute('ALTER TABLE projects DROP COLUMN counts_from')  # SQLite >= 3.35 and PostgreSQL
