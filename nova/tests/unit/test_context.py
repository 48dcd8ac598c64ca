"""target_cell and scatter-gather across cells."""

import threading

from nova import context
from nova import exception
from nova import objects
from nova.tests import fixtures

# The scatter-gather's time-out in the test of a hanging cell: generous,
# so that a loaded machine never makes a healthy cell miss it; the
# hanging cell never answers while the test runs, whatever the time-out.
HEALTHY_CELL_TIMEOUT = 5


class TargetCellTests(fixtures.TestCase):
    CELLS = 2

    def test_target_cell_reads_that_cells_database_only(self):
        a = self.create_instance(self.cell_context(0), host='h')
        b = self.create_instance(self.cell_context(1), host='h')
        for cell, inst in zip(self.cells, (a, b)):
            with context.target_cell(self.context, cell) as cctxt:
                found = objects.InstanceList.get_by_host(cctxt, 'h')
                self.assertEqual([inst.uuid], [i.uuid for i in found])
        # The caller's context is not changed by target_cell.
        self.assertIsNone(self.context.db_connection)

    def test_scatter_gather_all_cells(self):
        self.create_instance(self.cell_context(1), host='h')
        results = context.scatter_gather_all_cells(
            self.context,
            lambda cctxt: len(objects.InstanceList.get_by_host(cctxt, 'h')))
        self.assertEqual({self.cells[0].uuid: 0, self.cells[1].uuid: 1},
                         results)

    def test_cell_that_hangs_or_fails_does_not_hide_others(self):
        release = threading.Event()
        self.addCleanup(release.set)
        slow, broken = self.cells[0].uuid, self.cells[1].uuid
        healthy = objects.CellMapping(
            self.context, uuid='11111111-2222-3333-4444-555555555555',
            name='cell3', database_connection=self.db.cell_urls[0])
        healthy.create()

        def answer(cctxt):
            if cctxt.cell_uuid == slow:
                # Never answers while the test runs: released at cleanup.
                release.wait()
            if cctxt.cell_uuid == broken:
                raise exception.NovaException('cell is broken')
            return 'ok'

        results = context.scatter_gather_cells(
            self.context, objects.CellMappingList.get_all(self.context),
            HEALTHY_CELL_TIMEOUT, answer)
        self.assertIs(context.did_not_respond_sentinel, results[slow])
        self.assertIsInstance(results[broken], exception.NovaException)
        self.assertEqual('ok', results[healthy.uuid])
        self.assertTrue(context.is_cell_failure_sentinel(results[slow]))
        self.assertFalse(
            context.is_cell_failure_sentinel(results[healthy.uuid]))
