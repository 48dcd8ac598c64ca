"""The scale and upgrade benchmarks at a small size, so that they keep
working.

Runs benchmarks/scale.py on SQLite, MariaDB and PostgreSQL (a test each)
with about 2,000 instances and a few hundred domains, and
benchmarks/upgrade.py on MariaDB and PostgreSQL with 3,000 instances, and
checks that every figure is produced and every check passed. Timings are
printed, never asserted: they belong to benchmarks/RESULTS.md.
"""

import json
import os
import subprocess
import sys

import fixtures
import sqlalchemy as sa
import testtools

from nova.tests import fixtures as nova_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
SCRIPT = os.path.join(ROOT, 'benchmarks', 'scale.py')
UPGRADE = os.path.join(ROOT, 'benchmarks', 'upgrade.py')
OPERATIONS = ('list_unset_machine_type', 'nova-status upgrade check',
              'db online_data_migrations', 'online_data_migrations loop',
              'bulk_update_machine_type', 'init_host', 'get_machine_type')


SERVERS = ('mysql', 'postgresql')


class SmallBenchmarkTest(testtools.TestCase):

    def require(self, backend):
        """Skip, or under CI fail, when ``backend``'s server is down."""
        engine = sa.create_engine(nova_fixtures.ADMIN_URLS[backend])
        try:
            with engine.connect():
                pass
        except sa.exc.OperationalError as exc:
            nova_fixtures.unavailable(self, '%s (%s)' % (backend, exc.orig))
        finally:
            engine.dispose()

    def check_every_figure_is_produced(self, backend):
        """scale.py on ``backend`` alone: each backend is its own test, so
        that the three run on different test workers."""
        if backend in SERVERS:
            self.require(backend)
        work = self.useFixture(fixtures.TempDir()).path
        results = os.path.join(work, 'results.json')
        proc = subprocess.run(
            [sys.executable, SCRIPT, '--backend', backend, '--instances',
             '2000', '--domains', '300', '--bulk-instances', '2000',
             '--json', results, '--workdir', work],
            capture_output=True, text=True, timeout=900, cwd=ROOT)
        print(proc.stdout)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        # The loop's bound is printed beside it, with whether it held.
        self.assertEqual(1, proc.stdout.count(
            'bound (run + (floor + 0.15 s) a further call)'), proc.stdout)
        with open(results) as f:
            figures = json.load(f)
        self.assertEqual([(backend, 2000)],
                         [(run['backend'], run['instances'])
                          for run in figures['runs']])
        self._check_run(figures['runs'][0])
        if backend == 'mysql':
            # The buffer pool the MariaDB figures were taken with, as the
            # server has it (the run was not given one of its own).
            pool_mib = self._server_buffer_pool_mib()
            self.assertEqual(pool_mib, figures['runs'][0]['buffer_pool_mib'])
            self.assertIn('InnoDB buffer pool %d MiB' % pool_mib, proc.stdout)

    @staticmethod
    def _server_buffer_pool_mib():
        engine = sa.create_engine(nova_fixtures.ADMIN_URLS['mysql'])
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(
                    'SELECT @@innodb_buffer_pool_size')).scalar() // 2 ** 20
        finally:
            engine.dispose()

    def test_every_figure_is_produced_on_sqlite(self):
        self.check_every_figure_is_produced('sqlite')

    def test_every_figure_is_produced_on_mysql(self):
        self.check_every_figure_is_produced('mysql')

    def test_every_figure_is_produced_on_postgresql(self):
        self.check_every_figure_is_produced('postgresql')

    def _check_run(self, run):
        names = [row['operation'] for row in run['rows']]
        self.assertEqual(len(OPERATIONS), len(names), names)
        for operation, name in zip(OPERATIONS, names):
            self.assertTrue(name.startswith(operation), name)
        for row in run['rows']:
            for side in (row['op'], row['lower_bound']):
                self.assertGreater(side['wall'], 0)
                self.assertGreater(side['rss_mib'], 0)
            self.assertGreater(row['ratio'], 0)
            self.assertGreater(row['rows'], 0, row['operation'])
        loop = run['rows'][3]['loop']
        # 2,000 instances leave 30 host-less ones to record: one call
        # that records them, one that finds nothing and exits 0.
        self.assertEqual(2, loop['calls'])
        self.assertGreater(loop['startup_s'], 0)
        self.assertGreater(loop['floor_start_s'], 0)
        self.assertIn(loop['within_bound'], (True, False))
        migration = run['rows'][2]
        if run['backend'] == 'sqlite':
            # One writer locks the whole file: nobody writes beside it.
            self.assertNotIn('writer_requests', migration)
        else:
            self.assertGreater(migration['writer_requests'], 0)
            self.assertEqual(0, migration['writer_failed'],
                             migration['writer_failures'])
        init_host = run['rows'][5]
        trips = init_host['round_trips']['round_trips']
        self.assertGreater(trips, 0)
        # Constant whatever the host holds: a host a tenth the size makes
        # as many round trips.
        self.assertEqual(trips,
                         init_host['round_trips_small_host']['round_trips'])

    def check_upgrade(self, backend):
        self.require(backend)
        work = self.useFixture(fixtures.TempDir()).path
        results = os.path.join(work, 'upgrade.json')
        proc = subprocess.run(
            [sys.executable, UPGRADE, '--backend', backend, '--instances',
             '3000', '--settle', '1', '--json', results, '--workdir', work],
            capture_output=True, text=True, timeout=900, cwd=ROOT)
        print(proc.stdout)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        with open(results) as f:
            [run] = json.load(f)['upgrades']
        self.assertEqual(0, run['sync']['rc'])
        self.assertTrue(run['verify']['ok'], run['verify'])
        # The five clients ran during db sync, none failed.
        self.assertEqual(5, len(run['clients']))
        for client in run['clients']:
            self.assertGreater(client['sync_requests'], 0, client)
            self.assertEqual(0, client['failures'], client['first_errors'])
        # The table's size on disk before and after: larger by the new
        # indexes.
        before, after = run['sysmeta_mib']
        self.assertGreater(before, 1)
        self.assertGreater(after, before)

    def test_upgrade_on_mysql(self):
        self.check_upgrade('mysql')

    def test_upgrade_on_postgresql(self):
        self.check_upgrade('postgresql')
