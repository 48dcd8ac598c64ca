"""Online data migrations on MariaDB and PostgreSQL: the unit tests, again.

Includes cells seeded at the schema before machine types were recorded,
upgraded with Alembic, then migrated.
"""

import subprocess

import sqlalchemy as sa

from nova import context
from nova.db.main import api as db
from nova.tests import fixtures
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
