"""Add machine_type_drift: live domains that run another machine type.

Revision ID: 005_machine_type_drift
Revises: 004_instances_host_id_idx
Create Date: 2026-11-26

nova-compute compares, at start-up, the machine type of every live domain
of its host with its instance's record and stores here the instances
whose domain runs another type (a domain edited by hand, or an alias that
a newer QEMU expanded differently), so that nova-status can name them and
their hosts without reaching any host's libvirt. A new, empty table: no
lock on any existing table, so it is online by construction.
"""

from alembic import op
import sqlalchemy as sa

revision = '005_machine_type_drift'
down_revision = '004_instances_host_id_idx'
branch_labels = None
depends_on = None


def upgrade():
    # MySQL commits a CREATE TABLE at once: a run killed before the
    # version stamp left the table behind, and the rerun finds it.
    if sa.inspect(op.get_bind()).has_table('machine_type_drift'):
        return
    op.create_table(
        'machine_type_drift',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=False),
        sa.Column('recorded', sa.String(255), nullable=False),
        sa.Column('running', sa.String(255), nullable=False),
        sa.Column('created_at', sa.DateTime),
        sa.Column('updated_at', sa.DateTime),
        sa.Column('deleted_at', sa.DateTime),
        sa.Column('deleted', sa.Integer, nullable=False),
        sa.UniqueConstraint(
            'host', 'instance_uuid',
            name='uniq_machine_type_drift0host0instance_uuid'),
        mysql_engine='InnoDB', mysql_charset='utf8mb4')
