"""db sync from the baseline, interrupted and raced, on MariaDB and PostgreSQL.

The revisions run online (nova.db.online_schema): these tests stop them at
known points of their work and check that running ``nova-manage db sync``
again ends as an uninterrupted run does. A run is paused at a point by
what a busy cloud does to it (another client's open transaction holding a
row or the table), the pause is read from the server (sessions, indexes,
rows already changed), and only then is the run killed with SIGKILL.
"""

import datetime
import threading
import time

import sqlalchemy as sa

from nova.db import migration
from nova.db import online_schema
from nova.db import sync_waits
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base

# Instances seeded (about ten system metadata rows each): enough rows for
# several de-duplication batches and for progress lines (> 100,000 rows).
SEEDED = 20000
# One instance in DUPLICATE_EVERY gets an older and a newer copy of a key.
DUPLICATE_EVERY = 200
DUP_KEY = 'image_min_ram'
UNIQUE = 'uniq_instance_system_metadata0instance_uuid0key0deleted'
NEW_INSTANCES_IDX = 'instances_host_deleted_id_idx'
INDEXES = {
    'instance_system_metadata': {UNIQUE,
                                 'instance_system_metadata_key_value_id_idx',
                                 'instance_uuid'},
    'instances': {NEW_INSTANCES_IDX, 'instances_deleted_vm_state_idx',
                  'uniq_instances0uuid'},
}
T0 = datetime.datetime(2026, 1, 1)


class OnlineUpgradeTests(base.ReliabilityTestCase):
    """A baseline cell with duplicated keys, upgraded by nova-manage."""

    CELL_REVISION = '001_baseline'
    TIMEOUT = 60

    def setUp(self):
        super().setUp()
        self.conf_path = self.config()

    # -- the cell ------------------------------------------------------------

    def seed_with_duplicates(self, count=SEEDED):
        """Seed, then give some instances two more DUP_KEY rows: one older
        and one newer than the seeded row. Returns {uuid: surviving id}.
        """
        self.seed(count)
        self.execute(
            "INSERT INTO instance_system_metadata "
            "(instance_uuid, {k}, value, created_at, updated_at, deleted) "
            "SELECT instance_uuid, {k}, 'older', :old, NULL, 0 "
            "FROM instance_system_metadata WHERE {k} = :key "
            "AND deleted = 0 AND MOD(id, :every) = 3".format(k=self.key_col),
            key=DUP_KEY, old=T0 - datetime.timedelta(days=1),
            every=DUPLICATE_EVERY)
        self.execute(
            "INSERT INTO instance_system_metadata "
            "(instance_uuid, {k}, value, created_at, updated_at, deleted) "
            "SELECT instance_uuid, {k}, 'newer', :t0, :new, 0 "
            "FROM instance_system_metadata WHERE {k} = :key "
            "AND value = 'older'".format(k=self.key_col),
            key=DUP_KEY, t0=T0, new=T0 + datetime.timedelta(days=1))
        self.analyze()
        survivors = dict(self.execute(
            "SELECT instance_uuid, id FROM instance_system_metadata "
            "WHERE value = 'newer'"))
        self.assertGreater(len(survivors), 10)
        return survivors

    def live_duplicates(self):
        return self.execute(
            'SELECT instance_uuid, {k} FROM instance_system_metadata '
            'WHERE deleted = 0 GROUP BY instance_uuid, {k} '
            'HAVING count(*) > 1'.format(k=self.key_col))

    def soft_deleted_copies(self):
        return self.execute(
            "SELECT count(*) FROM instance_system_metadata "
            "WHERE value = 'older' AND deleted <> 0")[0][0]

    def index_names(self, table):
        inspector = sa.inspect(self.engine)
        names = {ix['name'] for ix in inspector.get_indexes(table)}
        names |= {uc['name']
                  for uc in inspector.get_unique_constraints(table)}
        return names

    def invalid_indexes(self):
        """Names of INVALID indexes (PostgreSQL; none exist on MySQL)."""
        if self.DATABASE != 'postgresql':
            return []
        return [row[0] for row in self.execute(
            'SELECT c.relname FROM pg_index i '
            'JOIN pg_class c ON c.oid = i.indexrelid '
            'WHERE NOT i.indisvalid')]

    def server_state(self):
        """What the server's sessions do, for a failure message."""
        if self.DATABASE == 'postgresql':
            return self.execute(
                'SELECT pid, state, wait_event_type, query '
                'FROM pg_stat_activity WHERE datname = current_database()')
        return self.execute(
            'SELECT p.id, p.state, p.info, t.trx_state '
            'FROM information_schema.processlist p '
            'LEFT JOIN information_schema.innodb_trx t '
            'ON t.trx_mysql_thread_id = p.id WHERE p.db = DATABASE()')

    def end_orphans(self, sql_start):
        """End the server sessions a killed client left running, as a
        lost connection or a server restart would."""
        for session, _ in self.sessions(sql_start):
            if self.DATABASE == 'postgresql':
                self.execute('SELECT pg_terminate_backend(:pid)', pid=session)
            else:
                self.execute('KILL %d' % session)

    def assertUpgraded(self, survivors):
        """The state an uninterrupted run leaves."""
        self.assertEqual(migration.head_revision(migration.MAIN),
                         migration.db_version(migration.MAIN,
                                              url=self.cell_url))
        self.assertEqual([], self.live_duplicates())
        live_newer = dict(self.execute(
            "SELECT instance_uuid, id FROM instance_system_metadata "
            "WHERE {k} = :key AND deleted = 0 AND instance_uuid IN "
            "(SELECT instance_uuid FROM instance_system_metadata "
            "WHERE value = 'newer')".format(k=self.key_col), key=DUP_KEY))
        self.assertEqual(survivors, live_newer)
        self.assertEqual(2 * len(survivors), self.execute(
            "SELECT count(*) FROM instance_system_metadata "
            "WHERE {k} = :key AND deleted = id AND deleted_at IS NOT NULL "
            "AND instance_uuid IN (SELECT instance_uuid FROM "
            "instance_system_metadata WHERE value = 'newer')".format(
                k=self.key_col), key=DUP_KEY)[0][0])
        for table, names in INDEXES.items():
            self.assertEqual(names, self.index_names(table) - {'PRIMARY'})
        self.assertEqual([], self.invalid_indexes())

    # -- runs ----------------------------------------------------------------

    def sync(self):
        return self.start(base.NOVA_MANAGE, self.conf_path,
                          'db', 'sync', '--local_cell')

    def blocker(self):
        """A second client's connection, in a transaction the test ends."""
        conn = self.engine.connect()
        self.addCleanup(conn.close)
        conn.begin()
        return conn

    def kill_when(self, process, what, check):
        """kill -9 ``process`` once ``check()`` is true; fail if it ends
        first. Returns all it printed."""
        seen = base.poll(check, self.TIMEOUT)
        self.assertTrue(seen, 'never saw %s: %s\nserver: %s' % (
            what, process.describe(), self.server_state()))
        process.kill_running()
        return process.stdout

    def sync_paused_in_dedup(self, survivors):
        """Start db sync and make its de-duplication wait for a row lock
        on the last instance's older copy. Returns (process, the locking
        transaction's connection).

        MySQL's ALTER TABLE waits for every open transaction on the table,
        so there the exact collation comes first, as an earlier
        interrupted run leaves it, and the run starts with it in place.
        """
        if self.DATABASE != 'postgresql':
            self.execute(
                'ALTER TABLE instance_system_metadata MODIFY {k} '
                'VARCHAR(255) CHARACTER SET utf8mb4 COLLATE '
                'utf8mb4_nopad_bin NOT NULL'.format(k=self.key_col))
        conn = self.blocker()
        conn.execute(sa.text(
            "SELECT id FROM instance_system_metadata WHERE "
            "instance_uuid = :uuid AND value = 'older' FOR UPDATE"),
            {'uuid': max(survivors)})
        return self.sync(), conn

    def hold_table(self, table):
        """Hold ``table`` as another client's open transaction does:
        PostgreSQL's concurrent index builds wait for a writer to end,
        MySQL's ALTER for any open transaction's metadata lock. (A reader
        on MySQL: an ALTER of instance_system_metadata also waits for
        writers of instances, the table its foreign key names.)"""
        first = self.execute('SELECT min(id) FROM %s' % table)[0][0]
        conn = self.blocker()
        if self.DATABASE == 'postgresql':
            statement = 'UPDATE %s SET deleted = deleted WHERE id = :id'
        else:
            statement = 'SELECT deleted FROM %s WHERE id = :id'
        conn.execute(sa.text(statement % table), {'id': first})
        return conn

    def ddl_waiting(self, sql_start):
        return lambda: bool(self.sessions(sql_start))

    def dedup_underway(self):
        """Whether the de-duplication has soft-deleted some copies and has
        an UPDATE in progress (the one waiting for the test's lock on the
        last copy comes last)."""
        return bool(self.sessions('UPDATE instance_system_metadata')
                    and self.soft_deleted_copies())

    # -- tests ---------------------------------------------------------------

    def test_small_cell_prints_nothing(self):
        survivors = self.seed_with_duplicates(count=DUPLICATE_EVERY * 30)
        self.assertTrue(survivors)
        process = self.sync()
        self.assertClean(process)
        self.assertEqual('', process.stdout)
        # Silent, not idle: the duplicates went and the keys were built.
        self.assertUpgraded(survivors)

    def test_kill_9_in_each_step_then_rerun(self):
        survivors = self.seed_with_duplicates()

        # 1. During de-duplication: some duplicates gone, not all.
        process, lock = self.sync_paused_in_dedup(survivors)
        out = self.kill_when(
            process, 'the de-duplication under way',
            self.dedup_underway)
        self.assertIn('de-duplicating instance_system_metadata', out)
        self.assertNotIn('de-duplicated:', out)
        # Read before the lock goes: the killed run's last UPDATE is still
        # waiting on the server, and completes once it is released.
        self.assertLess(0, self.soft_deleted_copies())
        self.assertLess(self.soft_deleted_copies(), len(survivors))
        lock.rollback()

        # 2. During the unique key's build, its session cut off.
        held = self.hold_table('instance_system_metadata')
        process = self.sync()
        out = self.kill_when(process, 'the unique key being built',
                             self.ddl_waiting('%INDEX%' + UNIQUE))
        self.end_orphans('%INDEX%' + UNIQUE)
        held.rollback()
        self.assertIn('building index ' + UNIQUE, out)
        self.assertNotIn('built index ' + UNIQUE, out)

        # 3. During revision 004's build on instances, cut off too: on
        # PostgreSQL an INVALID index is left behind.
        held = self.hold_table('instances')
        process = self.sync()
        if self.DATABASE == 'postgresql':
            half_built = lambda: self.invalid_indexes() == [  # noqa: E731
                NEW_INSTANCES_IDX]
        else:
            half_built = self.ddl_waiting('%INDEX%' + NEW_INSTANCES_IDX)
        self.kill_when(process, "revision 004's index being built",
                       half_built)
        self.end_orphans('%INDEX%' + NEW_INSTANCES_IDX)
        held.rollback()
        self.assertNotEqual(migration.head_revision(migration.MAIN),
                            migration.db_version(migration.MAIN,
                                                 url=self.cell_url))

        self.assertClean(self.sync())
        self.assertUpgraded(survivors)

    def test_duplicate_written_during_unique_build(self):
        """An old service writes a duplicate after the de-duplication
        passed its instance; the unique build fails on it, and is retried
        after another pass."""
        survivors = self.seed_with_duplicates()
        first = min(survivors)
        process, lock = self.sync_paused_in_dedup(survivors)
        # The de-duplication has passed the first instance (and waits on
        # the lock further on) before the old service writes there.
        self.assertTrue(base.poll(self.dedup_underway, self.TIMEOUT),
                        process.describe())
        # The old service's insert, not committed until the build began.
        writer = self.blocker()
        writer.execute(sa.text(
            "INSERT INTO instance_system_metadata (instance_uuid, {k}, "
            "value, created_at, deleted) VALUES (:uuid, :key, 'newest', "
            ":now, 0)".format(k=self.key_col)),
            {'uuid': first, 'key': DUP_KEY,
             'now': T0 + datetime.timedelta(days=2)})
        lock.rollback()
        self.assertTrue(base.poll(
            self.ddl_waiting('%INDEX%' + UNIQUE), self.TIMEOUT),
            process.describe())
        writer.commit()
        self.assertClean(process)
        self.assertIn('de-duplicating the rows written meanwhile',
                      process.stdout)
        survivors[first] = self.execute(
            "SELECT id FROM instance_system_metadata "
            "WHERE value = 'newest'")[0][0]
        self.assertEqual([], self.live_duplicates())
        self.assertEqual(migration.head_revision(migration.MAIN),
                         migration.db_version(migration.MAIN,
                                              url=self.cell_url))
        self.assertEqual(survivors[first], self.execute(
            "SELECT id FROM instance_system_metadata WHERE instance_uuid = "
            ":uuid AND {k} = :key AND deleted = 0".format(k=self.key_col),
            uuid=first, key=DUP_KEY)[0][0])

    # -- other sessions -------------------------------------------------------

    def hold_sync_lock(self):
        """Take this cell's db sync lock as a running db sync holds it;
        returns (its connection, its server session id)."""
        conn = self.engine.connect().execution_options(
            isolation_level='AUTOCOMMIT')
        self.addCleanup(conn.close)
        self.assertTrue(sync_waits._SyncLock(conn).try_take())
        return conn, self.session_id(conn)

    def session_id(self, conn):
        """The server's id of ``conn``'s session."""
        return conn.execute(sa.text(
            'SELECT pg_backend_pid()' if self.DATABASE == 'postgresql'
            else 'SELECT CONNECTION_ID()')).scalar()

    def test_second_sync_waits_for_the_first_then_finds_it_done(self):
        survivors = self.seed_with_duplicates()
        first, lock = self.sync_paused_in_dedup(survivors)
        self.assertTrue(base.poll(self.dedup_underway, self.TIMEOUT),
                        first.describe())
        second = self.sync()
        # The first run holds the sync lock (the server says so) and the
        # second names that session while it waits.
        holder = self.sync_lock_holder()
        self.assertIsNotNone(holder)
        self.assertTrue(second.wait_for(
            'waiting for another db sync of this database to finish'),
            second.describe())
        self.assertIn('db sync in session %s ' % holder, second.stdout)
        self.assertIsNone(second.proc.poll())
        self.assertNotIn('de-duplicating', second.stdout)
        lock.rollback()
        self.assertClean(first)
        self.assertClean(second)
        # The second found every revision done.
        self.assertNotIn('building index', second.stdout)
        self.assertUpgraded(survivors)

    def sync_lock_holder(self):
        if self.DATABASE == 'postgresql':
            # Advisory locks are per database: another worker's sync
            # holds the same key in its own.
            rows = self.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND objid = :key AND database = (SELECT oid "
                "FROM pg_database WHERE datname = current_database())",
                key=sync_waits._pg_lock_key(sync_waits.SYNC_LOCK))
        else:
            rows = self.execute(
                "SELECT IS_USED_LOCK(CONCAT(:name, '.', DATABASE()))",
                name=sync_waits.SYNC_LOCK)
        return rows[0][0] if rows else None

    def test_sync_gives_up_after_its_wait_naming_the_holder(self):
        self.seed_with_duplicates(count=DUPLICATE_EVERY * 15)
        before = self.digest()
        _, session = self.hold_sync_lock()
        self.conf_path = self.config(database={'sync_wait_timeout': 2})
        process = self.sync()
        self.assertEqual(1, process.finish(), process.describe())
        [line] = process.stderr.splitlines()
        self.assertIn('ERROR: db sync stopped after waiting', line)
        self.assertIn('db sync in session %s ' % session, line)
        self.assertIn('[database]sync_wait_timeout', line)
        self.assertEqual('001_baseline', migration.db_version(
            migration.MAIN, url=self.cell_url))
        self.assertEqual(before, self.digest())

    def test_long_transaction_is_waited_for_and_named(self):
        """A client's transaction open on the table when a build needs
        it: db sync says which session it waits for, every 10 s, and
        builds once it has ended."""
        survivors = self.seed_with_duplicates(count=DUPLICATE_EVERY * 15)
        held = self.hold_table('instance_system_metadata')
        holder = self.session_id(held)
        process = self.sync()
        waiting = 'session %s (' % holder
        self.assertTrue(process.wait_for(waiting), process.describe())
        # Said again ten seconds on, and still not built meanwhile.
        self.assertTrue(process.wait_for(waiting, times=2, timeout=30),
                        process.describe())
        self.assertFinishesOnceReleased(process, held, holder, survivors)

    def test_clients_queue_less_than_a_second_behind_a_waiting_build(self):
        """A client's transaction holds the table when a build needs it:
        the other clients' statements on the table queue behind the
        build's lock request, but well under MySQL's shortest lock wait
        (one second): MariaDB's is cut at a tenth of one. None fails."""
        survivors = self.seed_with_duplicates(count=DUPLICATE_EVERY * 15)
        held = self.hold_table('instance_system_metadata')
        holder = self.session_id(held)
        stop, errors, latencies = threading.Event(), [], []

        def client():
            with self.engine.connect() as conn:
                while not stop.wait(0.02):
                    began = time.monotonic()
                    conn.execute(sa.text(
                        'SELECT count(*) FROM instance_system_metadata '
                        'WHERE id = 1'))
                    conn.rollback()
                    latencies.append(time.monotonic() - began)
        thread = nova_fixtures.start_thread(client, errors)
        self.addCleanup(thread.join)
        self.addCleanup(stop.set)
        process = self.sync()
        # Its lock request gave way once at least: it now waits for the
        # holder, whom it names.
        self.assertTrue(process.wait_for('session %s (' % holder),
                        process.describe())
        stop.set()
        thread.join()
        self.assertEqual([], errors)
        worst = max(latencies)
        if self.DATABASE == 'postgresql':
            # Its concurrent builds never make a reader queue; its short
            # ALTERs ask with a 200 ms lock_timeout.
            self.assertLess(worst, 1.0)
        else:
            # The client did queue behind the build (its statement takes
            # a millisecond alone), but not for the server's shortest
            # lock wait (1 s): the wait was cut.
            self.assertGreater(worst, online_schema.MARIADB_MDL_WAIT_S / 2)
            self.assertLess(worst, 0.5)
        self.assertFinishesOnceReleased(process, held, holder, survivors)

    def test_row_held_by_a_client_is_waited_for_and_named(self):
        """A client holds a duplicate's row in an open transaction: the
        de-duplication's UPDATE gives up its lock wait in time to say
        for whom it waits, and finishes once that client is done."""
        survivors = self.seed_with_duplicates()
        process, lock = self.sync_paused_in_dedup(survivors)
        holder = self.session_id(lock)
        self.assertTrue(process.wait_for(
            'waiting for the open transactions on instance_system_metadata '
            'rows to end'), process.describe())
        self.assertIn('session %s (' % holder, process.stdout)
        self.assertFinishesOnceReleased(process, lock, holder, survivors)

    def assertFinishesOnceReleased(self, process, held, holder, survivors):
        """db sync still waits while ``holder`` (the server's session of
        ``held``) keeps its transaction open, and ends as an undisturbed
        run does once it is rolled back."""
        self.assertIsNone(process.proc.poll())
        self.assertIn(holder, self.open_sessions())
        held.rollback()
        self.assertClean(process)
        self.assertUpgraded(survivors)

    def open_sessions(self):
        """Server session ids with an open transaction."""
        if self.DATABASE == 'postgresql':
            return [row[0] for row in self.execute(
                'SELECT pid FROM pg_stat_activity '
                'WHERE xact_start IS NOT NULL')]
        return [row[0] for row in self.execute(
            'SELECT trx_mysql_thread_id FROM information_schema.innodb_trx')]


globals().update(nova_fixtures.backend_variants(
    OnlineUpgradeTests, nova_fixtures.WITH_MARIADB_URL))
del OnlineUpgradeTests
