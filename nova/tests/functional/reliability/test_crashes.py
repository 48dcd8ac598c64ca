"""Crashes: kill -9 at each point that leaves work half done, then a rerun.

The online data migration and nova-compute's start-up are killed with
SIGKILL in the middle of their run, on MariaDB and PostgreSQL: the
migration once in each of its batches (at least two left), a random
moment into it; the start-up, twice, while its second statement waits
for another writer's row. What was written at the kill is read from the
database: whole write transactions, or the live records alone. A rerun
then completes and leaves exactly the records of an uninterrupted run.
Between rounds the records written since seeding are deleted, so every
round starts from the same state.
"""

import logging
import os
import random
import signal
import time

import sqlalchemy as sa
import testtools.content

from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base

LOG = logging.getLogger(__name__)
# Kills of start-up: each lands on the same state (shown from the
# server), the second after a whole rerun.
COMPUTE_KILLS = 2
BATCH = 1000   # nova.objects.instance.MIGRATION_BATCH: a progress line
CHUNK = 250    # nova.objects.instance.RECORD_CHUNK: a write transaction
HOST = 'crash-a'
DOMAINS = 5


def seeded_random(test):
    """A random generator for ``test``, its seed logged with the test's
    details (and in its id's log line) so that a failure can be replayed
    with NOVA_TEST_SEED=<seed>."""
    seed = int(os.environ.get('NOVA_TEST_SEED') or random.randrange(2 ** 32))
    test.addDetail('seed', testtools.content.text_content(str(seed)))
    LOG.info('%s: random seed %d', test.id(), seed)
    return random.Random(seed)


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
        # ~5,400 unrecorded instances without a host: six batches.
        self.execute(
            "UPDATE instances SET host = NULL, node = NULL, "
            "vm_state = 'shelved_offloaded' "
            "WHERE deleted = 0 AND MOD(id, 10) IN (1, 2, 3, 4, 5, 6, 7, 8)")
        self.analyze()
        self.conf_path = self.config()

    def migrate(self):
        return self.start(base.NOVA_MANAGE, self.conf_path,
                          'db', 'online_data_migrations')

    def test_kill_9_in_each_batch_then_rerun(self):
        rng = seeded_random(self)
        self.assertClean(self.migrate())
        expected = self.records()
        total = self.new_records()
        batches = -(-total // BATCH)
        self.assertGreaterEqual(batches, 5)
        # After 1, 2, ... batches - 3 batches announced: at least two
        # remain, so the kill lands between the first write and the last.
        # Then a random moment (up to 50 ms) into the next batch.
        for after in range(1, batches - 2):
            self.forget_new_records()
            process = self.migrate()
            self.assertTrue(process.wait_for('rows matched', times=after),
                            process.describe())
            time.sleep(rng.uniform(0, 0.05))
            process.signal(signal.SIGSTOP)
            at_kill = self.new_records()
            process.kill_running()
            # Whole write transactions only, at least the batches
            # announced, not all.
            self.assertEqual(0, at_kill % CHUNK, at_kill)
            self.assertLessEqual(after * BATCH, at_kill)
            self.assertLess(at_kill, total)
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

    def hold_a_computed_record(self):
        """Begin another writer's record of an instance that has no domain
        (not committed): start-up's second statement, which records the
        computed types, waits for it on the unique key, after its first
        statement committed the live ones. Returns that connection."""
        computed = sorted(set(self.unrecorded("i.host = '%s'" % HOST))
                          - set(self.live))
        conn = self.engine.connect()
        self.addCleanup(conn.close)
        conn.begin()
        conn.execute(sa.text(
            'INSERT INTO instance_system_metadata (instance_uuid, %s, '
            'value, deleted) VALUES (:uuid, :key, :value, 0)'
            % self.key_col), {'uuid': computed[0], 'key': base.KEY,
                              'value': 'pc'})
        return conn

    def live_committed_computed_waiting(self, watcher):
        """Whether start-up is between its two writes: the live records
        committed, and an INSERT of system metadata waiting for a lock
        (the held record), as the server says."""
        return (nova_fixtures.lock_waits(
                    watcher, 'INSERT INTO instance_system_metadata')
                and self.new_records() == len(self.live))

    def test_kill_9_during_init_host_then_rerun(self):
        self.run_to_running()
        expected = self.records()
        for instance_uuid, machine_type in self.live.items():
            self.assertEqual(machine_type, expected[instance_uuid])
        for _ in range(COMPUTE_KILLS):
            self.forget_new_records()
            held = self.hold_a_computed_record()
            process = self.start_compute()
            with self.engine.connect() as watcher:
                self.assertTrue(base.poll(
                    lambda: self.live_committed_computed_waiting(watcher),
                    interval=0.25), process.describe())
            process.kill_running()
            held.rollback()
            # Killed between its first write and its last: nothing more
            # than the live records was committed.
            self.assertEqual(len(self.live), self.new_records())
            self.run_to_running()
            self.assertEqual(expected, self.records())
            self.assertEqual([], self.duplicates())


for _base in (MigrationCrashTests, ComputeCrashTests):
    globals().update(nova_fixtures.backend_variants(_base))
del CrashTestCase, MigrationCrashTests, ComputeCrashTests, _base
