"""nova-manage db online_data_migrations and populate_missing_machine_types.

Nova's framework and exit codes (0 done, 1 run again, 2 failures, 127 bad
input) over two cells, and the first migration on cell databases seeded
before machine types were recorded. Runs on MariaDB and PostgreSQL too
(nova/tests/functional/cmd/).
"""

import re

import fixtures
from oslo_db import exception as db_exc

from nova.db.main import api as db
from nova.db import migration
from nova import objects
from nova.objects import instance as instance_obj
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit import compute as compute_test
from nova.tests.unit.cmd import test_manage_db
from nova.tests.unit.virt.libvirt import test_machine_type_utils

PROGRESS = re.compile(
    r'populate_missing_machine_types in cell (?P<cell>.+): (?P<found>\d+) '
    r'rows matched, (?P<done>\d+) migrated, '
    r'(?:(?P<remaining>\d+) remaining|more may remain), \d+ rows/s')


def _table_row(out):
    """(Total Needed, Completed) of the summary table's migration row."""
    match = re.search(r'\| populate_missing_machine_types \| (\d+) +\| '
                      r'(\d+) +\|', out)
    return int(match.group(1)), int(match.group(2))


class OnlineMigrationTestCase(test_machine_type_utils.MachineTypeTestMixin,
                              test_manage_db.ManageTestMixin,
                              nova_fixtures.TestCase):

    def setUp(self):
        super().setUp()
        self.config_file = self.write_cell_config(
            libvirt={'hw_machine_type': 'x86_64=pc-q35-8.2',
                     'connection_uri': 'test:///default'})

    def migrate(self, *argv):
        return self.manage('db', 'online_data_migrations', *argv,
                           config_file=self.config_file)


class PreRecordingUpgradeTests(OnlineMigrationTestCase):
    """Cells seeded at the schema before recording, then upgraded."""

    CELL_REVISION = '001_baseline'

    def setUp(self):
        super().setUp()
        self.flags(hw_machine_type=['x86_64=pc-q35-8.2'], group='libvirt')
        offloaded = {'vm_state': 'shelved_offloaded', 'host': None}
        self.on_hosts = [
            self.make(cell=0, vm_state='active', host='compute1'),
            self.make(cell=0, vm_state='stopped', host='compute1'),
            self.make(cell=1, vm_state='shelved', host='compute2')]
        self.untouched = [
            self.make(cell=0, vm_state='building', host=None),
            self.make(cell=1, machine_type='pc', **offloaded)]
        deleted = self.make(cell=0, **offloaded)
        deleted.destroy()
        # The image's wish wins.
        by_image = self.make(
            cell=0, system_metadata={'image_hw_machine_type': 'q35'},
            **offloaded)
        # Then [libvirt]hw_machine_type for the guest arch.
        by_conf = self.make(cell=0, **offloaded)
        # Then the built-in default, for the image's arch first.
        never_scheduled = self.make(
            cell=0, vm_state='error', host=None,
            system_metadata={'image_hw_architecture': 'aarch64'})
        s390 = self.make(cell=1, architecture='s390x', **offloaded)
        self.expected = {by_image: 'q35', by_conf: 'pc-q35-8.2',
                         never_scheduled: 'virt', s390: 's390-ccw-virtio'}
        for url in self.db.cell_urls:
            migration.db_sync(migration.MAIN, url=url)

    def test_records_exactly_the_hostless_instances(self):
        code, out, err = self.migrate()
        self.assertEqual((0, ''), (code, err))
        self.assertEqual((4, 4), _table_row(out))
        self.assertEqual({inst.uuid: mtype
                          for inst, mtype in self.expected.items()},
                         {inst.uuid: self.recorded(inst)
                          for inst in self.expected})
        # Instances on a host are left for their nova-compute.
        self.assertEqual([None] * 3,
                         [self.recorded(i) for i in self.on_hosts])
        self.assertEqual([None, 'pc'],
                         [self.recorded(i) for i in self.untouched])
        # Cells run side by side: their lines come in any order.
        progress = sorted((m.groupdict() for m in PROGRESS.finditer(out)),
                          key=lambda line: line['cell'] != self.cells[
                              0].identity)
        self.assertEqual(
            [{'cell': self.cells[0].identity, 'found': '3', 'done': '3',
              'remaining': '0'},
             {'cell': self.cells[1].identity, 'found': '1', 'done': '1',
              'remaining': '0'}], progress)

    def test_second_run_finds_nothing(self):
        self.assertEqual(0, self.migrate()[0])
        before = self.snapshot()
        code, out, err = self.migrate()
        self.assertEqual((0, ''), (code, err))
        self.assertEqual((0, 0), _table_row(out))
        self.assertIsNone(PROGRESS.search(out))
        self.assertEqual(before, self.snapshot())


class OnlineDataMigrationsTests(OnlineMigrationTestCase):

    def test_max_count_exits_1_until_nothing_is_left(self):
        for cell in (0, 0, 0, 1, 1):
            self.make(cell=cell, vm_state='shelved_offloaded', host=None)
        codes, completed = [], []
        for _ in range(4):
            code, out, _ = self.migrate('--max-count', '2')
            codes.append(code)
            completed.append(_table_row(out)[1])
        self.assertEqual([1, 1, 1, 0], codes)
        self.assertEqual([2, 2, 1, 0], completed)

    def test_progress_line_per_batch(self):
        self.useFixture(fixtures.MockPatchObject(
            instance_obj, 'MIGRATION_BATCH', 2))
        for _ in range(5):
            self.make(vm_state='shelved_offloaded', host=None)
        code, out, _ = self.migrate()
        self.assertEqual(0, code)
        self.assertIn('Running batches of 2 until complete.', out)
        # What is left is not counted (a pass of its own); the page after
        # the last batch is read one row long, so the end is known.
        self.assertEqual(
            [('2', '2', None), ('2', '2', None), ('1', '1', '0')],
            [(m.group('found'), m.group('done'), m.group('remaining'))
             for m in PROGRESS.finditer(out)])

    def test_a_page_is_written_a_chunk_a_transaction(self):
        # A service saving one of these instances waits for the write
        # transaction that holds it: at most RECORD_CHUNK rows long.
        self.useFixture(fixtures.MockPatchObject(
            instance_obj, 'RECORD_CHUNK', 2))
        made = [self.make(vm_state='shelved_offloaded', host=None)
                for _ in range(5)]
        real_write = db.instance_system_metadata_record_hostless
        written = []

        def count_and_write(cctxt, key, uuids_by_value):
            written.append(sum(map(len, uuids_by_value.values())))
            return real_write(cctxt, key, uuids_by_value)
        self.useFixture(fixtures.MockPatchObject(
            db, 'instance_system_metadata_record_hostless',
            side_effect=count_and_write))
        self.assertEqual(0, self.migrate()[0])
        self.assertEqual([2, 2, 1], written)
        self.assertEqual(['pc-q35-8.2'] * 5,
                         [self.recorded(inst) for inst in made])

    def test_invalid_max_count_is_127_and_changes_nothing(self):
        self.make(vm_state='shelved_offloaded', host=None)
        before = self.snapshot()
        for value in ('0', '-1', 'ten', '1.5', '', '2147483648',
                      '9' * 5000):
            code, out, err = self.migrate('--max-count', value)
            self.assertEqual((127, ''), (code, out), value)
            self.assertIn('--max-count: must be an integer from 1 to '
                          '2147483647', err)
            self.assertNotIn('Traceback', err)
            self.assertLess(len(err), 400)
        self.assertEqual(before, self.snapshot())

    def test_unresolvable_instance_does_not_block_the_others(self):
        stuck = self.make(vm_state='shelved_offloaded', host=None,
                          architecture='mips')
        after = self.make(vm_state='shelved_offloaded', host=None)
        logs = self.useFixture(fixtures.FakeLogger())
        code, out, _ = self.migrate('--max-count', '1')
        self.assertEqual(1, code)
        self.assertEqual((2, 1), _table_row(out))
        self.assertIn('No machine type can be resolved for instance %s '
                      '(architecture mips)' % stuck.uuid, logs.output)
        self.assertEqual([None, 'pc-q35-8.2'],
                         [self.recorded(stuck), self.recorded(after)])
        # Nothing more can progress: done, as Nova says.
        self.assertEqual(0, self.migrate()[0])

    def test_image_value_that_is_no_machine_type_is_never_recorded(self):
        """A user's image asked for 'pc i440fx': the instance stays
        unrecorded (found, not done), the others are recorded."""
        bad = self.make(vm_state='shelved_offloaded', host=None,
                        system_metadata={'image_hw_machine_type':
                                         'pc i440fx'})
        good = self.make(vm_state='shelved_offloaded', host=None)
        logs = self.useFixture(fixtures.FakeLogger())
        code, out, _ = self.migrate()
        self.assertEqual(0, code)
        self.assertEqual((2, 1), _table_row(out))
        self.assertIn("Instance %s asks for machine type 'pc i440fx', "
                      "which is not one" % bad.uuid, logs.output)
        self.assertEqual([None, 'pc-q35-8.2'],
                         [self.recorded(bad), self.recorded(good)])

    def test_value_recorded_meanwhile_wins(self):
        inst = self.make(vm_state='shelved_offloaded', host=None)
        real_page = db.instance_get_hostless_without_sysmeta

        def page_then_race(cctxt, *args, **kwargs):
            page = real_page(cctxt, *args, **kwargs)
            if page:
                db.instance_system_metadata_record(
                    cctxt, 'hw_machine_type', {inst.uuid: 'pc-i440fx-8.2'},
                    overwrite=True)
            return page
        self.useFixture(fixtures.MockPatchObject(
            db, 'instance_get_hostless_without_sysmeta',
            side_effect=page_then_race))
        self.assertEqual((1, 1), instance_obj.populate_missing_machine_types(
            self.cell_context(0), 10))
        self.assertEqual('pc-i440fx-8.2', self.recorded(inst))

    def test_instance_changed_after_its_page_was_read_is_not_recorded(self):
        offloaded = {'vm_state': 'shelved_offloaded', 'host': None}
        unshelved, deleted, rebuilt, kept = [
            self.make(**offloaded) for _ in range(4)]
        real_page = db.instance_get_hostless_without_sysmeta

        def page_then_changes(cctxt, *args, **kwargs):
            page = real_page(cctxt, *args, **kwargs)
            if page:
                unshelved.host = 'compute1'
                unshelved.vm_state = 'active'
                unshelved.save()
                deleted.destroy()
                rebuilt.vm_state = 'building'
                rebuilt.save()
            return page
        self.useFixture(fixtures.MockPatchObject(
            db, 'instance_get_hostless_without_sysmeta',
            side_effect=page_then_changes))
        instance_obj.populate_missing_machine_types(self.cell_context(0), 10)
        self.assertEqual([None, None, None, 'pc'],
                         [self.recorded(i)
                          for i in (unshelved, deleted, rebuilt, kept)])

    def bisect_to_the_instance(self):
        for name in ('START_PROBE_WINDOW', 'START_PRECISION'):
            self.useFixture(fixtures.MockPatchObject(db, name, 1))

    def test_max_count_loop_starts_past_what_earlier_calls_recorded(self):
        # One host-less instance per probe, bisected to the id: the
        # bisection can tell each instance apart.
        self.bisect_to_the_instance()
        offloaded = {'vm_state': 'shelved_offloaded', 'host': None}
        first, second, third = [self.make(**offloaded) for _ in range(3)]
        self.assertEqual(1, self.migrate('--max-count', '2')[0])
        ctxt = self.cell_context(0)
        start = db.instance_get_hostless_start_without_sysmeta(
            ctxt, 'hw_machine_type')
        # The next call walks from the second instance, not the first.
        self.assertEqual(second.id, start)
        self.assertEqual(1, self.migrate('--max-count', '2')[0])
        self.assertEqual('pc-q35-8.2', self.recorded(third))
        self.assertEqual(0, self.migrate('--max-count', '2')[0])

    def probes(self, *argv):
        """Run the migration with ``argv``; return (its exit code, the
        bisection's probes it sent to the servers: the statements that
        read a window of host-less instances)."""
        with compute_test.SQLRecorder() as sql:
            code = self.migrate(*argv)[0]
        return code, [statement for statement in sql.statements()
                      if re.search(r'\) AS w ON w\.id = instances\.id',
                                   statement)]

    def test_run_to_completion_walks_from_the_first_instance(self):
        # It reads every range anyway: a bisection would only add probes.
        self.bisect_to_the_instance()
        offloaded = {'vm_state': 'shelved_offloaded', 'host': None}
        instances = [self.make(**offloaded) for _ in range(3)]
        self.assertEqual((0, []), self.probes())
        self.assertEqual(['pc-q35-8.2'] * 3,
                         [self.recorded(inst) for inst in instances])
        # A --max-count call bisects (in each cell it visits).
        self.make(**offloaded)
        code, probes = self.probes('--max-count', '5')
        self.assertEqual(1, code)
        self.assertNotEqual([], probes)

    def test_unrecorded_instance_before_the_start_is_still_recorded(self):
        self.bisect_to_the_instance()
        recorded = {'vm_state': 'shelved_offloaded', 'host': None,
                    'machine_type': 'pc'}
        offloaded = {'vm_state': 'shelved_offloaded', 'host': None}
        self.make(**recorded)
        hidden = self.make(**offloaded)
        self.make(**recorded)
        self.make(**recorded)
        last = self.make(**offloaded)
        # The bisection never probes ``hidden``: it starts past it, ...
        start = db.instance_get_hostless_start_without_sysmeta(
            self.cell_context(0), 'hw_machine_type')
        self.assertGreater(start, hidden.id)
        # ... and the walk comes back for it after the end.
        codes = [self.migrate('--max-count', '1')[0] for _ in range(3)]
        self.assertEqual([1, 1, 0], codes)
        self.assertEqual(['pc-q35-8.2'] * 2,
                         [self.recorded(hidden), self.recorded(last)])
        # Run to completion too.
        before = self.make(cell=1, **offloaded)
        self.assertEqual(0, self.migrate()[0])
        self.assertEqual('pc-q35-8.2', self.recorded(before))

    def test_failing_cell_and_nothing_else_to_do_is_2(self):
        broken = self.add_broken_cell()
        code, out, err = self.migrate()
        self.assertEqual(2, code)
        self.assertIn('Some migrations failed', out)
        line = self.assertOneLineError(err)
        self.assertIn('populate_missing_machine_types failed in cell broken '
                      '(%s)' % broken.uuid, line)
        code, _, _ = self.migrate('--max-count', '5')
        self.assertEqual(2, code)

    def test_failing_cell_with_progress_elsewhere(self):
        self.add_broken_cell()
        inst = self.make(cell=1, vm_state='shelved_offloaded', host=None)
        # With --max-count, progress elsewhere means "run again".
        code, _, err = self.migrate('--max-count', '5')
        self.assertEqual(1, code)
        self.assertOneLineError(err)
        self.assertEqual('pc-q35-8.2', self.recorded(inst))
        # Without it, the run ends with the failure.
        self.make(cell=1, vm_state='shelved_offloaded', host=None)
        self.assertEqual(2, self.migrate()[0])

    def test_api_database_error_is_2_not_run_again(self):
        self.useFixture(fixtures.MockPatchObject(
            objects.CellMappingList, 'get_all',
            side_effect=db_exc.DBConnectionError('connection refused')))
        code, _, err = self.migrate()
        self.assertEqual(2, code)
        self.assertIn('cannot list the cells',
                      self.assertOneLineError(err))

    def test_no_cell_mapped_runs_on_the_database_option(self):
        inst = self.make(cell=0, vm_state='shelved_offloaded', host=None)
        self.useFixture(fixtures.MockPatchObject(
            objects.CellMappingList, 'get_all', return_value=[]))
        code, out, _ = self.migrate()
        self.assertEqual(0, code)
        self.assertIn('in cell [database]:', out)
        self.assertEqual('pc-q35-8.2', self.recorded(inst))

    def test_console_script(self):
        self.make(cell=1, vm_state='shelved_offloaded', host=None)
        proc = self.manage_process('db', 'online_data_migrations',
                                   '--max-count', '1',
                                   config_file=self.config_file)
        self.assertEqual((1, ''), (proc.returncode, proc.stderr))
        self.assertEqual((1, 1), _table_row(proc.stdout))
