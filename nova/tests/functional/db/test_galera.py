"""The cell database on a three-node MariaDB Galera cluster.

Galera replicates every commit to all nodes, and clients write through
any of them. What is harmless on one server is not always harmless
there: an ALTER TABLE runs on every node at the same point of the
replication order, and a transaction that a client of another node holds
open on rows or a table it touches is rolled back as a deadlock. These
tests run the real console scripts against the cluster that
tools/test-setup.sh starts (tools/galera.sh), each process through the
node a load balancer could have given it, and check what an operator
would: exit codes and output, the schema revision, the rows as seen
through more than one node.

One test at a time uses the cluster (ClusterLock): one of them stops a
node, which the others must not meet, and the three nodes share the
machine's few cores.
"""

import contextlib
import datetime
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuid_lib

import fixtures
import sqlalchemy as sa
import testtools.content

import nova
from nova.db.main import api as main_db
from nova.db import migration
from nova.db import sync_waits
from nova.db import table_copy
from nova import objects
from nova.objects import instance as instance_obj
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base
from nova.tests.functional.reliability import test_races

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nova.__file__)))
GALERA_SH = os.path.join(ROOT, 'tools', 'galera.sh')
# Outside the tests' temporary directories: every stestr worker uses it.
LOCK_PATH = os.path.join(tempfile.gettempdir(), 'nova-galera-tests.lock')
BASELINE = '001_baseline'
# A cell of this size takes a second or two to migrate: long enough to
# write through, and to be killed in, while keeping the tests fast.
SEEDED = 5000
# Every tenth live instance has this key duplicated; the row that must
# survive de-duplication has the value NEWEST.
DUPLICATED_KEY = 'image_min_disk'
NEWEST = 'newest'
SYSMETA = 'instance_system_metadata'
# The pace of the client writing through another node.
WRITE_INTERVAL = 0.02
HOSTLESS = "i.host IS NULL AND i.vm_state <> 'building'"
# MySQL's ER_LOCK_DEADLOCK, which Galera also gives a transaction it
# aborts for a conflicting replicated one.
DEADLOCK = 1213


def causal(url):
    """``url``, with reads that see every commit made before them.

    A node applies the other nodes' commits a moment after they return;
    with wsrep_sync_wait a read first waits until its node caught up.
    """
    return sa.engine.make_url(url).update_query_dict(
        {'init_command': 'SET SESSION wsrep_sync_wait = 1'}
    ).render_as_string(hide_password=False)


def wait_until(predicate, timeout=base.TIMEOUT):
    """Poll ``predicate`` until it is true; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def node_status(node, name):
    """Status variable ``name`` of node ``node`` (0-based)."""
    engine = sa.create_engine(nova_fixtures.GALERA_URLS[node])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text('SHOW STATUS LIKE :name'),
                                {'name': name}).one()[1]
    finally:
        engine.dispose()


def cluster_sizes():
    """wsrep_cluster_size as each node reports it (None: node is down)."""
    sizes = []
    for node in range(len(nova_fixtures.GALERA_URLS)):
        try:
            sizes.append(int(node_status(node, 'wsrep_cluster_size')))
        except sa.exc.OperationalError:
            sizes.append(None)
    return sizes


class ClusterLock(fixtures.Fixture):
    """The cluster to this test alone, across stestr's worker processes."""

    def _setUp(self):
        lock = open(LOCK_PATH, 'a')
        self.addCleanup(lock.close)
        fcntl.flock(lock, fcntl.LOCK_EX)


class Writer(threading.Thread):
    """A client of one node writing as Nova's services do, every 20 ms.

    Each write is one transaction, as an Instance.save() with system
    metadata: a new system metadata row (a key of its own, so never a
    duplicate) and an update of its instance. As every Nova writer does
    on Galera, a transaction aborted as a deadlock is replayed, after the
    same pauses as theirs: a schema
    change in total order aborts the transactions that other nodes' clients
    hold on its table at that instant (``replayed`` counts them).
    ``written`` holds the (instance_uuid, key) of each commit, ``errors``
    each failure that replays did not cure: the migration must cause none.
    """

    REPLAYS = 5

    def __init__(self, url, uuids):
        super().__init__(daemon=True)
        self.engine = sa.create_engine(url)
        self.uuids = uuids
        self.written = []
        self.errors = []
        self.replayed = 0
        self.done = threading.Event()
        # Set by a test: a callable asked right after each commit; the
        # commits it answered True for are counted in ``during``.
        self.watch = None
        self.during = 0

    def run(self):
        attempt = 0
        try:
            while not self.done.wait(WRITE_INTERVAL):
                attempt += 1
                self._write(attempt)
        finally:
            self.engine.dispose()

    def _write(self, attempt):
        instance_uuid = self.uuids[attempt % len(self.uuids)]
        key = 'client_%d' % attempt
        now = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None)
        for replay in range(self.REPLAYS + 1):
            try:
                with self.engine.begin() as conn:
                    conn.execute(main_db.SYSMETA.insert().values(
                        instance_uuid=instance_uuid, key=key,
                        value='written', created_at=now, deleted=0))
                    conn.execute(main_db.INSTANCES.update().where(
                        main_db.INSTANCES.c.uuid == instance_uuid).values(
                        task_state=key, updated_at=now))
            except sa.exc.DBAPIError as exc:
                code = exc.orig.args[0] if exc.orig.args else None
                if code != DEADLOCK or replay == self.REPLAYS:
                    self.errors.append('%s: %s' % (key, exc.orig))
                    return
                self.replayed += 1
                # Nova's writers wait between replays (0.1 s, doubling,
                # at most 2 s: nova.db.transactions); so does this client.
                time.sleep(min(0.1 * 2 ** replay, 2))
            else:
                self.written.append((instance_uuid, key))
                watch = self.watch
                if watch is not None and watch():
                    self.during += 1
                return

    def wait_for(self, count):
        """Wait until ``count`` writes were committed in all."""
        return wait_until(lambda: len(self.written) >= count)

    def stop(self):
        self.done.set()
        self.join(base.TIMEOUT)


class GaleraCells:
    """For ReliabilityTestCase: the test's databases on the cluster.

    The API and cell databases are synced in-process through node 1 (the
    cell only with SYNC_CELL), and the cell mapping, which nova-manage
    follows, reaches the cell through node CELL_NODE (0-based). The
    test's own reads (execute and the checks built on it) go through
    node 1 and wait for the other nodes' commits.
    """

    SYNC_CELL = True
    CELL_NODE = 0
    # Host name of a nova-compute -> the node its config points at.
    HOST_NODES = {}

    def setUp(self):
        super().setUp()
        self.engine = self.causal_engine(0)

    def databases(self):
        self.useFixture(ClusterLock())
        self.api_db = self.useFixture(
            nova_fixtures.GaleraDatabase(self, 'api'))
        self.cell_db = self.useFixture(
            nova_fixtures.GaleraDatabase(self, 'cell'))
        self.flags(connection=self.api_db.url, group='api_database')
        self.flags(connection=self.cell_db.url, group='database')
        nova_fixtures.CellDatabases._reset()
        migration.db_sync(migration.API, url=self.api_db.url)
        if self.SYNC_CELL:
            migration.db_sync(migration.MAIN, url=self.cell_db.url)
        cell = objects.CellMapping(
            self.context, uuid=str(uuid_lib.uuid4()), name='cell1',
            database_connection=self.cell_db.urls[self.CELL_NODE],
            transport_url='none:///')
        cell.create()
        self.cells = [cell]
        return self.cell_db.url, self.api_db.url

    def causal_engine(self, node):
        """An engine reading the cell through ``node``, disposed at end."""
        engine = sa.create_engine(causal(self.cell_db.urls[node]))
        self.addCleanup(engine.dispose)
        return engine

    def catch_up(self):
        """Wait until nodes 2 and 3 have applied the test's writes.

        A process started right after them and reading through another
        node could miss some: a node applies the others' commits a
        moment (here, on a busy machine, over a second) after they
        return.
        """
        for node in (1, 2):
            with self.reading_through(node):
                self.execute('SELECT COUNT(*) FROM instances')

    @contextlib.contextmanager
    def reading_through(self, node):
        """Make execute() and the checks built on it go through ``node``."""
        node1, self.engine = self.engine, self.causal_engine(node)
        try:
            yield
        finally:
            self.engine = node1

    def seed(self, count=SEEDED):
        """A smaller cell than the issue's: three nodes share two cores."""
        super().seed(count)

    def config(self, node=None, **sections):
        """A config file whose databases are reached through ``node``.

        By default node 1, or HOST_NODES' node for a compute host.
        """
        if node is None:
            host = sections.get('DEFAULT', {}).get('host')
            node = self.HOST_NODES.get(host, 0)
        for section, db in (('database', self.cell_db),
                            ('api_database', self.api_db)):
            sections[section] = dict(sections.get(section, {}),
                                     connection=db.urls[node])
        return super().config(**sections)

    def galera(self, *argv):
        """Run tools/galera.sh (root only: it uses the nodes' sockets);
        returns what it printed."""
        if os.geteuid() != 0:
            nova_fixtures.unavailable(self, 'root, for tools/galera.sh')
        result = subprocess.run(['bash', GALERA_SH, *argv],
                                capture_output=True, text=True,
                                timeout=base.TIMEOUT)
        self.assertEqual(0, result.returncode,
                         result.stdout + result.stderr)
        return result.stdout


class ClusterTests(GaleraCells, base.ReliabilityTestCase):
    """The cluster that tools/test-setup.sh starts, as a client sees it."""

    def test_three_nodes_replicate(self):
        self.assertEqual([3, 3, 3], cluster_sizes())
        for node in range(3):
            self.assertEqual('ON', node_status(node, 'wsrep_ready'))
        instance_uuid = str(uuid_lib.uuid4())
        self.execute("INSERT INTO instances (uuid, deleted) "
                     "VALUES (:uuid, 0)", uuid=instance_uuid)
        with self.reading_through(2):
            self.assertEqual([(instance_uuid,)], self.execute(
                'SELECT uuid FROM instances'))


class TotalOrderPacingTests(GaleraCells, base.ReliabilityTestCase):
    """db sync's statements in total order, as its connection sends them.

    Each aborts the client statements that hold its table on the other
    nodes; the server replays such a statement once, and a second
    statement in total order right behind the first aborts the replay.
    """

    SYNC_CELL = False

    def record_statements(self):
        """[(connection, start, end, statement)] of every statement run
        from now on through a new connection of any engine, timed
        around the server's answer."""
        statements = []

        def before(conn, cursor, statement, *args):
            conn.info['statement_started'] = time.monotonic()

        def after(conn, cursor, statement, *args):
            statements.append((id(conn), conn.info['statement_started'],
                               time.monotonic(), statement))

        def connected(conn):
            # On the connection itself, first: before a pause that
            # pace_total_order adds later on it.
            sa.event.listen(conn, 'before_cursor_execute', before)
            sa.event.listen(conn, 'after_cursor_execute', after, insert=True)

        sa.event.listen(sa.engine.Engine, 'engine_connect', connected)
        self.addCleanup(sa.event.remove, sa.engine.Engine, 'engine_connect',
                        connected)
        return statements

    def test_sync_pauses_after_each_statement_in_total_order(self):
        """From the baseline to head, whichever revision sends it (the
        copy's triggers and rename in 002, 004's index rename, the new
        tables): after each, nothing for TOTAL_ORDER_GAP."""
        migration.db_sync(migration.MAIN, version=BASELINE,
                          url=self.cell_db.url)
        statements = self.record_statements()
        migration.db_sync(migration.MAIN, url=self.cell_db.url)
        migrating = {conn for conn, _, _, sql in statements
                     if 'alembic_version' in sql}
        self.assertEqual(1, len(migrating))
        sent = [row[1:] for row in statements if row[0] in migrating]
        paced = []
        for (_, ended, sql), (started, _, _) in zip(sent, sent[1:]):
            if sync_waits.in_total_order(sql):
                paced.append(sql.split('(', 1)[0].strip())
                self.assertGreaterEqual(started - ended,
                                        sync_waits.TOTAL_ORDER_GAP, sql)
        for expected in ('CREATE TRIGGER instance_system_metadata_copy_insert',
                         'RENAME TABLE instance_system_metadata TO',
                         'ALTER TABLE instances RENAME INDEX',
                         'CREATE TABLE host_machine_types'):
            self.assertTrue([sql for sql in paced
                             if sql.startswith(expected)], (expected, paced))


class TotalOrderBenchmarkTests(testtools.TestCase):
    """benchmarks/total_order.py at a small size, so that it keeps
    working: its figures, and the nodes' setting it changes for a run
    put back."""

    def retry_settings(self):
        values = []
        for url in nova_fixtures.GALERA_URLS[1:]:
            engine = sa.create_engine(url)
            try:
                with engine.connect() as conn:
                    values.append(conn.execute(sa.text(
                        'SELECT @@global.wsrep_retry_autocommit')).scalar())
            finally:
                engine.dispose()
        return values

    def test_every_figure_is_produced_and_the_setting_put_back(self):
        self.useFixture(ClusterLock())
        try:
            before = self.retry_settings()
        except sa.exc.OperationalError as exc:
            nova_fixtures.unavailable(self, 'the Galera cluster (%s)'
                                      % exc.orig)
        results = os.path.join(self.useFixture(fixtures.TempDir()).path,
                               'total_order.json')
        proc = subprocess.run(
            [sys.executable, '-m', 'benchmarks', 'total_order', '--rows',
             '2000', '--rounds', '2', '--retry-autocommit', '0',
             '--json', results],
            capture_output=True, text=True, timeout=base.TIMEOUT,
            cwd=ROOT)
        self.addDetail('output', testtools.content.text_content(
            proc.stdout + proc.stderr))
        self.assertEqual(0, proc.returncode)
        with open(results) as f:
            [run] = json.load(f)['total_order']
        # Three triggers created and dropped twice, each timed.
        self.assertEqual(12, run['statements'])
        self.assertGreater(run['statement_worst_ms'], 0)
        self.assertEqual([0, 0], run['retry_autocommit'])
        self.assertEqual(['insert', 'update', 'read'],
                         [client['client'] for client in run['clients']])
        for client in run['clients']:
            self.assertGreater(client['requests'], 0, client)
        # Without a replay, what failed failed as Galera's aborts do.
        for client in run['clients']:
            for error in client['first_errors']:
                self.assertIn('(1213, ', error)
        self.assertIn('#### total_order, 2,000 rows', proc.stdout)
        self.assertEqual(before, self.retry_settings())


class SchemaMigrationTests(GaleraCells, base.ReliabilityTestCase):
    """``nova-manage db sync`` from the baseline, through node 1.

    The cell is seeded as the issue's (about ten system metadata rows per
    instance), and every tenth live instance has a duplicated key, which
    the migration to the unique key must reduce to its newest row.
    """

    SYNC_CELL = False

    def setUp(self):
        super().setUp()
        self.assertClean(self.start(base.NOVA_MANAGE, self.config(),
                                    'db', 'sync', '--version', BASELINE))
        self.seed()
        self.duplicated = self._duplicate()
        self.catch_up()

    def _duplicate(self):
        """Duplicate a key of every tenth live instance; return the uuids.

        In half of the groups the newest row is the first (updated
        later), in the others the last (same stamp, highest id): neither
        the id nor the time alone picks the right one.
        """
        tenth = 'i.deleted = 0 AND MOD(i.id, 20) = :rest'
        self.execute(
            "INSERT INTO instance_system_metadata "
            "(instance_uuid, `key`, value, created_at, deleted) "
            "SELECT s.instance_uuid, s.`key`, :value, "
            "s.created_at + INTERVAL :hours HOUR, 0 "
            "FROM instance_system_metadata s JOIN instances i "
            "ON i.uuid = s.instance_uuid "
            "WHERE s.`key` = :key AND s.deleted = 0 AND " + tenth,
            key=DUPLICATED_KEY, value='stale', hours=1, rest=0)
        self.execute(
            "UPDATE instance_system_metadata s JOIN instances i "
            "ON i.uuid = s.instance_uuid "
            "SET s.value = :value, "
            "s.updated_at = s.created_at + INTERVAL 2 HOUR "
            "WHERE s.`key` = :key AND s.deleted = 0 AND s.value <> 'stale' "
            "AND " + tenth, key=DUPLICATED_KEY, value=NEWEST, rest=0)
        self.execute(
            "INSERT INTO instance_system_metadata "
            "(instance_uuid, `key`, value, created_at, deleted) "
            "SELECT s.instance_uuid, s.`key`, :value, s.created_at, 0 "
            "FROM instance_system_metadata s JOIN instances i "
            "ON i.uuid = s.instance_uuid "
            "WHERE s.`key` = :key AND s.deleted = 0 AND " + tenth,
            key=DUPLICATED_KEY, value=NEWEST, rest=10)
        return sorted(row[0] for row in self.execute(
            'SELECT uuid FROM instances i WHERE i.deleted = 0 '
            'AND MOD(i.id, 10) = 0'))

    def start_writer(self):
        """A Writer through node 2, on some live instances.

        Node 2 has applied the seeding (setUp): replaying it there would
        abort the client's first writes, with no migration running.
        """
        uuids = [row[0] for row in self.execute(
            'SELECT uuid FROM instances WHERE deleted = 0 LIMIT 200')]
        writer = Writer(self.cell_db.urls[1], uuids)
        writer.start()
        self.addCleanup(writer.stop)
        return writer

    def assertMigrated(self):
        """At head; one live row per key, the newest of each group."""
        self.assertEqual(migration.head_revision(migration.MAIN),
                         migration.db_version(migration.MAIN,
                                              url=self.cell_db.url))
        self.assertEqual([], self.execute(
            'SELECT instance_uuid, `key`, COUNT(*) '
            'FROM instance_system_metadata WHERE deleted = 0 '
            'GROUP BY instance_uuid, `key` HAVING COUNT(*) > 1'))
        kept = self.execute(
            'SELECT instance_uuid, value FROM instance_system_metadata '
            'WHERE `key` = :key AND deleted = 0 AND instance_uuid IN '
            '(SELECT uuid FROM instances i WHERE i.deleted = 0 '
            'AND MOD(i.id, 10) = 0) ORDER BY instance_uuid',
            key=DUPLICATED_KEY)
        self.assertEqual([(u, NEWEST) for u in self.duplicated],
                         [tuple(row) for row in kept])

    def lost(self, written):
        """The (instance_uuid, key) of ``written`` with no live row."""
        live = {tuple(row) for row in self.execute(
            "SELECT instance_uuid, `key` FROM instance_system_metadata "
            "WHERE `key` LIKE 'client%' AND deleted = 0")}
        return sorted(set(written) - live)

    def test_sync_while_a_client_writes_through_another_node(self):
        writer = self.start_writer()
        self.assertTrue(writer.wait_for(1), writer.errors)
        sync = self.start(base.NOVA_MANAGE, self.config(), 'db', 'sync')
        # From the moment the sync holds its lease (it migrates), a commit
        # followed by the sync still running was made while it ran.
        self.assertTrue(wait_until(lambda: sync.proc.poll() is not None
                                   or self.lease_held()), sync.describe())
        writer.watch = lambda: sync.proc.poll() is None
        sync.finish()
        writer.watch = None
        self.assertGreater(writer.during, 0,
                           'no client write committed while db sync ran')
        # The client goes on once the migration is over.
        self.assertTrue(writer.wait_for(len(writer.written) + 5),
                        writer.errors)
        writer.stop()
        self.assertClean(sync)
        self.assertMigrated()
        self.assertEqual([], writer.errors)
        self.assertEqual([], self.lost(writer.written))
        self.addDetail('replayed', testtools.content.text_content(
            '%d of %d writes replayed after a total-order abort'
            % (writer.replayed, len(writer.written))))

    def lease_held(self):
        """Whether a db sync holds the cluster-wide lease of this cell."""
        return bool(self.execute(
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = :name",
            name=sync_waits.SYNC_LEASE)[0][0])

    def _soft_deleted(self, engine):
        """Rows soft-deleted so far (a dead instance's, or duplicates)."""
        with engine.connect() as conn:
            return conn.execute(sa.text(
                'SELECT COUNT(*) FROM instance_system_metadata '
                'WHERE deleted <> 0')).scalar()

    def _deduplicating(self, engine, soft_deleted_before):
        """Whether an UPDATE of instance_system_metadata runs, or ran.

        An ALTER TABLE of the migration aborts even this read, as a
        deadlock: then it is not known yet.
        """
        try:
            with engine.connect() as conn:
                running = conn.execute(sa.text(
                    "SELECT COUNT(*) FROM information_schema.processlist "
                    "WHERE db = DATABASE() AND id <> CONNECTION_ID() "
                    "AND info LIKE 'UPDATE%instance_system_metadata%'"
                )).scalar()
            return running or \
                self._soft_deleted(engine) > soft_deleted_before
        except sa.exc.OperationalError as exc:
            if exc.orig.args[0] != DEADLOCK:
                raise
            return False

    def test_sync_killed_part_way_then_run_again(self):
        # Not causal: a causal read would wait for an ALTER TABLE to end.
        watch = sa.create_engine(self.cell_db.url)
        self.addCleanup(watch.dispose)
        before = self._soft_deleted(watch)
        sync = self.start(base.NOVA_MANAGE, self.config(), 'db', 'sync')
        self.assertTrue(wait_until(lambda: sync.proc.poll() is not None
                                   or self._deduplicating(watch, before)),
                        'db sync never de-duplicated: ' + sync.describe())
        # Fails if the sync had ended before the kill.
        sync.kill_running()
        # Work was left for the rerun: the cell is not at head.
        self.assertNotEqual(migration.head_revision(migration.MAIN),
                            migration.db_version(migration.MAIN,
                                                 url=self.cell_db.url))
        self.assertClean(self.start(base.NOVA_MANAGE, self.config(),
                                    'db', 'sync'))
        self.assertMigrated()

    def _copy_state(self, engine):
        """(rows in the shadow table, triggers on the table), or None
        when the copy has not started (or is over)."""
        with engine.connect() as conn:
            triggers = conn.execute(sa.text(
                'SELECT COUNT(*) FROM information_schema.triggers '
                'WHERE trigger_schema = DATABASE() '
                '  AND event_object_table = :table'),
                {'table': SYSMETA}).scalar()
            if not conn.execute(sa.text(
                    'SELECT COUNT(*) FROM information_schema.tables '
                    'WHERE table_schema = DATABASE() AND table_name = :name'),
                    {'name': table_copy.shadow_name(SYSMETA)}).scalar():
                return None
            return conn.execute(sa.text(
                'SELECT COUNT(*) FROM %s' % table_copy.shadow_name(SYSMETA)
            )).scalar(), triggers

    def _copying(self, engine):
        """Whether the copy runs, with some rows copied and most not.

        A statement of the copy in total order (creating the shadow or
        a trigger) aborts even this read, as a deadlock: then it is not
        known yet.
        """
        try:
            state = self._copy_state(engine)
        except sa.exc.OperationalError as exc:
            if exc.orig.args[0] != DEADLOCK:
                raise
            return False
        return state is not None and state[1] == 3 and \
            0 < state[0] < self.seeded_rows // 2

    def assertNoCopyLeft(self):
        """No shadow or old table, no trigger: the copy's leftovers."""
        self.assertEqual([], self.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name LIKE '\\_%'"))
        self.assertEqual([], self.execute(
            'SELECT trigger_name FROM information_schema.triggers '
            'WHERE trigger_schema = DATABASE()'))

    def sync_until_copying(self):
        """A client writing through node 2, then db sync through node 1
        until the server shows the copy part done; (sync, writer, the
        engine that watched it)."""
        self.seeded_rows = self.execute(
            'SELECT COUNT(*) FROM instance_system_metadata')[0][0]
        watch = sa.create_engine(self.cell_db.url)
        self.addCleanup(watch.dispose)
        writer = self.start_writer()
        self.assertTrue(writer.wait_for(1), writer.errors)
        sync = self.start(base.NOVA_MANAGE, self.config(0), 'db', 'sync')
        self.assertTrue(wait_until(lambda: sync.proc.poll() is not None
                                   or self._copying(watch), timeout=120),
                        'db sync never copied: ' + sync.describe())
        return sync, writer, watch

    def test_sync_killed_during_the_copy_then_run_again(self):
        """kill -9 while the table is copied (shown from the server: the
        shadow holds some of the rows, the triggers exist), with a client
        writing through node 2; the rerun starts the copy again, and
        ends with nothing left of the first and nothing the client
        wrote lost."""
        sync, writer, watch = self.sync_until_copying()
        sync.kill_running()
        copied, triggers = self._copy_state(watch)
        self.assertEqual(3, triggers)
        self.assertLess(copied, self.seeded_rows)
        self.assertNotEqual(migration.head_revision(migration.MAIN),
                            migration.db_version(migration.MAIN,
                                                 url=self.cell_db.url))
        rerun = self.start(base.NOVA_MANAGE, self.config(), 'db', 'sync')
        self.assertClean(rerun)
        self.assertIn('removed what an interrupted copy of %s left'
                      % SYSMETA, rerun.stdout)
        writer.stop()
        self.assertMigrated()
        self.assertNoCopyLeft()
        self.assertEqual([], self.lost(writer.written))

    def test_node_in_use_stopped_during_the_copy_then_rerun(self):
        """Node 1, through which db sync copies the table, goes in the
        middle of the copy (shown from the server: the shadow holds part
        of the rows) while a client writes through node 2: db sync fails
        without a traceback; rerun through node 2 it starts the copy
        again and completes; node 1 comes back by an incremental transfer
        (IST) with the same schema and rows as node 2, and nothing the
        client wrote is lost."""
        sync, writer, watch = self.sync_until_copying()
        self.stop_node_mid_copy(sync, watch, 0)
        self.assertNotEqual(0, sync.finish(), sync.describe())
        self.assertNotIn('Traceback', sync.stdout + sync.stderr)
        rerun = self.start(base.NOVA_MANAGE, self.config(1), 'db', 'sync')
        self.assertClean(rerun)
        self.assertIn('removed what an interrupted copy of %s left'
                      % SYSMETA, rerun.stdout)
        writer.stop()
        # It missed the rerun's copy: the write sets, kept by the others.
        self.assertIn('node 1: Synced, joined by IST',
                      self.galera('start', '1'))
        self.assertRejoinedMigrated(0, writer.written, reference=1)

    def test_node_lost_during_the_copy_rejoins_by_full_copy(self):
        """Node 3 goes in the middle of the copy (shown from the server)
        and loses its disk; db sync goes on through node 1 and completes.
        Node 3 comes back empty, gets the whole database from a donor
        (SST) and has the same schema and rows as node 1."""
        sync, writer, watch = self.sync_until_copying()
        self.stop_node_mid_copy(sync, watch, 2)
        self.assertClean(sync)
        writer.stop()
        self.assertIn('node 3: Synced, joined by SST',
                      self.galera('start-empty', '3'))
        self.assertRejoinedMigrated(2, writer.written, reference=0)

    def stop_node_mid_copy(self, sync, watch, node):
        """Shut ``node`` (0-based) down in the middle of the copy: db
        sync is frozen while it goes (the server shows the shadow holding
        part of the rows), then goes on."""
        sync.signal(signal.SIGSTOP)
        self.assertIsNone(sync.proc.poll(), 'ended before node %d left: %s'
                          % (node + 1, sync.describe()))
        copied, _ = self._copy_state(watch)
        self.assertLess(copied, self.seeded_rows)
        watch.dispose()
        self.addCleanup(self.galera, 'start', str(node + 1))
        self.galera('stop', str(node + 1))
        remaining = [None if n == node else 2 for n in range(3)]
        self.assertTrue(wait_until(lambda: cluster_sizes() == remaining),
                        cluster_sizes())
        sync.signal(signal.SIGCONT)

    def assertRejoinedMigrated(self, node, written, reference):
        """Once the cluster has its three nodes again, ``node`` (0-based)
        has the migrated schema and the same rows as ``reference``,
        nothing ``written`` lost."""
        self.assertTrue(wait_until(lambda: cluster_sizes() == [3, 3, 3]),
                        cluster_sizes())
        digests, schemas = [], []
        for reader in (reference, node):
            with self.reading_through(reader):
                self.assertMigrated()
                self.assertNoCopyLeft()
                self.assertEqual([], self.lost(written))
                digests.append(self.digest())
                # Less the next id, each node's own (Galera gives each
                # node its own auto-increment offset).
                schemas.append(re.sub(r' AUTO_INCREMENT=\d+', '', self.execute(
                    'SHOW CREATE TABLE instance_system_metadata')[0][1]))
        self.assertEqual(digests[0], digests[1])
        self.assertEqual(schemas[0], schemas[1])

    def test_two_syncs_through_two_nodes(self):
        """db sync through node 1 and node 2 at once: GET_LOCK is each
        node's own, so the cluster-wide lease decides. Held by the test
        through node 1 first, so that the sync through node 2 is seen
        waiting for it, named; then both run together."""
        holder = self.cell_db.urls[0]
        engine = sa.create_engine(holder)
        self.addCleanup(engine.dispose)
        conn = engine.connect().execution_options(
            isolation_level='AUTOCOMMIT')
        self.addCleanup(conn.close)
        lease = sync_waits._SyncLock(conn)
        self.assertTrue(lease.galera)
        self.assertTrue(lease.try_take())
        second = self.start(base.NOVA_MANAGE, self.config(node=1),
                            'db', 'sync')
        self.assertTrue(second.wait_for(lease.me), second.describe())
        first = self.start(base.NOVA_MANAGE, self.config(node=0),
                           'db', 'sync')
        self.assertTrue(first.wait_for(lease.me), first.describe())
        self.assertEqual(BASELINE, migration.db_version(
            migration.MAIN, url=self.cell_db.url))
        lease.release()
        self.assertClean(first)
        self.assertClean(second)
        self.assertMigrated()
        self.assertEqual([], self.execute(
            "SHOW TABLES LIKE '%s'" % sync_waits.SYNC_LEASE))


class GaleraRaceTests(GaleraCells, test_races.RaceTests_mysql):
    """Every recorder at once, each through a node of its own.

    Four ``nova-manage db online_data_migrations`` and the spawns through
    node 1, nova-compute of race-a through node 2 and of race-b through
    node 3: conflicting writes of two nodes are found when they commit,
    and the loser's whole transaction is rolled back as a deadlock.
    """

    DATABASE = None
    HOST_NODES = {'race-a': 1, 'race-b': 2}

    def setUp(self):
        super().setUp()
        self.catch_up()


class NodeLeavesTests(GaleraCells, base.ReliabilityTestCase):
    """A node leaves in the middle of an online data migration.

    The migration works through node 3 (the cell mapping points there).
    Node 2 is shut down, as for maintenance, between two of its batches:
    the run goes on. Node 3 itself goes: the run fails, and a rerun
    through node 1 finishes. Each node that comes back has every row.
    """

    CELL_NODE = 2

    def setUp(self):
        super().setUp()
        self.seed()
        # Host-less instances without a record for several batches.
        self.execute(
            "UPDATE instances SET host = NULL, node = NULL, "
            "vm_state = 'shelved_offloaded' "
            "WHERE deleted = 0 AND MOD(id, 10) <> 0")
        self.execute(
            "DELETE FROM instance_system_metadata WHERE `key` = :key "
            "AND instance_uuid IN (SELECT uuid FROM instances "
            "WHERE host IS NULL)", key=base.KEY)
        self.analyze()
        self.catch_up()
        self.hostless = len(self.unrecorded(HOSTLESS))
        self.assertGreater(self.hostless, 3 * instance_obj.MIGRATION_BATCH)

    def test_node_stopped_mid_migration_then_back(self):
        run = self.start(base.NOVA_MANAGE, self.config(2),
                         'db', 'online_data_migrations')
        self.assertTrue(run.wait_for('rows matched'), run.describe())
        # Frozen while the node goes, so that it leaves mid-run.
        run.signal(signal.SIGSTOP)
        self.assertIsNone(run.proc.poll(),
                          'ended before node 2 left: ' + run.describe())
        self.assertWorkLeft()
        self.addCleanup(self.galera, 'start', '2')
        self.galera('stop', '2')
        self.assertTrue(wait_until(lambda: cluster_sizes() == [2, None, 2]),
                        cluster_sizes())
        run.signal(signal.SIGCONT)
        self.assertClean(run)
        self.assertRejoinedComplete(1)

    def assertRejoinedComplete(self, node):
        """Start ``node`` (0-based) again; once the cluster has its three
        nodes, it has every row node 1 has, the migration's work done."""
        self.galera('start', str(node + 1))
        self.assertTrue(wait_until(lambda: cluster_sizes() == [3, 3, 3]),
                        cluster_sizes())
        digests = []
        for reader in (0, node):
            with self.reading_through(reader):
                self.assertEqual([], self.unrecorded(HOSTLESS))
                self.assertEqual([], self.duplicates())
                digests.append(self.digest())
        # It caught up with what was written while it was away.
        self.assertEqual(digests[0], digests[1])

    def assertWorkLeft(self):
        """Some host-less instances recorded, not all (read via node 1)."""
        with self.reading_through(0):
            left = len(self.unrecorded(HOSTLESS))
        self.assertGreater(left, 0)
        self.assertLess(left, self.hostless)

    def point_cell_at(self, node):
        """Map the cell to ``node``, as an operator moves a cell off a
        node that is down (nova-manage cell_v2 update_cell)."""
        engine = sa.create_engine(self.api_db.urls[node])
        self.addCleanup(engine.dispose)
        with engine.begin() as conn:
            # UPDATE cell_mappings SET database_connection = :url
            conn.execute(sa.text(
                'UPDATE cell_mappings SET database_connection = :url'),
                {'url': self.cell_db.urls[node]})

    def test_node_in_use_stopped_mid_migration_then_rerun(self):
        """The node the migration works through goes: the run fails,
        clearly; rerun through another node, it finishes the work, and
        the node that comes back has every row."""
        run = self.start(base.NOVA_MANAGE, self.config(2),
                         'db', 'online_data_migrations')
        self.assertTrue(run.wait_for('rows matched'), run.describe())
        run.signal(signal.SIGSTOP)
        self.assertIsNone(run.proc.poll(),
                          'ended before node 3 left: ' + run.describe())
        self.assertWorkLeft()
        self.addCleanup(self.galera, 'start', '3')
        self.galera('stop', '3')
        self.assertTrue(wait_until(lambda: cluster_sizes() == [2, 2, None]),
                        cluster_sizes())
        run.signal(signal.SIGCONT)
        self.assertNotEqual(0, run.finish(), run.describe())
        self.assertNotIn('Traceback', run.stdout + run.stderr)
        self.point_cell_at(0)
        self.assertClean(self.start(base.NOVA_MANAGE, self.config(0),
                                    'db', 'online_data_migrations'))
        self.assertRejoinedComplete(2)
