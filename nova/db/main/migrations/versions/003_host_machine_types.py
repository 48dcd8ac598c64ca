"""Add host_machine_types: what each compute host's libvirt supports.

Revision ID: 003_host_machine_types
Revises: 002_machine_type_unique_sysmeta
Create Date: 2026-11-25

nova-compute writes the machine types its host reports at start-up, so
that nova-manage and nova-status can check a machine type against a host
without reaching that host's libvirt.
"""

from alembic import op
import sqlalchemy as sa

revision = '003_host_machine_types'
down_revision = '002_machine_type_unique_sysmeta'
branch_labels = None
depends_on = None


def upgrade():
    # MySQL commits a CREATE TABLE at once: a run killed before the
    # version stamp left the table behind, and the rerun finds it.
    if sa.inspect(op.get_bind()).has_table('host_machine_types'):
        return
    op.create_table(
        'host_machine_types',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('arch', sa.String(32), nullable=False),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('canonical', sa.String(255)),
        sa.Column('deprecated', sa.Boolean, nullable=False),
        sa.Column('created_at', sa.DateTime),
        sa.Column('updated_at', sa.DateTime),
        sa.Column('deleted_at', sa.DateTime),
        sa.Column('deleted', sa.Integer, nullable=False),
        sa.UniqueConstraint('host', 'arch', 'name',
                            name='uniq_host_machine_types0host0arch0name'),
        mysql_engine='InnoDB', mysql_charset='utf8mb4')
