"""The API database: which cell each instance and compute host lives in."""

import sqlalchemy as sa

from nova.db import models_base

METADATA = sa.MetaData()

CELL_MAPPINGS = sa.Table(
    'cell_mappings', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('uuid', sa.String(36), nullable=False),
    sa.Column('name', sa.String(255)),
    sa.Column('transport_url', sa.Text),
    sa.Column('database_connection', sa.Text),
    sa.Column('disabled', sa.Boolean, nullable=False, default=False),
    *models_base.nova_columns(),
    sa.UniqueConstraint('uuid', name='uniq_cell_mappings0uuid'),
)

INSTANCE_MAPPINGS = sa.Table(
    'instance_mappings', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('instance_uuid', sa.String(36), nullable=False),
    sa.Column('cell_id', sa.Integer, sa.ForeignKey('cell_mappings.id')),
    sa.Column('project_id', sa.String(255), nullable=False),
    sa.Column('user_id', sa.String(255)),
    sa.Column('queued_for_delete', sa.Boolean, default=False),
    *models_base.nova_columns(),
    sa.UniqueConstraint('instance_uuid',
                        name='uniq_instance_mappings0instance_uuid'),
    sa.Index('instance_mappings_cell_id_idx', 'cell_id'),
    sa.Index('instance_mappings_project_id_idx', 'project_id'),
)

HOST_MAPPINGS = sa.Table(
    'host_mappings', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('cell_id', sa.Integer, sa.ForeignKey('cell_mappings.id'),
              nullable=False),
    sa.Column('host', sa.String(255), nullable=False),
    *models_base.nova_columns(),
    sa.UniqueConstraint('host', name='uniq_host_mappings0host'),
    sa.Index('host_mappings_cell_id_idx', 'cell_id'),
)
