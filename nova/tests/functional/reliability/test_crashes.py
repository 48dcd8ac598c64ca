"""Crashes: kill -9 at random points, then a rerun, many times.

The online data migration and nova-compute's start-up are killed with
SIGKILL at random points of their run, on MariaDB and PostgreSQL. After
each kill the records written so far are whole batches (each batch is one
transaction); a rerun then completes and leaves exactly the records of an
uninterrupted run. Between rounds the records written since seeding are
deleted, so every round starts from the same state.
"""

import random
import signal
import time

from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base

KILLS = 10
BATCH = 1000   # nova.objects.instance.MIGRATION_BATCH
HOST = 'crash-a'
DOMAINS = 5


class CrashTestCase(base.ReliabilityTestCase):

    def setUp(self):
        super().setUp()
        self.seed()

    def new_records(self):
        """How many records were written since seeding."""
        return self.execute(
            'SELECT count(*) FROM instance_system_metadata WHERE id > :id',
            id=self.seed_max_sysmeta_id)[0][0]


class MigrationCrashTests(CrashTestCase):

    def setUp(self):
        super().setUp()
        # ~2,700 unrecorded instances without a host: three batches.
        self.execute(
            "UPDATE instances SET host = NULL, node = NULL, "
            "vm_state = 'shelved_offloaded' "
            "WHERE deleted = 0 AND MOD(id, 10) IN (5, 6, 7, 8)")
        self.analyze()
        self.conf_path = self.config()

    def migrate(self):
        return self.start(base.NOVA_MANAGE, self.conf_path,
                          'db', 'online_data_migrations')

    def test_kill_9_at_random_points_then_rerun(self):
        self.assertClean(self.migrate())
        expected = self.records()
        total = self.new_records()
        self.assertGreater(total, 2 * BATCH)
        whole_batches = set(range(0, total, BATCH)) | {total}
        for _ in range(KILLS):
            self.forget_new_records()
            process = self.migrate()
            # After 0 to all batches, and a little into the next one.
            process.wait_for('rows matched', times=random.randint(0, 2))
            time.sleep(random.uniform(0, 0.05))
            process.kill()
            self.assertIn(self.new_records(), whole_batches)
            self.assertClean(self.migrate())
            self.assertEqual(expected, self.records())
            self.assertEqual([], self.duplicates())


class ComputeCrashTests(CrashTestCase):

    def setUp(self):
        super().setUp()
        self.conn = self.libvirt()
        self.execute(
            'UPDATE instances SET host = :host, node = :host '
            'WHERE deleted = 0 AND host IS NOT NULL AND MOD(id, 10) = 1',
            host=HOST)
        self.analyze()
        self.live = self.define_domains(
            self.conn, self.unrecorded("i.host = '%s'" % HOST)[:DOMAINS])
        self.conf_path = self.config(DEFAULT={'host': HOST})

    def start_compute(self):
        return self.start(base.NOVA_COMPUTE, self.conf_path)

    def run_to_running(self):
        """Start nova-compute, wait until it runs, stop it: its seconds."""
        started = time.monotonic()
        process = self.start_compute()
        self.assertTrue(process.wait_for(base.RUNNING), process.describe())
        elapsed = time.monotonic() - started
        process.signal(signal.SIGTERM)
        self.assertClean(process)
        return elapsed

    def test_kill_9_during_init_host_then_rerun(self):
        startup = self.run_to_running()
        expected = self.records()
        total = self.new_records()
        for instance_uuid, machine_type in self.live.items():
            self.assertEqual(machine_type, expected[instance_uuid])
        # Nothing, the live records (one statement), or all (the second).
        whole = {0, len(self.live), total}
        for _ in range(KILLS):
            self.forget_new_records()
            process = self.start_compute()
            time.sleep(random.uniform(0.3, 1.1) * startup)
            process.kill()
            self.assertIn(self.new_records(), whole)
            self.run_to_running()
            self.assertEqual(expected, self.records())
            self.assertEqual([], self.duplicates())


for _base in (MigrationCrashTests, ComputeCrashTests):
    globals().update(nova_fixtures.backend_variants(_base))
del CrashTestCase, MigrationCrashTests, ComputeCrashTests, _base
