"""video and text: probed video facts on files; keyframe flag and frame/character range on instances

Revision ID: 0002_video
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_video'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files') as batch:
        batch.add_column(sa.Column('duration', sa.Float(), nullable=True))
        batch.add_column(sa.Column('codec', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('keyframes', sa.JSON(), nullable=True))
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('keyframe', sa.Boolean(), nullable=True))
        batch.add_column(sa.Column('range_start', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('range_end', sa.Integer(), nullable=True))
    op.create_index(op.f('ix_files_project_id_type'), 'files', ['project_id', 'type'])
    op.create_index(op.f('ix_instances_file_id_frame_number'), 'instances', ['file_id', 'frame_number'])


def downgrade() -> None:
    op.drop_index(op.f('ix_instances_file_id_frame_number'), table_name='instances')
    op.drop_index(op.f('ix_files_project_id_type'), table_name='files')
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('range_end')
        batch.drop_column('range_start')
        batch.drop_column('keyframe')
    with op.batch_alter_table('files') as batch:
        batch.drop_column('keyframes')
        batch.drop_column('codec')
        batch.drop_column('duration')
