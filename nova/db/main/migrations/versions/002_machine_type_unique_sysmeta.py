"""Make system metadata keys unique per instance, for machine type records.

Revision ID: 002_machine_type_unique_sysmeta
Revises: 001_baseline
Create Date: 2026-11-25

A data migration. Recording ``hw_machine_type`` is insert-if-absent, done
concurrently by compute start-up, spawns and the online data migration;
a unique key on (instance_uuid, key, deleted) lets the database settle
those races. Deployments may already hold duplicated live rows (the
baseline schema allowed them), so they are soft-deleted first, keeping the
newest row of each (instance_uuid, key): the latest updated_at (or
created_at), then the highest id.
"""

import datetime

from alembic import op
import sqlalchemy as sa

revision = '002_machine_type_unique_sysmeta'
down_revision = '001_baseline'
branch_labels = None
depends_on = None

_EPOCH = datetime.datetime(1970, 1, 1)


def _soft_delete_duplicates(bind):
    # UPDATE instance_system_metadata SET deleted = id, deleted_at = :now
    #  WHERE id IN (SELECT id FROM (
    #      SELECT older.id FROM instance_system_metadata older
    #        JOIN instance_system_metadata newer
    #          ON newer.instance_uuid = older.instance_uuid
    #         AND newer.key = older.key AND newer.deleted = 0
    #         AND (stamp(newer) > stamp(older)
    #              OR (stamp(newer) = stamp(older) AND newer.id > older.id))
    #       WHERE older.deleted = 0) AS duplicates)
    # The derived table lets MySQL update the table it selects from.
    table = sa.table('instance_system_metadata',
                     sa.column('id'), sa.column('instance_uuid'),
                     sa.column('key'), sa.column('deleted'),
                     sa.column('deleted_at'), sa.column('created_at'),
                     sa.column('updated_at'))
    older = table.alias('older')
    newer = table.alias('newer')

    def stamp(t):
        return sa.func.coalesce(t.c.updated_at, t.c.created_at,
                                sa.literal(_EPOCH, sa.DateTime))

    duplicates = (
        sa.select(older.c.id)
        .select_from(older.join(newer, sa.and_(
            newer.c.instance_uuid == older.c.instance_uuid,
            newer.c.key == older.c.key,
            newer.c.deleted == 0,
            sa.or_(stamp(newer) > stamp(older),
                   sa.and_(stamp(newer) == stamp(older),
                           newer.c.id > older.c.id)))))
        .where(older.c.deleted == 0)
        .distinct()
        .subquery('duplicates'))
    bind.execute(
        table.update()
        .where(table.c.id.in_(sa.select(duplicates.c.id)))
        .values(deleted=table.c.id,
                deleted_at=datetime.datetime.now(datetime.timezone.utc)
                .replace(tzinfo=None)))


def upgrade():
    _soft_delete_duplicates(op.get_bind())
    with op.batch_alter_table('instance_system_metadata') as batch:
        batch.create_unique_constraint(
            'uniq_instance_system_metadata0instance_uuid0key0deleted',
            ['instance_uuid', 'key', 'deleted'])
        # Serves "which instances have machine type T" (summaries and bulk
        # updates); the unique key above serves the per-instance anti-join.
        batch.create_index('instance_system_metadata_key_value_idx',
                           ['key', 'deleted', 'value'])
