"""Make system metadata keys unique per instance, for machine type records.

Revision ID: 002_machine_type_unique_sysmeta
Revises: 001_baseline
Create Date: 2026-11-25

A data migration, run online (see nova.db.online_schema). Recording
``hw_machine_type`` is insert-if-absent, done concurrently by compute
start-up, spawns and the online data migration;
a unique key on (instance_uuid, key, deleted) lets the database settle
those races. Deployments may already hold duplicated live rows (the
baseline schema allowed them), so they are soft-deleted first, keeping the
newest row of each (instance_uuid, key): the latest updated_at (or
created_at), then the highest id.

Keys are compared exactly, as Nova's objects compare them: on MySQL and
MariaDB the ``key`` column first gets a binary NO PAD collation, so that
``image_Foo``, ``image_foo`` and ``image_foo `` stay three keys for the
de-duplication, the unique key and every query.
"""

from alembic import op

from nova.db import migration
from nova.db import online_schema
from nova.db import sync_waits
from nova.db import sysmeta_dedup
from nova.db import table_copy
from nova import exception

revision = '002_machine_type_unique_sysmeta'
down_revision = '001_baseline'
branch_labels = None
depends_on = None

TABLE = 'instance_system_metadata'
UNIQUE = 'uniq_instance_system_metadata0instance_uuid0key0deleted'
UNIQUE_COLUMNS = ['instance_uuid', 'key', 'deleted']
# Serves "which instances have machine type T" (summaries and bulk
# updates, a batch at a time in id order); the unique key serves the
# per-instance anti-join. Built here in its final form (revision 007
# only converts databases an earlier 002 gave (key, deleted, value)).
KEY_VALUE = 'instance_system_metadata_key_value_id_idx'
KEY_VALUE_COLUMNS = ['key', 'deleted', 'value', 'id']
# A service not yet upgraded may write a duplicate while the unique index
# is being built; the build then fails, and is tried again after another
# de-duplication pass over the rows written since the last one.
UNIQUE_ATTEMPTS = 3


def _upgrade_online(connection, report):
    """De-duplicate in batches, then build the indexes online.

    Each index of the final schema is built once, and nothing else is
    built. Each step is skipped if done already, so a run that was
    interrupted is finished by running it again.
    """
    # First, while no index covers ``key``: a metadata-only change.
    online_schema.make_column_exact(connection, TABLE, 'key', 255, report)
    since = None
    for attempt in range(1, UNIQUE_ATTEMPTS + 1):
        if not online_schema.index_exists(connection, TABLE, UNIQUE):
            _, since = sysmeta_dedup.soft_delete_duplicate_sysmeta(
                connection, report, since_id=since)
        try:
            online_schema.create_index(connection, TABLE, UNIQUE,
                                       UNIQUE_COLUMNS, unique=True,
                                       report=report)
            break
        except exception.DBDuplicatesDuringIndexBuild as exc:
            if attempt == UNIQUE_ATTEMPTS:
                raise exception.DBDuplicatesDuringIndexBuild(
                    index=UNIQUE, table=TABLE, attempts=attempt) from exc
            report('  duplicates were written while %s was built; '
                   'de-duplicating the rows written meanwhile' % UNIQUE)
    online_schema.create_index(connection, TABLE, KEY_VALUE,
                               KEY_VALUE_COLUMNS, report=report)


def _upgrade_galera(connection, report):
    """The same end state on a Galera cluster, without a build in total
    order: de-duplicate, then copy the table into one with both indexes
    (nova.db.table_copy). A run that was interrupted starts the copy
    again."""
    online_schema.make_column_exact(connection, TABLE, 'key', 255, report)
    table_copy.drop_leftovers(connection, TABLE, report)
    missing = [(unique, name, columns) for unique, name, columns in (
        (True, UNIQUE, UNIQUE_COLUMNS), (False, KEY_VALUE, KEY_VALUE_COLUMNS))
        if not online_schema.index_exists(connection, TABLE, name)]
    if not missing:
        return
    # Before the de-duplication: a cell without the disk is left as it was.
    table_copy.check_space(connection, TABLE, report)
    sysmeta_dedup.soft_delete_duplicate_sysmeta(connection, report)
    table_copy.rebuild(connection, TABLE, missing, UNIQUE_COLUMNS, report)


def _upgrade_sqlite(connection):
    """SQLite: the same result with a table rebuild (embedded, one user)."""
    sysmeta_dedup.soft_delete_duplicate_sysmeta(connection)
    with op.batch_alter_table(TABLE) as batch:
        batch.create_unique_constraint(UNIQUE, UNIQUE_COLUMNS)
        batch.create_index(KEY_VALUE, KEY_VALUE_COLUMNS)


def upgrade():
    report = migration.progress_reporter()
    if op.get_bind().dialect.name == 'sqlite':
        _upgrade_sqlite(op.get_bind())
        return
    with op.get_context().autocommit_block():
        if sync_waits.on_galera(op.get_bind()):
            _upgrade_galera(op.get_bind(), report)
        else:
            _upgrade_online(op.get_bind(), report)
