"""The scale benchmark at a small size, so that it keeps working.

Runs benchmarks/scale.py on SQLite, MariaDB and PostgreSQL with about 2,000
instances and a few hundred domains, and checks that every figure is
produced. Timings are printed, never asserted: they belong to
benchmarks/RESULTS.md.
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

    def test_every_figure_is_produced(self):
        for backend in SERVERS:
            self.require(backend)
        work = self.useFixture(fixtures.TempDir()).path
        results = os.path.join(work, 'results.json')
        backends = [arg for backend in ('sqlite',) + SERVERS
                    for arg in ('--backend', backend)]
        proc = subprocess.run(
            [sys.executable, SCRIPT, *backends, '--instances', '2000',
             '--domains', '300', '--bulk-instances', '2000', '--json',
             results, '--workdir', work],
            capture_output=True, text=True, timeout=900, cwd=ROOT)
        print(proc.stdout)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        # Each loop's bound is printed beside it, with whether it held.
        self.assertEqual(1 + len(SERVERS), proc.stdout.count(
            'bound (run + (floor + 0.15 s) a further call)'), proc.stdout)
        with open(results) as f:
            figures = json.load(f)
        self.assertEqual([(backend, 2000) for backend in ('sqlite',)
                          + SERVERS],
                         [(run['backend'], run['instances'])
                          for run in figures['runs']])
        for run in figures['runs']:
            self._check_run(run)

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
