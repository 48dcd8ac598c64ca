"""Index system metadata by (key, deleted, value, id) for bulk updates.

Revision ID: 007_sysmeta_key_value_id_idx
Revises: 006_migrations
Create Date: 2026-11-29

A bulk update of machine types reads the rows recorded with one value a
batch at a time, in id order (WHERE key = :key AND deleted = 0 AND
value = :old AND id > :after ORDER BY id LIMIT n). InnoDB's secondary
indexes end with the primary key, so (key, deleted, value) already
serves that on MySQL; PostgreSQL's order equal keys by their place in
the table, so each batch walked the primary key from :after and filtered
every other key's rows out: together a cell's batches read its whole
system metadata table. With id in the index each batch is a range of it.
The same change as 004_instances_host_id_idx, for the same reason. Built
online on MySQL and PostgreSQL (nova.db.online_schema).
"""

from alembic import op

from nova.db import migration
from nova.db import online_schema

revision = '007_sysmeta_key_value_id_idx'
down_revision = '006_migrations'
branch_labels = None
depends_on = None

TABLE = 'instance_system_metadata'
OLD = 'instance_system_metadata_key_value_idx'
NEW = 'instance_system_metadata_key_value_id_idx'
NEW_COLUMNS = ['key', 'deleted', 'value', 'id']


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table(TABLE) as batch:
            batch.drop_index(OLD)
            batch.create_index(NEW, NEW_COLUMNS)
        return
    # The new index first: the old one keeps serving until it exists.
    with op.get_context().autocommit_block():
        connection = op.get_bind()
        online_schema.create_index(connection, TABLE, NEW, NEW_COLUMNS,
                                   report=migration.progress_reporter())
        online_schema.drop_index(connection, TABLE, OLD)
