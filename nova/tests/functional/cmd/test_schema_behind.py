"""Code ahead of its cell schema refuses to start, on MariaDB and
PostgreSQL: one line naming nova-manage db sync, nothing written.
"""

from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base

NEEDS_SYNC = ('The cell database is at schema revision 001_baseline; this '
              'code needs 007_sysmeta_key_value_id_idx. Run nova-manage db '
              'sync first.')


class SchemaBehindTests(base.ReliabilityTestCase):

    CELL_REVISION = '001_baseline'

    def setUp(self):
        super().setUp()
        self.seed(50)
        self.before = self.digest()
        self.conf_path = self.config(
            libvirt={'connection_uri': 'test:///default',
                     'virt_type': 'test'})

    def assertRefused(self, process, code, prefix):
        self.assertEqual(code, process.finish(), process.describe())
        self.assertEqual(['ERROR: %s%s' % (prefix, NEEDS_SYNC)],
                         process.stderr.splitlines())
        self.assertNotIn('Traceback', process.stdout)
        self.assertEqual(self.before, self.digest())
        self.assertEqual([], self.execute('SELECT id FROM services'))

    def test_nova_compute_refuses_to_start(self):
        process = self.start(base.NOVA_COMPUTE, self.conf_path)
        self.assertRefused(process, 1,
                           'nova-compute on host %s could not start: '
                           % self.conf_fixture.conf.host)

    def test_online_data_migrations_refuses(self):
        process = self.start(base.NOVA_MANAGE, self.conf_path,
                             'db', 'online_data_migrations')
        self.assertEqual(2, process.finish(), process.describe())
        self.assertIn('populate_missing_machine_types failed in cell %s'
                      % self.cells[0].identity, process.stderr)
        self.assertIn(NEEDS_SYNC, process.stderr)
        self.assertEqual(self.before, self.digest())

    def test_update_machine_type_refuses(self):
        [uuid] = self.execute(
            'SELECT uuid FROM instances WHERE deleted = 0 LIMIT 1')[0]
        process = self.start(base.NOVA_MANAGE, self.conf_path, 'libvirt',
                             'update_machine_type', uuid, 'q35', '--force')
        self.assertEqual(1, process.finish(), process.describe())
        self.assertEqual(['ERROR: %s' % NEEDS_SYNC],
                         process.stderr.splitlines())
        self.assertEqual(self.before, self.digest())


globals().update(nova_fixtures.backend_variants(SchemaBehindTests))
del SchemaBehindTests
