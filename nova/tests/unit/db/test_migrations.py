"""Alembic revisions of both databases: walk, compare with models, data.

Runs on SQLite here; nova/tests/functional/db/test_migrations.py runs the
same tests on MariaDB and PostgreSQL.
"""

import datetime

from alembic import autogenerate
from alembic import migration as alembic_migration
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from nova.db.api import models as api_models
from nova.db.main import models as main_models
from nova.db import migration
from nova.db import sysmeta_dedup
from nova import exception
from nova.tests import fixtures

MAIN_REVISIONS = ['001_baseline', '002_machine_type_unique_sysmeta',
                  '003_host_machine_types', '004_instances_host_id_idx',
                  '005_machine_type_drift', '006_migrations',
                  '007_sysmeta_key_value_id_idx']


def _without_innodb_id_suffix(diff):
    """``diff`` less the indexes InnoDB already ends with the primary key.

    Every InnoDB secondary index ends with the primary key, so a model
    index (a, b, id) and a database index (a, b) of one name are the same
    index: the revisions rename such an index rather than build it again
    (nova.db.online_schema.replace_index).
    """
    removed = {change[1].name: change[1] for change in diff
               if change[0] == 'remove_index'}
    same = set()
    for change in diff:
        if change[0] == 'add_index' and change[1].name in removed:
            added = [c.name for c in change[1].columns]
            had = [c.name for c in removed[change[1].name].columns]
            if added == had + ['id']:
                same.add(change[1].name)
    return [change for change in diff
            if change[0] not in ('add_index', 'remove_index')
            or change[1].name not in same]


class MigrationTests(fixtures.TestCase):
    DATABASE = None
    BACKEND = 'sqlite'

    def setUp(self):
        super().setUp()
        self.url = self.useFixture(
            fixtures.Database(self, self.BACKEND, 'migrate')).url
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)

    def _schema_diff(self, metadata):
        with self.engine.connect() as conn:
            ctxt = alembic_migration.MigrationContext.configure(
                conn, opts={'compare_type': True})
            diff = autogenerate.compare_metadata(ctxt, metadata)
        if self.engine.dialect.name in ('mysql', 'mariadb'):
            diff = _without_innodb_id_suffix(diff)
        return diff

    def test_walk_main_revisions_one_by_one(self):
        self.assertIsNone(migration.db_version(migration.MAIN, url=self.url))
        for revision in MAIN_REVISIONS:
            migration.db_sync(migration.MAIN, version=revision, url=self.url)
            self.assertEqual(revision,
                             migration.db_version(migration.MAIN,
                                                  url=self.url))
        self.assertEqual(MAIN_REVISIONS[-1],
                         migration.head_revision(migration.MAIN))
        self.assertEqual(tuple(MAIN_REVISIONS), main_models.REVISIONS)

    def test_second_sync_is_a_no_op(self):
        migration.db_sync(migration.MAIN, url=self.url)
        before = self._table_names()
        migration.db_sync(migration.MAIN, url=self.url)
        self.assertEqual(before, self._table_names())
        self.assertEqual(MAIN_REVISIONS[-1],
                         migration.db_version(migration.MAIN, url=self.url))

    def _table_names(self):
        return sorted(sa.inspect(self.engine).get_table_names())

    def test_main_models_match_migrations(self):
        migration.db_sync(migration.MAIN, url=self.url)
        self.assertEqual([], self._schema_diff(main_models.METADATA))

    def test_api_models_match_migrations(self):
        migration.db_sync(migration.API, url=self.url)
        self.assertEqual([], self._schema_diff(api_models.METADATA))

    def test_unknown_version_refused_and_nothing_written(self):
        err = self.assertRaises(exception.DBVersionNotFound,
                                migration.db_sync, migration.MAIN,
                                version='999_nope', url=self.url)
        self.assertIn('999_nope', err.format_message())
        self.assertEqual([], self._table_names())

    # -- the machine type revision's data migration ------------------------

    def _seed_duplicates(self):
        """Baseline rows: instance a has 3 live 'k' rows, b has one."""
        meta = sa.MetaData()
        instances = sa.Table('instances', meta, autoload_with=self.engine)
        sysmeta = sa.Table('instance_system_metadata', meta,
                           autoload_with=self.engine)
        t0 = datetime.datetime(2020, 1, 1)
        with self.engine.begin() as conn:
            for uuid in ('a', 'b'):
                conn.execute(instances.insert().values(uuid=uuid, deleted=0))
            rows = [
                # (instance, key, value, created_at, updated_at, deleted)
                ('a', 'k', 'oldest', t0, None, 0),
                ('a', 'k', 'updated-last', t0,
                 t0 + datetime.timedelta(days=3), 0),
                ('a', 'k', 'created-later', t0 + datetime.timedelta(days=1),
                 None, 0),
                ('a', 'other', 'x', t0, None, 0),
                ('b', 'k', 'only', t0, None, 0),
            ]
            for uuid, key, value, created, updated, deleted in rows:
                conn.execute(sysmeta.insert().values(
                    instance_uuid=uuid, key=key, value=value,
                    created_at=created, updated_at=updated, deleted=deleted))
        return sysmeta

    def test_upgrade_soft_deletes_duplicates_keeping_newest(self):
        migration.db_sync(migration.MAIN, version='001_baseline',
                          url=self.url)
        sysmeta = self._seed_duplicates()
        migration.db_sync(migration.MAIN, url=self.url)
        with self.engine.connect() as conn:
            live = conn.execute(
                sa.select(sysmeta.c.instance_uuid, sysmeta.c.key,
                          sysmeta.c.value)
                .where(sysmeta.c.deleted == 0)
                .order_by(sysmeta.c.instance_uuid, sysmeta.c.key)).all()
            dead = conn.execute(
                sa.select(sysmeta.c.value, sysmeta.c.id, sysmeta.c.deleted,
                          sysmeta.c.deleted_at)
                .where(sysmeta.c.deleted != 0)
                .order_by(sysmeta.c.value)).all()
        self.assertEqual([('a', 'k', 'updated-last'), ('a', 'other', 'x'),
                          ('b', 'k', 'only')], [tuple(r) for r in live])
        self.assertEqual(['created-later', 'oldest'], [r.value for r in dead])
        for row in dead:
            self.assertEqual(row.id, row.deleted)
            self.assertIsNotNone(row.deleted_at)

    def test_new_duplicate_live_row_refused_by_database(self):
        migration.db_sync(migration.MAIN, version='001_baseline',
                          url=self.url)
        sysmeta = self._seed_duplicates()
        migration.db_sync(migration.MAIN, url=self.url)
        with self.engine.connect() as conn:
            self.assertRaises(
                sa_exc.IntegrityError, conn.execute, sysmeta.insert().values(
                    instance_uuid='b', key='k', value='second', deleted=0))
            conn.rollback()
            # A soft-deleted row with the same key is still allowed.
            conn.execute(sysmeta.insert().values(
                instance_uuid='b', key='k', value='old', deleted=12345))
            conn.commit()

    def test_upgrade_keeps_keys_that_differ_in_case_or_spaces(self):
        """Keys are compared as Python compares them, on every server:
        only the exact duplicate goes, and each lookalike stays a key of
        its own for the unique key too."""
        migration.db_sync(migration.MAIN, version='001_baseline',
                          url=self.url)
        meta = sa.MetaData()
        instances = sa.Table('instances', meta, autoload_with=self.engine)
        sysmeta = sa.Table('instance_system_metadata', meta,
                           autoload_with=self.engine)
        t0 = datetime.datetime(2020, 1, 1)
        keys = ['image_Foo', 'image_foo', 'image_bar', 'image_bar ',
                'image_bär', 'image_bar']
        with self.engine.begin() as conn:
            conn.execute(instances.insert().values(uuid='c', deleted=0))
            for i, key in enumerate(keys):
                conn.execute(sysmeta.insert().values(
                    instance_uuid='c', key=key, value='v%d' % i,
                    created_at=t0 + datetime.timedelta(days=i), deleted=0))
        migration.db_sync(migration.MAIN, url=self.url)
        with self.engine.connect() as conn:
            live = conn.execute(
                sa.select(sysmeta.c.key, sysmeta.c.value)
                .where(sysmeta.c.deleted == 0)).all()
        self.assertEqual({'image_Foo': 'v0', 'image_foo': 'v1',
                          'image_bar ': 'v3', 'image_bär': 'v4',
                          'image_bar': 'v5'}, dict(live))
        self.assertEqual(5, len(live))
        with self.engine.connect() as conn:
            conn.execute(sysmeta.insert().values(
                instance_uuid='c', key='IMAGE_FOO', value='new', deleted=0))
            conn.commit()
            self.assertRaises(
                sa_exc.IntegrityError, conn.execute, sysmeta.insert().values(
                    instance_uuid='c', key='image_foo', value='second',
                    deleted=0))

    def test_duplicate_updated_between_read_and_soft_delete_is_kept(self):
        """A service updates the older copy in place after the
        de-duplication read it and before its UPDATE: that copy is now
        the newest and keeps its value; the other one goes."""
        migration.db_sync(migration.MAIN, version='001_baseline',
                          url=self.url)
        sysmeta = self._seed_duplicates()
        t0 = datetime.datetime(2020, 1, 1)
        later = t0 + datetime.timedelta(days=9)
        with self.engine.connect() as conn:
            oldest = conn.execute(sa.select(sysmeta.c.id).where(
                sysmeta.c.value == 'oldest')).scalar()
        other = sa.create_engine(self.url)
        self.addCleanup(other.dispose)
        written = []

        def service_writes(conn, cursor, statement, *args):
            if statement.lstrip().startswith('UPDATE') and not written:
                with other.begin() as client:
                    client.execute(sysmeta.update().where(
                        sysmeta.c.id == oldest).values(
                            value='updated-meanwhile', updated_at=later))
                written.append(statement)
        dedup = self.engine.connect().execution_options(
            isolation_level='AUTOCOMMIT')
        self.addCleanup(dedup.close)
        sa.event.listen(dedup, 'before_cursor_execute', service_writes)
        deleted, _ = sysmeta_dedup.soft_delete_duplicate_sysmeta(dedup)
        self.assertEqual(1, len(written))
        self.assertEqual(2, deleted)
        with self.engine.connect() as conn:
            live = conn.execute(sa.select(sysmeta.c.value).where(
                sysmeta.c.instance_uuid == 'a', sysmeta.c.key == 'k',
                sysmeta.c.deleted == 0)).scalars().all()
            dead = conn.execute(sa.select(
                sysmeta.c.value, sysmeta.c.id, sysmeta.c.deleted,
                sysmeta.c.deleted_at, sysmeta.c.updated_at).where(
                sysmeta.c.instance_uuid == 'a', sysmeta.c.key == 'k',
                sysmeta.c.deleted != 0).order_by(sysmeta.c.value)).all()
        self.assertEqual(['updated-meanwhile'], live)
        self.assertEqual(['created-later', 'updated-last'],
                         [row.value for row in dead])
        for row in dead:
            self.assertEqual(row.id, row.deleted)
            self.assertIsNotNone(row.deleted_at)
        # As Nova's soft delete: updated_at is left as it was.
        self.assertEqual([None, t0 + datetime.timedelta(days=3)],
                         [row.updated_at for row in dead])

    def test_rerun_after_a_kill_between_create_table_and_stamp(self):
        """MySQL commits a CREATE TABLE at once: a revision killed before
        its version stamp leaves its new table, and db sync again must
        finish, for each revision that creates one."""
        for revision, before in (('003_host_machine_types',
                                  '002_machine_type_unique_sysmeta'),
                                 ('005_machine_type_drift',
                                  '004_instances_host_id_idx'),
                                 ('006_migrations', '005_machine_type_drift')):
            migration.db_sync(migration.MAIN, version=revision, url=self.url)
            with self.engine.begin() as conn:
                conn.execute(sa.text('UPDATE alembic_version SET '
                                     'version_num = :v'), {'v': before})
            migration.db_sync(migration.MAIN, version=revision, url=self.url)
            self.assertEqual(revision, migration.db_version(
                migration.MAIN, url=self.url))
        migration.db_sync(migration.MAIN, url=self.url)
        self.assertEqual([], self._schema_diff(main_models.METADATA))
