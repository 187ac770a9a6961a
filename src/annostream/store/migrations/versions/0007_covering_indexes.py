"""covering indexes: the lookups of queries carry the revision columns

Revision ID: 0007_covering_indexes
Revises: 0006_dataset_counts
Create Date: 2026-11-26

Every query term reads a derived table (``file_label_counts``, ``file_attribute_values``) or
the memberships (``dataset_files``) through an index, then tests the row's lifetime
(``created_rev``, ``deleted_rev``) at the revision read. With those two columns in the index,
the test is answered from the index itself: no lookup of the table row per match (a range
of 36k label counts: 22 -> 2.3 ms on SQLite). Each index is replaced by the same columns
plus the two revisions, under a short name (PostgreSQL's identifiers stop at 63). Indexes by
file take the columns a per-file test compares too (``dataset_id``; ``label_id`` and
``count``): a lookup by label must not become cheaper to the planner than the lookup by file
it had for a test of one file's row (first pages probe file by file).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_covering_indexes'
down_revision = '0006_dataset_counts'
branch_labels = None
depends_on = None

_REVS = ['created_rev', 'deleted_rev']
_PARTIAL_TEXT = {'postgresql_where': sa.text('length(text) < 1000')}
# (table, old index name, its columns, new index name, its columns before the revisions, options)
_INDEXES: list[tuple[str, str, list[str], str, list[str], dict[str, object]]] = [
    ('file_label_counts', 'ix_file_label_counts_label_id_count_file_id', ['label_id', 'count', 'file_id'],
     'ix_file_label_counts_by_label', ['label_id', 'count', 'file_id'], {}),
    ('file_label_counts', 'ix_file_label_counts_file_id_label_id', ['file_id', 'label_id'],
     'ix_file_label_counts_by_file', ['file_id', 'label_id', 'count'], {}),
    ('dataset_files', 'ix_dataset_files_dataset_id_file_id', ['dataset_id', 'file_id'],
     'ix_dataset_files_by_dataset', ['dataset_id', 'file_id'], {}),
    ('dataset_files', 'ix_dataset_files_file_id', ['file_id'],
     'ix_dataset_files_by_file', ['file_id', 'dataset_id'], {}),
    ('file_attribute_values', 'ix_file_attribute_values_key_kind_number_file_id',
     ['key', 'kind', 'number', 'file_id'],
     'ix_file_attribute_values_by_number', ['key', 'kind', 'number', 'file_id'], {}),
    ('file_attribute_values', 'ix_file_attribute_values_key_kind_text_file_id',
     ['key', 'kind', 'text', 'file_id'],
     'ix_file_attribute_values_by_text', ['key', 'kind', 'text', 'file_id'], _PARTIAL_TEXT),
]


def upgrade() -> None:
    for table, old, _, new, columns, options in _INDEXES:
        op.create_index(new, table, [*columns, *_REVS], **options)
        op.drop_index(old, table_name=table)


def downgrade() -> None:
    for table, old, columns, new, _, options in _INDEXES:
        op.create_index(old, table, columns, **options)
        op.drop_index(new, table_name=table)
