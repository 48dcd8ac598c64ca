"""Index instances by (host, deleted, id) for paging host-less instances.

Revision ID: 004_instances_host_id_idx
Revises: 003_host_machine_types
Create Date: 2026-11-25

The online data migration pages through live instances without a host in
id order (WHERE host IS NULL AND deleted = 0 AND id > :marker ORDER BY
id LIMIT n). PostgreSQL's (host, deleted) index orders equal keys by
their place in the table, so each page walked the primary key from the
marker over every instance; with id in the index every page is a range
scan of host-less instances. InnoDB ends every secondary index with the
primary key: on MySQL/MariaDB (host, deleted) already is that index, and
is only renamed. Online on MySQL and PostgreSQL
(nova.db.online_schema.replace_index).
"""

from alembic import op

from nova.db import migration
from nova.db import online_schema

revision = '004_instances_host_id_idx'
down_revision = '003_host_machine_types'
branch_labels = None
depends_on = None

OLD = 'instances_host_deleted_idx'
NEW = 'instances_host_deleted_id_idx'
NEW_COLUMNS = ['host', 'deleted', 'id']


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('instances') as batch:
            batch.drop_index(OLD)
            batch.create_index(NEW, NEW_COLUMNS)
        return
    with op.get_context().autocommit_block():
        online_schema.replace_index(
            op.get_bind(), 'instances', OLD, NEW, NEW_COLUMNS,
            report=migration.progress_reporter())
