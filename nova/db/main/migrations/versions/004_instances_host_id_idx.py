"""Index instances by (host, deleted, id) for paging host-less instances.

Revision ID: 004_instances_host_id_idx
Revises: 003_host_machine_types
Create Date: 2026-11-25

The online data migration pages through live instances without a host in
id order (WHERE host IS NULL AND deleted = 0 AND id > :marker ORDER BY
id LIMIT n). InnoDB's secondary indexes end with the primary key, so
(host, deleted) already serves that on MySQL; PostgreSQL's do not, and
each page walked the primary key from the marker over every instance.
With id in the index every page is a range scan of host-less instances.
Built online on MySQL and PostgreSQL (nova.db.online_schema).
"""

from alembic import op

from nova.db import migration
from nova.db import online_schema

revision = '004_instances_host_id_idx'
down_revision = '003_host_machine_types'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('instances') as batch:
            batch.drop_index('instances_host_deleted_idx')
            batch.create_index('instances_host_deleted_id_idx',
                               ['host', 'deleted', 'id'])
        return
    # The new index first: the old one keeps serving until it exists.
    with op.get_context().autocommit_block():
        connection = op.get_bind()
        online_schema.create_index(
            connection, 'instances', 'instances_host_deleted_id_idx',
            ['host', 'deleted', 'id'], report=migration.progress_reporter())
        online_schema.drop_index(connection, 'instances',
                                 'instances_host_deleted_idx')
