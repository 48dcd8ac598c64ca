"""Index system metadata by (key, deleted, value, id) for bulk updates.

Revision ID: 007_sysmeta_key_value_id_idx
Revises: 006_migrations
Create Date: 2026-11-29

A bulk update of machine types reads the rows recorded with one value a
batch at a time, in id order (WHERE key = :key AND deleted = 0 AND
value = :old AND id > :after ORDER BY id LIMIT n). The index must end
with id for that: InnoDB's secondary indexes end with the primary key
anyway, PostgreSQL's order equal keys by their place in the table.

Revision 002 now builds this index itself. This revision converts a
database that an earlier 002 gave (key, deleted, value): renamed on
MySQL/MariaDB (the same index there), built then dropped on PostgreSQL
(nova.db.online_schema.replace_index); on a database 002 gave the new
index it does nothing.
"""

from alembic import op
import sqlalchemy as sa

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
    connection = op.get_bind()
    if connection.dialect.name == 'sqlite':
        names = {index['name']
                 for index in sa.inspect(connection).get_indexes(TABLE)}
        if OLD in names:
            with op.batch_alter_table(TABLE) as batch:
                batch.drop_index(OLD)
                batch.create_index(NEW, NEW_COLUMNS)
        return
    with op.get_context().autocommit_block():
        online_schema.replace_index(connection, TABLE, OLD, NEW, NEW_COLUMNS,
                                    report=migration.progress_reporter())
