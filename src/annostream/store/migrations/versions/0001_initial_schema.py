"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_blobs'))
    )
    op.create_table('projects',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('string_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('is_public', sa.Boolean(), nullable=False),
    sa.Column('head_rev', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('string_id', name=op.f('uq_projects_string_id'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_api_keys_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('client_id', name=op.f('uq_api_keys_client_id'))
    )
    op.create_table('attribute_groups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_attribute_groups_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attribute_groups'))
    )
    with op.batch_alter_table('attribute_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attribute_groups_project_id'), ['project_id'], unique=False)

    op.create_table('datasets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_datasets_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets'))
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_datasets_project_id_name'), ['project_id', 'name'], unique=False)

    op.create_table('files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('original_filename', sa.String(length=500), nullable=False),
    sa.Column('blob_sha256', sa.String(length=64), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('frame_count', sa.Integer(), nullable=True),
    sa.Column('fps', sa.Float(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('frame_number', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['blob_sha256'], ['blobs.sha256'], name=op.f('fk_files_blob_sha256_blobs')),
    sa.ForeignKeyConstraint(['parent_id'], ['files.id'], name=op.f('fk_files_parent_id_files')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_files_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files'))
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_files_project_id_blob_sha256'), ['project_id', 'blob_sha256'], unique=False)

    op.create_table('labels',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label_index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('color', sa.String(length=16), nullable=True),
    sa.Column('schema_name', sa.String(length=200), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_labels_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labels')),
    sa.UniqueConstraint('project_id', 'label_index', name=op.f('uq_labels_project_id_label_index'))
    )
    op.create_table('revision_tags',
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('rev', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_revision_tags_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'name', name=op.f('pk_revision_tags'))
    )
    op.create_table('revisions',
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rev', sa.Integer(), nullable=False),
    sa.Column('message', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_revisions_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'rev', name=op.f('pk_revisions'))
    )
    op.create_table('attribute_options',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('group_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['group_id'], ['attribute_groups.id'], name=op.f('fk_attribute_options_group_id_attribute_groups')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attribute_options'))
    )
    with op.batch_alter_table('attribute_options', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attribute_options_group_id'), ['group_id'], unique=False)

    op.create_table('dataset_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('dataset_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_files_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_dataset_files_file_id_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_files'))
    )
    with op.batch_alter_table('dataset_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_files_dataset_id_file_id'), ['dataset_id', 'file_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_files_file_id'), ['file_id'], unique=False)

    op.create_table('file_label_counts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_file_label_counts_file_id_files')),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], name=op.f('fk_file_label_counts_label_id_labels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_file_label_counts'))
    )
    with op.batch_alter_table('file_label_counts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_file_label_counts_file_id_label_id'), ['file_id', 'label_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_file_label_counts_label_id_count_file_id'), ['label_id', 'count', 'file_id'], unique=False)

    op.create_table('instances',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('frame_number', sa.Integer(), nullable=True),
    sa.Column('label_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('geometry', sa.JSON(), nullable=False),
    sa.Column('x_min', sa.Float(), nullable=True),
    sa.Column('y_min', sa.Float(), nullable=True),
    sa.Column('x_max', sa.Float(), nullable=True),
    sa.Column('y_max', sa.Float(), nullable=True),
    sa.Column('area', sa.Float(), nullable=True),
    sa.Column('iscrowd', sa.Boolean(), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=True),
    sa.Column('machine_made', sa.Boolean(), nullable=False),
    sa.Column('created_rev', sa.Integer(), nullable=False),
    sa.Column('deleted_rev', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_instances_file_id_files')),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], name=op.f('fk_instances_label_id_labels')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_instances_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instances'))
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instances_file_id_deleted_rev'), ['file_id', 'deleted_rev'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_project_id_created_rev'), ['project_id', 'created_rev'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_project_id_deleted_rev'), ['project_id', 'deleted_rev'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instances_project_id_deleted_rev'))
        batch_op.drop_index(batch_op.f('ix_instances_project_id_created_rev'))
        batch_op.drop_index(batch_op.f('ix_instances_file_id_deleted_rev'))

    op.drop_table('instances')
    with op.batch_alter_table('file_label_counts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_file_label_counts_label_id_count_file_id'))
        batch_op.drop_index(batch_op.f('ix_file_label_counts_file_id_label_id'))

    op.drop_table('file_label_counts')
    with op.batch_alter_table('dataset_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_files_file_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_files_dataset_id_file_id'))

    op.drop_table('dataset_files')
    with op.batch_alter_table('attribute_options', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attribute_options_group_id'))

    op.drop_table('attribute_options')
    op.drop_table('revisions')
    op.drop_table('revision_tags')
    op.drop_table('labels')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_project_id_blob_sha256'))
        batch_op.drop_index(batch_op.f('ix_files_parent_id'))

    op.drop_table('files')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_datasets_project_id_name'))

    op.drop_table('datasets')
    with op.batch_alter_table('attribute_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attribute_groups_project_id'))

    op.drop_table('attribute_groups')
    op.drop_table('api_keys')
    op.drop_table('projects')
    op.drop_table('blobs')
