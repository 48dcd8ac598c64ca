"""Index builds on PostgreSQL under an operator's session settings.

A role or database may set ``statement_timeout`` and ``lock_timeout``; a
concurrent index build can take minutes and waits inside its one
statement for older transactions. The builds must not be cancelled by
those settings, must hand them back afterwards, and a build that fails
must not leave its INVALID index behind.
"""

import sqlalchemy as sa

from nova.db import migration
from nova.db import online_schema
from nova import exception
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base

TABLE = 'instance_system_metadata'
UNIQUE = 'uniq_instance_system_metadata0instance_uuid0key0deleted'


class PostgreSQLBuildTests(base.ReliabilityTestCase):

    CELL_REVISION = '001_baseline'

    def autocommit(self):
        conn = self.engine.connect().execution_options(
            isolation_level='AUTOCOMMIT')
        self.addCleanup(conn.close)
        return conn

    def invalid_indexes(self):
        return [row[0] for row in self.execute(
            'SELECT c.relname FROM pg_index i '
            'JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid')]

    def test_failed_unique_build_leaves_no_invalid_index(self):
        self.seed(200)
        self.execute(
            'INSERT INTO instance_system_metadata (instance_uuid, "key", '
            'value, deleted) SELECT instance_uuid, "key", value, 0 FROM '
            'instance_system_metadata WHERE id = (SELECT min(id) FROM '
            'instance_system_metadata)')
        conn = self.autocommit()
        self.assertRaises(exception.DBDuplicatesDuringIndexBuild,
                          online_schema.create_index, conn, TABLE, UNIQUE,
                          ['instance_uuid', 'key', 'deleted'], unique=True)
        self.assertEqual([], self.invalid_indexes())
        self.assertFalse(online_schema.index_exists(conn, TABLE, UNIQUE))

    def test_build_gives_the_session_its_settings_back(self):
        self.seed(200)
        conn = self.autocommit()
        conn.execute(sa.text("SET statement_timeout = '4s'"))
        conn.execute(sa.text("SET lock_timeout = '3s'"))
        online_schema.create_index(conn, TABLE, UNIQUE,
                                   ['instance_uuid', 'key', 'deleted'],
                                   unique=True)
        self.assertTrue(online_schema.index_exists(conn, TABLE, UNIQUE))
        self.assertEqual(('4s', '3s'), tuple(conn.execute(sa.text(
            "SELECT current_setting('statement_timeout'), "
            "current_setting('lock_timeout')")).one()))

    def test_sync_outlasts_a_database_statement_timeout(self):
        """The database's statement_timeout (2 s) and lock_timeout (1 s)
        are shorter than a build's wait for a client's transaction: the
        build waits it out, saying for whom, and db sync succeeds."""
        self.seed(200)
        name = self.engine.url.database
        self.execute("ALTER DATABASE %s SET statement_timeout = '2s'" % name)
        self.execute("ALTER DATABASE %s SET lock_timeout = '1s'" % name)
        held = self.engine.connect()
        self.addCleanup(held.close)
        held.begin()
        held.execute(sa.text('UPDATE instance_system_metadata '
                             'SET deleted = deleted WHERE id = (SELECT '
                             'min(id) FROM instance_system_metadata)'))
        holder = held.execute(sa.text('SELECT pg_backend_pid()')).scalar()
        process = self.start(base.NOVA_MANAGE, self.config(),
                             'db', 'sync', '--local_cell')
        self.assertTrue(process.wait_for('session %s (' % holder),
                        process.describe())
        # Past both time-outs, still waiting, not failed.
        self.assertTrue(base.poll(
            lambda: self.waited_since(holder) > 3, 30))
        self.assertIsNone(process.proc.poll(), process.describe())
        held.rollback()
        self.assertClean(process)
        self.assertEqual(migration.head_revision(migration.MAIN),
                         migration.db_version(migration.MAIN,
                                              url=self.cell_url))
        self.assertEqual([], self.invalid_indexes())

    def waited_since(self, holder):
        """Seconds the oldest session blocked by ``holder`` has waited."""
        return self.execute(
            'SELECT coalesce(max(extract(epoch FROM now() - query_start)), '
            '0) FROM pg_stat_activity WHERE :pid = ANY('
            'pg_blocking_pids(pid))', pid=holder)[0][0]


globals().update(nova_fixtures.backend_variants(
    PostgreSQLBuildTests, ('postgresql',)))
del PostgreSQLBuildTests
