"""Online data migrations on MariaDB and PostgreSQL: the unit tests, again.

Includes cells seeded at the schema before machine types were recorded,
upgraded with Alembic, then migrated.
"""

import subprocess
import threading

import sqlalchemy as sa

from nova import context
from nova.db.main import api as db
from nova.tests import fixtures
from nova.tests.unit.virt.libvirt import test_machine_type_utils as mtu_tests
from nova.tests.unit.cmd import test_manage_db
from nova.tests.unit.cmd import test_online_migrations as unit

for _base in (unit.PreRecordingUpgradeTests, unit.OnlineDataMigrationsTests):
    globals().update(fixtures.backend_variants(_base))


class ParallelCellsTests(unit.OnlineMigrationTestCase):
    """Cells migrate side by side: a locked cell holds up only itself."""

    DATABASE = None
    CELLS = 2

    def lock_instances(self, url):
        """Hold a lock on ``url``'s instances table; return the release."""
        engine = sa.create_engine(url)
        conn = engine.connect()
        if self.DATABASE in ('mysql', 'mariadb'):
            conn.exec_driver_sql('LOCK TABLES instances WRITE')
        else:
            conn.exec_driver_sql(
                'LOCK TABLE instances IN ACCESS EXCLUSIVE MODE')

        def release():
            conn.close()
            engine.dispose()
        self.addCleanup(release)
        return release

    def recorded(self, cell, uuid):
        with context.target_cell(self.context, self.cells[cell]) as cctxt:
            return db.instance_system_metadata_get_many(
                cctxt, [uuid])[uuid].get('hw_machine_type')

    def test_the_other_cell_is_migrated_while_one_is_locked(self):
        offloaded = {'vm_state': 'shelved_offloaded', 'host': None}
        first = self.make(cell=0, **offloaded).uuid
        second = self.make(cell=1, **offloaded).uuid
        release = self.lock_instances(self.db.cell_urls[0])
        proc = subprocess.Popen(
            [test_manage_db.NOVA_MANAGE, '--config-file', self.config_file,
             'db', 'online_data_migrations'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.kill)
        # Well within [DEFAULT]cell_timeout (60 s), after which a locked
        # first cell would fail and free a sequential run for the second.
        self.assertTrue(fixtures.poll(lambda: self.recorded(1, second),
                                      timeout=30),
                        'the second cell waited for the locked first one')
        self.assertIsNone(proc.poll())
        release()
        out, err = proc.communicate(timeout=120)
        self.assertEqual(0, proc.returncode, (out, err))
        self.assertEqual('pc-q35-8.2', self.recorded(0, first))
        self.assertEqual('pc-q35-8.2', self.recorded(1, second))


globals().update(fixtures.backend_variants(ParallelCellsTests))
del ParallelCellsTests


class RecordingBesideInstanceSavesTests(mtu_tests.MachineTypeTestMixin,
                                        fixtures.TestCase):
    """A page of the online migration and a save of one of its instances
    on MariaDB: both succeed, neither rolled back as a deadlock.

    A save updates the instance by uuid: InnoDB locks the uuid index
    entry, then the row. The page's INSERT ... SELECT share-locks the
    rows it reads, and each insert's foreign key check the instance's
    uuid entry. The interleaving that deadlocked when the page read its
    instances by id is set up step by step: the page's insert for the
    first instance waits for a lock another client holds on its record's
    key, while the second instance's save starts.
    """

    DATABASE = None
    KEY = 'hw_machine_type'
    POLL_INTERVAL = 0.25

    def connect(self):
        engine = sa.create_engine(self.db.cell_urls[0])
        self.addCleanup(engine.dispose)
        conn = engine.connect()
        self.addCleanup(conn.close)
        return conn

    def test_a_save_during_a_page_is_not_a_deadlock_victim(self):
        offloaded = {'vm_state': 'shelved_offloaded', 'host': None}
        first, second = sorted(
            (self.make(**offloaded).uuid for _ in range(2)))
        observer = self.connect()
        # A client holds the gap where the first record goes.
        holder = self.connect()
        holder.begin()
        holder.execute(sa.text(
            'SELECT id FROM instance_system_metadata WHERE instance_uuid '
            '= :uuid AND `key` = :key AND deleted = 0 FOR UPDATE'),
            {'uuid': first, 'key': self.KEY})
        errors = []

        def run(call):
            try:
                call()
            except Exception as exc:
                errors.append(exc)

        page = threading.Thread(target=run, args=(
            lambda: db.instance_system_metadata_record_hostless(
                self.cell_context(0), self.KEY,
                {'pc-q35-8.2': [first, second]}),))
        page.start()
        self.addCleanup(page.join, 60)
        self.assertTrue(fixtures.poll(lambda: fixtures.lock_waits(
            observer, 'INSERT INTO instance_system_metadata'), timeout=30,
            interval=self.POLL_INTERVAL))
        saver = self.connect()

        def save():
            with saver.begin():
                saver.execute(sa.text(
                    'UPDATE instances SET updated_at = updated_at '
                    'WHERE uuid = :uuid'), {'uuid': second})

        save_thread = threading.Thread(target=run, args=(save,))
        save_thread.start()
        self.addCleanup(save_thread.join, 60)
        # The save either finished or waits for the page's locks.
        self.assertTrue(fixtures.poll(
            lambda: not save_thread.is_alive()
            or fixtures.lock_waits(observer, 'UPDATE instances'), timeout=30,
            interval=self.POLL_INTERVAL))
        holder.rollback()
        page.join(60)
        save_thread.join(60)
        self.assertEqual([], errors)
        recorded = db.instance_system_metadata_get_many(
            self.cell_context(0), [first, second])
        self.assertEqual(['pc-q35-8.2'] * 2,
                         [recorded[uuid].get(self.KEY)
                          for uuid in (first, second)])


globals().update(fixtures.backend_variants(
    RecordingBesideInstanceSavesTests, ('mysql', 'mariadb')))
del RecordingBesideInstanceSavesTests
