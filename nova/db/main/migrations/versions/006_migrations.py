"""Add migrations: the cold migrations in progress, as Nova keeps them.

Revision ID: 006_migrations
Revises: 005_machine_type_drift
Create Date: 2026-11-27

A cold migration waits in RESIZED for its confirm or revert, which may
come after either host's nova-compute restarted (an upgrade restarts
them all): who moves the instance where, and the vm_state to come back
to, must outlive the process that started it. Nova's column names;
``old_vm_state`` is what Nova keeps in the instance's system metadata.

A new, empty table: no lock on any existing table, so it is online by
construction. No foreign key to ``instances``: on MySQL/MariaDB creating
one takes a metadata lock on ``instances`` that waits behind its open
transactions and blocks every client queued after it.
"""

from alembic import op
import sqlalchemy as sa

revision = '006_migrations'
down_revision = '005_machine_type_drift'
branch_labels = None
depends_on = None


def upgrade():
    # MySQL commits a CREATE TABLE at once: a run killed before the
    # version stamp left the table behind, and the rerun finds it.
    if sa.inspect(op.get_bind()).has_table('migrations'):
        return
    op.create_table(
        'migrations',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('uuid', sa.String(36), nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=False),
        sa.Column('source_compute', sa.String(255)),
        sa.Column('dest_compute', sa.String(255)),
        sa.Column('source_node', sa.String(255)),
        sa.Column('dest_node', sa.String(255)),
        sa.Column('migration_type', sa.String(32)),
        sa.Column('status', sa.String(255)),
        sa.Column('old_vm_state', sa.String(255)),
        sa.Column('created_at', sa.DateTime),
        sa.Column('updated_at', sa.DateTime),
        sa.Column('deleted_at', sa.DateTime),
        sa.Column('deleted', sa.Integer, nullable=False),
        sa.UniqueConstraint('uuid', name='uniq_migrations0uuid'),
        sa.Index('migrations_instance_uuid_and_status_idx',
                 'deleted', 'instance_uuid', 'status'),
        mysql_engine='InnoDB', mysql_charset='utf8mb4')
