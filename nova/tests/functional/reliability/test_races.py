"""Races: every recorder at once on one cell of 20,000 instances.

Four ``nova-manage db online_data_migrations`` processes, two
``nova-compute`` processes starting up and a stream of spawns (threads
with contexts of their own) run together on MariaDB and PostgreSQL,
against the real libvirtd. The configured default (q35) differs from
what the domains run (pc, which libvirt reports versioned), so a computed
value that beat a live one would show.
"""

import logging
import signal
import threading
import uuid as uuid_lib

import fixtures
from oslo_db import exception as db_exc
import sqlalchemy as sa

from nova.compute import manager
from nova.compute import vm_states
from nova import context
from nova.db.main import api as db
from nova.db import transactions
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base

HOSTS = ('race-a', 'race-b')
# Where the test's own builds run, in this process: other hosts than the
# starting ones, whose start-up would take an in-flight build for one a
# restart cut off (nova.compute.recovery), as Nova's does.
SPAWN_HOSTS = ('race-c', 'race-d')
MIGRATIONS = 4
# Legacy domains per host (defined, no record), and spawns per host.
DOMAINS_PER_HOST = 10
SPAWNS_PER_HOST = 4


def add_weight(connection, instance_uuid):
    """100 system metadata rows of ``instance_uuid`` in ``connection``'s
    transaction: they make it the heavier one, so InnoDB picks the other
    transaction of a deadlock (the writer under test) as its victim."""
    connection.execute(db.SYSMETA.insert(), [
        {'instance_uuid': instance_uuid, 'key': 'weight-%d' % i,
         'value': 'w', 'deleted': 0} for i in range(100)])


class LockWaitsMixin:
    """Tests that build a deadlock step by step, waiting for lock waits."""

    def wait_for_lock_waits(self, engine, count=1):
        """Wait until ``count`` sessions on this test's database wait for
        a lock (the other test worker may build a deadlock of its own at
        the same time: not counted)."""
        with engine.connect() as watcher:
            # Every 0.25 s: InnoDB's views stay fresh, and well within
            # PostgreSQL's 1 s deadlock_timeout.
            self.assertTrue(nova_fixtures.poll(
                lambda: nova_fixtures.lock_waits(watcher) >= count,
                timeout=50, interval=0.25),
                'never %d lock waits' % count)


class RaceTests(LockWaitsMixin, base.ReliabilityTestCase):

    def setUp(self):
        super().setUp()
        self.conn = self.libvirt()
        self.flags(connection_uri=base.LIBVIRT_URI, virt_type=base.VIRT_TYPE,
                   hw_machine_type=['x86_64=q35'], group='libvirt')
        self.seed()
        self._reshape()

    def _reshape(self):
        """Give the recorders much to race on: ~1,500 unrecorded instances
        without a host and ~600 on each of the two starting hosts."""
        self.execute(
            "UPDATE instances SET host = NULL, node = NULL, "
            "vm_state = 'shelved_offloaded' "
            "WHERE deleted = 0 AND MOD(id, 10) IN (5, 6)")
        for digit, host in zip((1, 2), HOSTS):
            self.execute(
                'UPDATE instances SET host = :host, node = :host '
                'WHERE deleted = 0 AND host IS NOT NULL AND MOD(id, 10) = '
                ':digit', host=host, digit=digit)

    def _legacy_domains(self):
        """Define domains for some unrecorded instances of each host."""
        defined = {}
        for host in HOSTS:
            uuids = self.unrecorded("i.host = '%s'" % host)
            defined.update(self.define_domains(
                self.conn, uuids[:DOMAINS_PER_HOST]))
        return defined

    def _spawn_stream(self, spawned, errors):
        """Build instances on SPAWN_HOSTS, one after the other."""
        try:
            ctxt = context.get_admin_context()
            context.set_target_cell(ctxt, self.cells[0])
            computes = [manager.ComputeManager(host)
                        for host in SPAWN_HOSTS]
            image = objects.ImageMeta.from_dict(
                {'id': str(uuid_lib.uuid4()),
                 'properties': {'hw_machine_type': 'pc'}})
            for index in range(SPAWNS_PER_HOST * len(SPAWN_HOSTS)):
                instance = objects.Instance(
                    ctxt, uuid=str(uuid_lib.uuid4()), project_id='p',
                    user_id='u', image_ref=image.id, architecture='x86_64',
                    vm_state=vm_states.BUILDING, system_metadata={})
                instance.create()
                self.addCleanup(base.remove_domain, self.conn, instance.uuid)
                computes[index % len(computes)].build_and_run_instance(
                    ctxt, instance, image)
                spawned.append(instance.uuid)
        except Exception as exc:
            errors.append(exc)

    def _hold_first_hostless_record(self):
        """Write the record every online data migration writes first, and
        keep it uncommitted: each of them waits for it. Returns the
        holder's connection, in its transaction."""
        # The migrations walk host-less instances by id: the first
        # unrecorded one is where every one of them starts writing.
        [[uuid]] = self.execute(
            "SELECT i.uuid FROM instances i WHERE i.id = (SELECT MIN(j.id) "
            "FROM instances j WHERE j.deleted = 0 AND j.host IS NULL "
            "AND j.vm_state <> 'building' AND NOT EXISTS (SELECT 1 FROM "
            "instance_system_metadata s WHERE s.instance_uuid = j.uuid "
            "AND s.%s = :key AND s.deleted = 0))" % self.key_col,
            key=base.KEY)
        holder = self.engine.connect()
        self.addCleanup(holder.close)
        holder.execute(db.SYSMETA.insert().values(
            instance_uuid=uuid, key=base.KEY, value='pc', deleted=0))
        return holder

    def test_every_recorder_at_once(self):
        legacy = self._legacy_domains()
        holder = self._hold_first_hostless_record()
        migrations = [
            self.start(base.NOVA_MANAGE, self.config(),
                       'db', 'online_data_migrations')
            for _ in range(MIGRATIONS)]
        computes = [self.start(base.NOVA_COMPUTE,
                               self.config(DEFAULT={'host': host}))
                    for host in HOSTS]
        # The race is held until the server shows two migrations waiting
        # at once on the holder's row: whatever the machine's load, at
        # least two recorders run together from there.
        self.wait_for_lock_waits(self.engine, count=2)
        holder.rollback()
        spawned, errors = [], []
        spawns = threading.Thread(target=self._spawn_stream,
                                  args=(spawned, errors))
        spawns.start()
        for process in computes:
            self.assertTrue(process.wait_for(base.RUNNING),
                            process.describe())
        for process in migrations:
            self.assertClean(process)
        spawns.join(base.TIMEOUT)
        self.assertFalse(spawns.is_alive())
        self.assertEqual([], errors)
        for process in computes:
            process.signal(signal.SIGTERM)
            self.assertClean(process)
        self._assert_one_record_each(legacy, spawned)

    def _assert_one_record_each(self, legacy, spawned):
        self.assertEqual([], self.duplicates())
        # Every instance a recorder was responsible for is recorded:
        # without a host (not building), or on a host that started.
        self.assertEqual([], self.unrecorded(
            "(i.host IS NULL AND i.vm_state <> 'building') OR "
            "i.host IN ('race-a', 'race-b')"))
        records = self.records()
        live = dict(legacy)
        for instance_uuid in spawned:
            domain = self.conn.lookupByUUIDString(instance_uuid)
            live[instance_uuid] = base.xml_machine_type(domain.XMLDesc(0))
        self.assertEqual(len(HOSTS) * (DOMAINS_PER_HOST + SPAWNS_PER_HOST),
                         len(live), (legacy, spawned))
        for instance_uuid, machine_type in live.items():
            self.assertRegex(machine_type, r'^pc-i440fx-')
            self.assertEqual(machine_type, records[instance_uuid],
                             instance_uuid)
        self._assert_unique_key_refuses_a_second_row(spawned[0])

    def _assert_unique_key_refuses_a_second_row(self, instance_uuid):
        """The schema, not only the code, keeps one live row."""
        ctxt = context.get_admin_context()
        context.set_target_cell(ctxt, self.cells[0])
        with transactions.using(ctxt, db.get_context_manager(ctxt).writer):
            insert = db.SYSMETA.insert().values(
                instance_uuid=instance_uuid, key=base.KEY, value='pc',
                deleted=0)
            self.assertRaises(db_exc.DBDuplicateEntry,
                              ctxt.session.execute, insert)


class DeadlockRetryTests(LockWaitsMixin, nova_fixtures.TestCase):
    """A real deadlock in a recording writer is replayed, not surfaced.

    Another client, in one transaction, locks a row the writer needs
    next, waits until the writer waits for it, then asks for a row the
    writer holds. The server breaks the cycle by rolling one of the two
    back; the writer must be the one, and replay:

    - MariaDB rolls back the lighter transaction: the other client
      writes 100 rows first, the writer a few;
    - PostgreSQL rolls back the transaction whose deadlock check finds
      the cycle, run once ``deadlock_timeout`` after it began to wait:
      the other client's is set to 30 s, so the writer's (1 s) finds it,
      whichever of the two waited first.
    """

    def _survivor(self, connection, ballast_uuid):
        """Make the other client's transaction the one the server keeps.

        100 rows of an instance the writer does not touch (InnoDB's
        foreign key check share-locks the instance row) make it the
        heavier; the test user is a PostgreSQL superuser, who may set
        deadlock_timeout.
        """
        if connection.dialect.name == 'postgresql':
            connection.execute(sa.text("SET LOCAL deadlock_timeout = '30s'"))
        add_weight(connection, ballast_uuid)

    def _assert_replayed(self, retries, writer):
        """The server chose the writer as its victim, and it replayed."""
        self.assertRegex(retries.output,
                         'Deadlock found|deadlock detected')
        self.assertIn('Performing DB retry for function '
                      'nova.db.main.api.%s' % writer, retries.output)

    def test_record_replays_a_real_deadlock(self):
        retries = self.useFixture(fixtures.FakeLogger(
            name='oslo_db.api', level=logging.DEBUG))
        ctxt = self.cell_context()
        first, second = sorted(self.create_instance(ctxt).uuid
                               for _ in range(2))
        ballast = self.create_instance(ctxt)
        errors = []
        with db.get_engine(ctxt).connect() as other:
            with other.begin():
                self._survivor(other, ballast.uuid)
                other.execute(db.SYSMETA.insert().values(
                    instance_uuid=second, key=base.KEY, value='other',
                    deleted=0))
                # The writer records ``first``, then waits for ``second``.
                writer = nova_fixtures.start_thread(
                    lambda: db.instance_system_metadata_record(
                        ctxt, base.KEY, {first: 'q35', second: 'q35'}),
                    errors)
                self.wait_for_lock_waits(other.engine)
                # Now the other client waits for the writer's ``first``.
                other.execute(db.SYSMETA.insert().values(
                    instance_uuid=first, key=base.KEY, value='other',
                    deleted=0))
            writer.join(60)
        self.assertFalse(writer.is_alive())
        self.assertEqual([], errors)
        self._assert_replayed(retries, 'instance_system_metadata_record')
        # Replayed as insert-if-absent: the other client's values stand.
        recorded = db.instance_system_metadata_get_many(
            ctxt, [first, second])
        self.assertEqual(['other', 'other'],
                         [recorded[uuid][base.KEY]
                          for uuid in (first, second)])

    def test_save_replays_a_real_deadlock(self):
        retries = self.useFixture(fixtures.FakeLogger(
            name='oslo_db.api', level=logging.DEBUG))
        ctxt = self.cell_context()
        instance = self.create_instance(
            ctxt, system_metadata={base.KEY: 'pc-q35-7.1'})
        ballast = self.create_instance(ctxt)
        errors = []
        with db.get_engine(ctxt).connect() as other:
            with other.begin():
                self._survivor(other, ballast.uuid)
                other.execute(db.SYSMETA.update().where(
                    db.SYSMETA.c.instance_uuid == instance.uuid,
                    db.SYSMETA.c.key == base.KEY).values(value='other'))
                instance.system_metadata[base.KEY] = 'pc-q35-7.2'
                instance.vm_state = vm_states.STOPPED
                # The save updates the instance row, then waits for the
                # system metadata row.
                writer = nova_fixtures.start_thread(instance.save, errors)
                self.wait_for_lock_waits(other.engine)
                # Now the other client waits for the instance row.
                other.execute(db.INSTANCES.update().where(
                    db.INSTANCES.c.uuid == instance.uuid).values(
                        display_name='renamed'))
            writer.join(60)
        self.assertFalse(writer.is_alive())
        self.assertEqual([], errors)
        self._assert_replayed(retries, 'instance_update')
        # The replay ran after the other client committed: both writes
        # are there, the save's value last.
        saved = objects.Instance.get_by_uuid(
            ctxt, instance.uuid, expected_attrs=['system_metadata'])
        self.assertEqual(
            ('pc-q35-7.2', vm_states.STOPPED, 'renamed'),
            (saved.system_metadata[base.KEY], saved.vm_state,
             saved.display_name))


class StartUpDeadlockTests(nova_fixtures.TestCase):
    """Two compute hosts starting at once deadlock on MariaDB.

    Each host's start-up deletes its machine types and inserts them again.
    InnoDB's DELETE locks the gap at the end of the unique index, and each
    host's INSERT then waits for the other's gap: a real deadlock, in
    which InnoDB rolls back the lighter transaction, here the writer's.
    The writer replays it and both hosts' lists land.
    """

    def _machine_types(self, count):
        return [{'arch': 'x86_64', 'name': 'pc-i440fx-%d.0' % i,
                 'canonical': None, 'deprecated': False}
                for i in range(count)]

    def _wait_for_insert(self, connection):
        """Wait until another session of ours runs its INSERT (on this
        test's database: the other worker may run one of its own)."""
        query = sa.text(
            "SELECT COUNT(*) FROM information_schema.processlist "
            "WHERE id <> CONNECTION_ID() AND db = DATABASE() "
            "AND info LIKE 'INSERT INTO host_machine_types%'")
        self.assertTrue(nova_fixtures.poll(
            lambda: connection.execute(query).scalar(), timeout=10,
            interval=0.05), 'the writer never reached its INSERT')

    def test_start_up_replays_a_real_deadlock(self):
        # oslo.db's retry logs the error it caught and each replay.
        retries = self.useFixture(fixtures.FakeLogger(
            name='oslo_db.api', level=logging.DEBUG))
        ctxt = self.cell_context()
        table = db.HOST_MACHINE_TYPES
        # The last row sorts after the others (q35 > pc-...), into the
        # gap at the end of the index that the writer's DELETE locked.
        other_host = [dict(mt, host='host-a', deleted=0)
                      for mt in self._machine_types(100)]
        other_host.append({'host': 'host-a', 'deleted': 0, 'arch': 'x86_64',
                           'name': 'q35', 'canonical': None,
                           'deprecated': False})
        mine = self._machine_types(20)
        errors = []
        with db.get_engine(ctxt).connect() as other:
            with other.begin():
                other.execute(table.delete().where(table.c.host == 'host-a'))
                # Many rows make this transaction the heavier one, so
                # InnoDB picks the writer under test as the victim.
                other.execute(table.insert(), other_host[:100])
                thread = nova_fixtures.start_thread(
                    lambda: db.host_machine_types_replace(ctxt, 'host-b',
                                                          mine), errors)
                self._wait_for_insert(other)
                other.execute(table.insert(), other_host[100:])
            thread.join(60)
        self.assertFalse(thread.is_alive())
        self.assertEqual([], errors)
        self.assertEqual(sorted(mt['name'] for mt in mine), sorted(
            mt['name'] for mt in db.host_machine_types_get(ctxt, 'host-b')))
        self.assertEqual(101, len(db.host_machine_types_get(ctxt, 'host-a')))
        # The server did pick the writer as its victim, and it replayed.
        self.assertIn('Deadlock found', retries.output)
        self.assertIn('Performing DB retry for function '
                      'nova.db.main.api.host_machine_types_replace',
                      retries.output)


class AutoincLockDeadlockTests(LockWaitsMixin, nova_fixtures.TestCase):
    """A deadlock on InnoDB's AUTO-INC lock is replayed too.

    An INSERT ... SELECT holds the table's AUTO-INC lock until the
    statement ends. Here another client's INSERT ... SELECT holds it and
    waits for a row the online migration's writer inserted, while the
    writer's next statement waits for that AUTO-INC lock. InnoDB rolls
    the lighter transaction (the writer's) back and reports it as error
    1467, "Failed to read auto-increment value", which oslo.db hands on
    untranslated. The writer replays it and both clients' rows land.
    """

    def _other_client(self, connection, uuids, errors):
        """A heavier transaction whose INSERT ... SELECT records 'other'
        for ``uuids``, in a thread: it blocks on the writer's row."""
        def insert():
            with connection.begin():
                add_weight(connection, uuids[0])
                connection.execute(sa.text(
                    "INSERT INTO instance_system_metadata "
                    "(instance_uuid, `key`, value, deleted) "
                    "SELECT uuid, :key, 'other', 0 FROM instances "
                    "WHERE uuid IN :uuids ORDER BY uuid").bindparams(
                        sa.bindparam('uuids', expanding=True)),
                    {'key': base.KEY, 'uuids': uuids})
        return nova_fixtures.start_thread(insert, errors)

    def test_migration_replays_an_autoinc_lock_deadlock(self):
        retries = self.useFixture(fixtures.FakeLogger(
            name='oslo_db.api', level=logging.DEBUG))
        ctxt = self.cell_context()
        first, mine, blocked = sorted(
            self.create_instance(ctxt).uuid for _ in range(3))
        errors, other_errors = [], []
        engine = db.get_engine(ctxt)
        with engine.connect() as holder, engine.connect() as other:
            # The writer's second statement (q35) first waits for this
            # row lock, after its first (pc) has inserted ``mine``.
            holder.begin()
            holder.execute(sa.text(
                'SELECT id FROM instances WHERE uuid = :uuid FOR UPDATE'),
                {'uuid': blocked})
            writer = nova_fixtures.start_thread(
                lambda: db.instance_system_metadata_record_hostless(
                    ctxt, base.KEY, {'pc': [mine], 'q35': [blocked]}),
                errors)
            self.wait_for_lock_waits(engine, 1)
            # Inserts ``first`` (taking the AUTO-INC lock), then waits for
            # the writer's uncommitted row of ``mine``.
            inserter = self._other_client(other, [first, mine],
                                          other_errors)
            self.wait_for_lock_waits(engine, 2)
            # The writer reads ``blocked`` and waits for the AUTO-INC lock:
            # the deadlock.
            holder.rollback()
            inserter.join(60)
            writer.join(60)
        self.assertFalse(writer.is_alive() or inserter.is_alive())
        self.assertEqual([], errors)
        self.assertEqual([], other_errors)
        recorded = db.instance_system_metadata_get_many(
            ctxt, [first, mine, blocked])
        self.assertEqual(('other', 'other', 'q35'), tuple(
            recorded[uuid][base.KEY] for uuid in (first, mine, blocked)))
        # The server did pick the writer as its victim, and it replayed
        # an error oslo.db left untranslated (a DBDeadlock would be logged
        # as 'DB error: ...'): the 1467.
        self.assertIn('Performing DB retry for function nova.db.main.api.'
                      'instance_system_metadata_record_hostless',
                      retries.output)
        self.assertNotIn('DB error', retries.output)


for _base in (RaceTests, DeadlockRetryTests):
    globals().update(nova_fixtures.backend_variants(_base))
for _base in (StartUpDeadlockTests, AutoincLockDeadlockTests):
    globals().update(nova_fixtures.backend_variants(
        _base, backends=('mysql',)))
del RaceTests, DeadlockRetryTests, StartUpDeadlockTests
del AutoincLockDeadlockTests, _base
