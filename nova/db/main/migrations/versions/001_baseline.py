"""Baseline: the cell database before machine types were recorded.

Revision ID: 001_baseline
Revises:
Create Date: 2026-11-25

System metadata keys have no uniqueness: a deployment upgraded from this
revision may hold several live rows for one (instance, key).
"""

from alembic import op
import sqlalchemy as sa

revision = '001_baseline'
down_revision = None
branch_labels = None
depends_on = None

TABLE_ARGS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'}


def _timestamps():
    return [sa.Column('created_at', sa.DateTime),
            sa.Column('updated_at', sa.DateTime),
            sa.Column('deleted_at', sa.DateTime),
            sa.Column('deleted', sa.Integer, nullable=False)]


def upgrade():
    op.create_table(
        'instances',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('uuid', sa.String(36), nullable=False),
        sa.Column('user_id', sa.String(255)),
        sa.Column('project_id', sa.String(255)),
        sa.Column('image_ref', sa.String(255)),
        sa.Column('display_name', sa.String(255)),
        sa.Column('host', sa.String(255)),
        sa.Column('node', sa.String(255)),
        sa.Column('architecture', sa.String(255)),
        sa.Column('vm_state', sa.String(255)),
        sa.Column('task_state', sa.String(255)),
        sa.Column('power_state', sa.Integer),
        sa.Column('launched_at', sa.DateTime),
        sa.Column('terminated_at', sa.DateTime),
        *_timestamps(),
        sa.UniqueConstraint('uuid', name='uniq_instances0uuid'),
        sa.Index('instances_host_deleted_idx', 'host', 'deleted'),
        sa.Index('instances_deleted_vm_state_idx', 'deleted', 'vm_state'),
        **TABLE_ARGS)

    op.create_table(
        'instance_system_metadata',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('instance_uuid', sa.String(36),
                  sa.ForeignKey('instances.uuid'), nullable=False),
        sa.Column('key', sa.String(255), nullable=False),
        sa.Column('value', sa.String(255)),
        *_timestamps(),
        sa.Index('instance_uuid', 'instance_uuid'),
        **TABLE_ARGS)

    op.create_table(
        'instance_faults',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('instance_uuid', sa.String(36),
                  sa.ForeignKey('instances.uuid')),
        sa.Column('code', sa.Integer, nullable=False),
        sa.Column('message', sa.String(255)),
        sa.Column('details', sa.Text),
        sa.Column('host', sa.String(255)),
        *_timestamps(),
        sa.Index('instance_faults_instance_uuid_deleted_created_at_idx',
                 'instance_uuid', 'deleted', 'created_at'),
        **TABLE_ARGS)

    op.create_table(
        'services',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('uuid', sa.String(36)),
        sa.Column('host', sa.String(255)),
        sa.Column('binary', sa.String(255)),
        sa.Column('topic', sa.String(255)),
        sa.Column('report_count', sa.Integer, nullable=False),
        sa.Column('disabled', sa.Boolean),
        sa.Column('version', sa.Integer),
        sa.Column('last_seen_up', sa.DateTime),
        *_timestamps(),
        sa.UniqueConstraint('host', 'binary', 'deleted',
                            name='uniq_services0host0binary0deleted'),
        **TABLE_ARGS)
