"""nova.db.table_copy on MariaDB: what the Galera path of revision 002
does, step by step, on a cell at the baseline.

The copy is plain SQL, so one MariaDB server shows what it keeps; the
cluster tests (test_galera.py) show it under clients and kills.
"""

import datetime
import importlib
import os
import uuid as uuid_lib

import fixtures
import sqlalchemy as sa

from nova.db import online_schema
from nova.db import table_copy
from nova import exception
from nova.tests import fixtures as nova_fixtures

TABLE = 'instance_system_metadata'
UNIQUE = 'uniq_instance_system_metadata0instance_uuid0key0deleted'
UNIQUE_COLUMNS = ['instance_uuid', 'key', 'deleted']
KEY_VALUE = 'instance_system_metadata_key_value_id_idx'
INDEXES = [(True, UNIQUE, UNIQUE_COLUMNS),
           (False, KEY_VALUE, ['key', 'deleted', 'value', 'id'])]
REVISION_002 = importlib.import_module(
    'nova.db.main.migrations.versions.002_machine_type_unique_sysmeta')
T0 = datetime.datetime(2026, 1, 1)
GIB = 1024 ** 3
HOUR = datetime.timedelta(hours=1)


class TableCopyTests(nova_fixtures.TestCase):

    DATABASE = 'mysql'
    CELL_REVISION = '001_baseline'

    def setUp(self):
        super().setUp()
        self.engine = sa.create_engine(self.db.cell_urls[0],
                                       isolation_level='AUTOCOMMIT')
        self.addCleanup(self.engine.dispose)
        self.conn = self.engine.connect()
        self.addCleanup(self.conn.close)
        online_schema.make_column_exact(self.conn, TABLE, 'key', 255)
        self.instances = [str(uuid_lib.uuid4()) for _ in range(3)]
        for uuid in self.instances:
            self.sql('INSERT INTO instances (uuid, deleted, created_at) '
                     'VALUES (:uuid, 0, :t0)', uuid=uuid, t0=T0)

    def sql(self, statement, **params):
        return self.conn.execute(sa.text(statement), params)

    def add(self, uuid, key, value, created, updated=None):
        """A live row; returns its id."""
        return self.sql(
            'INSERT INTO instance_system_metadata (instance_uuid, `key`,'
            ' value, deleted, created_at, updated_at)'
            ' VALUES (:uuid, :key, :value, 0, :created, :updated)',
            uuid=uuid, key=key, value=value, created=created,
            updated=updated).lastrowid

    def rows(self):
        """{id: (instance_uuid, key, value, deleted)} of every row."""
        return {row.id: (row.instance_uuid, row.key, row.value, row.deleted)
                for row in self.sql('SELECT * FROM instance_system_metadata')}

    def indexes(self):
        return {row[0] for row in self.sql(
            'SELECT index_name FROM information_schema.statistics'
            ' WHERE table_schema = DATABASE() AND table_name = :table',
            table=TABLE)}

    def assertNothingLeft(self):
        self.assertEqual([], self.sql(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = DATABASE()"
            "   AND table_name LIKE '\\_%'").all())
        self.assertEqual([], self.sql(
            'SELECT trigger_name FROM information_schema.triggers'
            ' WHERE trigger_schema = DATABASE()').all())

    def test_live_duplicates_met_by_the_copy_keep_the_newest(self):
        """Rows the de-duplication never saw: the copy keeps the newest
        of each (instance, key) live (latest updated_at, else created_at,
        then the highest id) and every other one soft-deleted."""
        a, b, c = self.instances
        older = self.add(a, 'image_foo', 'old', T0)
        newer = self.add(a, 'image_foo', 'new', T0 + HOUR)
        # Updated later than the row created after it: it wins.
        updated = self.add(b, 'image_foo', 'updated', T0, T0 + 2 * HOUR)
        created = self.add(b, 'image_foo', 'created', T0 + HOUR)
        # Same stamps: the highest id wins.
        first = self.add(c, 'image_foo', 'first', T0)
        last = self.add(c, 'image_foo', 'last', T0)
        # Keys that differ in case or a trailing space are not duplicates.
        lookalikes = [self.add(a, key, key, T0)
                      for key in ('image_Foo', 'image_foo ')]
        # The last ids, deleted: not given again after the copy.
        for _ in range(50):
            self.gone = self.add(a, 'image_gone', 'v', T0)
        self.sql("DELETE FROM %s WHERE `key` = 'image_gone'" % TABLE)
        before = self.rows()

        table_copy.rebuild(self.conn, TABLE, INDEXES, UNIQUE_COLUMNS)

        after = self.rows()
        self.assertEqual(sorted(before), sorted(after))
        losers = {older, created, first}
        for row_id, (uuid, key, value, deleted) in before.items():
            expected = row_id if row_id in losers else 0
            self.assertEqual((uuid, key, value, expected), after[row_id])
        self.assertEqual(
            {'new', 'updated', 'last', 'image_Foo', 'image_foo '},
            {value for _, _, value, deleted in after.values()
             if deleted == 0})
        self.assertLessEqual({newer, updated, last, *lookalikes},
                             set(after))
        self.assertLessEqual({UNIQUE, KEY_VALUE}, self.indexes())
        self.assertNothingLeft()
        self.assertTableAsBefore()

    def assertTableAsBefore(self):
        """The copied table keeps its own index, its foreign key (by the
        name the server gave the original) and its next id: not that of
        the last row, deleted before the copy."""
        self.assertIn('instance_uuid', self.indexes())
        self.assertEqual([('instance_system_metadata_ibfk_1', 'instances')],
                         self.sql(
            'SELECT constraint_name, referenced_table_name'
            '  FROM information_schema.referential_constraints'
            ' WHERE constraint_schema = DATABASE()'
            '   AND table_name = :table', table=TABLE).all())
        self.assertRaises(sa.exc.IntegrityError, self.add,
                          str(uuid_lib.uuid4()), 'image_foo', 'v1', T0)
        self.assertGreater(self.add(self.instances[0], 'image_new', 'v', T0),
                           self.gone)

    def test_chunks_that_shrink_still_copy_every_row(self):
        """Chunks slower than CHUNK_SECONDS make the next smaller (here
        every chunk is: 64 ids, then 32, 16 and 8 each): every row is
        copied once, none skipped between two chunks."""
        self.useFixture(fixtures.MonkeyPatch(
            'nova.db.table_copy.COPY_CHUNK', 64))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.db.table_copy.MIN_CHUNK', 8))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.db.table_copy.CHUNK_SECONDS', 0))
        for i in range(200):
            self.add(self.instances[i % 3], 'image_%d' % i, 'v%d' % i, T0)
        before = self.rows()

        table_copy.rebuild(self.conn, TABLE, INDEXES, UNIQUE_COLUMNS)

        self.assertEqual(before, self.rows())
        self.assertLessEqual({UNIQUE, KEY_VALUE}, self.indexes())
        self.assertNothingLeft()

    def test_writes_between_the_triggers_and_the_swap_are_kept(self):
        """What clients write once the triggers exist (an insert, an
        update, a soft delete, a hard delete, a duplicate of a copied
        row) is in the table after the swap, as they wrote it."""
        a, b, _ = self.instances
        kept = self.add(a, 'image_kept', 'v1', T0)
        changed = self.add(a, 'image_changed', 'v1', T0)
        removed = self.add(a, 'image_removed', 'v1', T0)
        soft = self.add(b, 'image_soft', 'v1', T0)
        table_copy.create_shadow(self.conn, TABLE, INDEXES)
        columns = table_copy.columns_of(self.conn, TABLE)
        table_copy.create_triggers(self.conn, TABLE, columns, UNIQUE_COLUMNS)
        # The rows already there are copied before the writes: each
        # write must reach the shadow through a trigger.
        table_copy._copy_chunk(self.conn, TABLE, columns, 0, soft, None)
        inserted = self.add(b, 'image_new', 'v1', T0)
        self.sql("UPDATE instance_system_metadata SET value = 'v2',"
                 " updated_at = :t WHERE id = :id", t=T0 + HOUR, id=changed)
        self.sql('UPDATE instance_system_metadata SET deleted = id'
                 ' WHERE id = :id', id=soft)
        self.sql('DELETE FROM instance_system_metadata WHERE id = :id',
                 id=removed)
        # A second live row of the row copied first: it is the newest.
        duplicate = self.add(a, 'image_kept', 'v2', T0 + HOUR)
        top = self.sql('SELECT max(id) FROM instance_system_metadata'
                       ).scalar()
        table_copy._copy_chunk(self.conn, TABLE, columns, soft, top, None)
        self.assertEqual([], table_copy._missing_ids(self.conn, TABLE, 0,
                                                     top))
        self.sql('RENAME TABLE instance_system_metadata TO {old},'
                 ' {shadow} TO instance_system_metadata'.format(
                     old=table_copy.old_name(TABLE),
                     shadow=table_copy.shadow_name(TABLE)))
        self.sql('DROP TABLE %s' % table_copy.old_name(TABLE))

        self.assertEqual({
            kept: (a, 'image_kept', 'v1', kept),
            changed: (a, 'image_changed', 'v2', 0),
            soft: (b, 'image_soft', 'v1', soft),
            inserted: (b, 'image_new', 'v1', 0),
            duplicate: (a, 'image_kept', 'v2', 0),
        }, self.rows())
        self.assertNothingLeft()

    def test_a_write_through_the_triggers_locks_no_gap_of_the_shadow(self):
        """A client's insert, and its update of a row not copied yet,
        in a transaction still open, do not hold back the copy of the
        rows beside theirs in the shadow's unique key. (On a Galera node
        the copy, arriving from db sync's node, would abort them.)"""
        a, b, _ = self.instances
        copied = self.add(a, 'image_a', 'v1', T0)
        after_new = self.add(a, 'image_c', 'v1', T0)
        # Rows of another instance between: a chunk's range scan reads
        # (and share-locks) the row after its last, which must not be
        # one the client holds (on a Galera cluster, a read on db
        # sync's node never waits for a client on another node).
        spacers = [self.add(b, 'image_spacer', 'v1', T0)]
        updated = self.add(a, 'image_d', 'v1', T0)
        after_updated = self.add(a, 'image_e', 'v1', T0)
        spacers.append(self.add(b, 'image_spacer2', 'v1', T0))
        table_copy.create_shadow(self.conn, TABLE, INDEXES)
        columns = table_copy.columns_of(self.conn, TABLE)
        table_copy.create_triggers(self.conn, TABLE, columns, UNIQUE_COLUMNS)
        table_copy._copy_chunk(self.conn, TABLE, columns, 0, copied, None)
        chunk = table_copy.chunk_statement(self.conn, TABLE, columns)
        self.sql('SET SESSION innodb_lock_wait_timeout = 1')
        client = self.engine.connect().execution_options(
            isolation_level='REPEATABLE READ')
        self.addCleanup(client.close)
        with client.begin():
            new = client.execute(sa.text(
                "INSERT INTO instance_system_metadata (instance_uuid, `key`,"
                " value, deleted, created_at) VALUES (:a, 'image_b', 'v1',"
                " 0, :t0)"), {'a': a, 't0': T0}).lastrowid
            client.execute(sa.text(
                "UPDATE instance_system_metadata SET value = 'v2'"
                " WHERE id = :id"), {'id': updated})
            # The chunks of the rows after each of the client's: each
            # would wait for the client and fail after 1 s if the
            # triggers had locked the shadow's gap there.
            self.conn.execute(chunk, {'low': copied, 'high': after_new})
            self.conn.execute(chunk, {'low': updated, 'high': after_updated})
        table_copy._copy_chunk(self.conn, TABLE, columns, copied, new, None)
        self.assertEqual(
            {spacers[0]: (b, 'image_spacer', 'v1', 0),
             spacers[1]: (b, 'image_spacer2', 'v1', 0),
             copied: (a, 'image_a', 'v1', 0), new: (a, 'image_b', 'v1', 0),
             after_new: (a, 'image_c', 'v1', 0),
             updated: (a, 'image_d', 'v2', 0),
             after_updated: (a, 'image_e', 'v1', 0)},
            {row.id: (row.instance_uuid, row.key, row.value, row.deleted)
             for row in self.sql('SELECT * FROM %s'
                                 % table_copy.shadow_name(TABLE))})

    def test_leftovers_of_an_interrupted_copy_are_removed(self):
        self.add(self.instances[0], 'image_foo', 'v1', T0)
        table_copy.create_shadow(self.conn, TABLE, INDEXES)
        table_copy.create_triggers(
            self.conn, TABLE, table_copy.columns_of(self.conn, TABLE),
            UNIQUE_COLUMNS)
        self.assertTrue(table_copy.drop_leftovers(self.conn, TABLE))
        self.assertNothingLeft()
        self.assertFalse(table_copy.drop_leftovers(self.conn, TABLE))
        # The table itself is as it was: no index of the copy.
        self.assertFalse({UNIQUE, KEY_VALUE} & self.indexes())

    def test_a_row_that_cannot_be_placed_stops_the_copy(self):
        """A row the shadow keeps refusing is never dropped silently: the
        copy stops before any swap. Here the refusal is the foreign key
        (a row written with the server's checks off, for an instance
        that does not exist); in service it would be clients rewriting
        the row's key faster than it can be placed."""
        self.sql('SET foreign_key_checks = 0')
        orphan = self.add(str(uuid_lib.uuid4()), 'image_foo', 'v1', T0)
        self.sql('SET foreign_key_checks = 1')
        table_copy.create_shadow(self.conn, TABLE, INDEXES)
        columns = table_copy.columns_of(self.conn, TABLE)
        self.assertRaisesRegex(
            exception.MigrationError,
            'row %d of instance_system_metadata could not be copied'
            % orphan, table_copy._place_duplicate, self.conn, TABLE,
            columns, UNIQUE_COLUMNS, orphan)
        self.assertEqual([], self.sql(
            'SELECT id FROM %s' % table_copy.shadow_name(TABLE)).all())

    def data_dir_free(self):
        """Bytes free where the test server keeps its data (it runs on
        this machine)."""
        stat = os.statvfs(self.sql('SELECT @@datadir').scalar())
        return stat.f_bavail * stat.f_frsize

    def test_free_space_is_the_data_directory_s(self):
        """Without the DISKS plugin the server's directory is looked at
        here; with it, the server's own figure is the same (within what
        other tests write meanwhile)."""
        if self.sql("SELECT 1 FROM information_schema.plugins"
                    " WHERE plugin_name = 'DISKS'").scalar():
            self.skipTest('the DISKS plugin was loaded outside the tests')
        free, source = table_copy.free_space(self.conn)
        self.assertEqual(self.sql('SELECT @@datadir').scalar(), source)
        self.assertLess(abs(free - self.data_dir_free()), GIB)
        self.sql("INSTALL SONAME 'disks'")
        try:
            free, source = table_copy.free_space(self.conn)
        finally:
            self.sql("UNINSTALL SONAME 'disks'")
        self.assertIn('information_schema.DISKS', source)
        self.assertLess(abs(free - self.data_dir_free()), GIB)

    def test_a_cell_without_the_disk_for_the_copy_is_left_as_it_was(self):
        """The check comes before the de-duplication: the duplicate stays
        live, nothing of a copy exists, and the message gives the
        figures. Here the need is made larger than the disk (the table
        counted a billion times over) rather than the disk filled."""
        uuid = self.instances[0]
        self.add(uuid, 'image_foo', 'old', T0)
        self.add(uuid, 'image_foo', 'new', T0 + HOUR)
        before = self.rows()
        self.useFixture(fixtures.MonkeyPatch(
            'nova.db.table_copy.SPACE_FACTOR', 10 ** 9))
        lines = []
        exc = self.assertRaises(exception.MigrationError,
                                REVISION_002._upgrade_galera, self.conn,
                                lines.append)
        self.assertRegex(
            str(exc), r'not enough disk for the copy of '
            r'instance_system_metadata: it needs about [0-9.]+ GiB \(the '
            r'table takes [0-9.]+ GiB\), [0-9.]+ GiB is free \(/')
        self.assertEqual(before, self.rows())
        self.assertNothingLeft()
        self.assertFalse({UNIQUE, KEY_VALUE} & self.indexes())

    def test_the_copy_says_what_disk_it_needs(self):
        self.add(self.instances[0], 'image_foo', 'v1', T0)
        lines = []
        needed = table_copy.check_space(self.conn, TABLE, lines.append)
        self.assertEqual(
            table_copy.SPACE_FACTOR * table_copy.table_bytes(self.conn, TABLE),
            needed)
        self.assertGreater(needed, 0)
        self.assertRegex(lines[-1], r'the copy of instance_system_metadata '
                         r'needs about [0-9.]+ GiB of disk; [0-9.]+ GiB is '
                         r'free \(/')

    def test_a_server_elsewhere_without_the_plugin_is_not_checked(self):
        """db sync on another machine than the server, which does not
        load the DISKS plugin: nothing to learn the free disk from, so
        it warns with the figure and goes on. (This machine is given
        another name: the server must not be the same host.)"""
        if self.sql("SELECT 1 FROM information_schema.plugins"
                    " WHERE plugin_name = 'DISKS'").scalar():
            self.skipTest('the DISKS plugin was loaded outside the tests')
        self.useFixture(fixtures.MonkeyPatch(
            'socket.gethostname', lambda: 'not-the-database-server'))
        self.add(self.instances[0], 'image_foo', 'v1', T0)
        lines = []
        table_copy.check_space(self.conn, TABLE, lines.append)
        host = self.sql('SELECT @@hostname').scalar()
        self.assertEqual(
            ["  WARNING: free disk not checked (the server (%s) is not this "
             "machine and does not load MariaDB's DISKS plugin (INSTALL "
             "SONAME 'disks')): the copy of instance_system_metadata needs "
             "about 0.0 GiB free in the data directory of every node"
             % host], lines)
