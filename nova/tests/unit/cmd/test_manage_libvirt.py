"""nova-manage libvirt: every exit code and refusal, on two cells.

Commands run in-process through ``nova.cmd.manage.main``; one test per
command also runs the console script to show there is no traceback.
Refusals and bad input must leave both cell databases as they were.
Runs on MariaDB and PostgreSQL too (nova/tests/functional/cmd/).
"""

import contextlib
import io
import json
import tracemalloc
import uuid as uuid_lib

import fixtures
from oslo_db import exception as db_exc
import sqlalchemy as sa

from nova.cmd import manage
import nova.conf
from nova.db.main import api as db
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.cmd import test_manage_db
from nova.tests.unit.virt.libvirt import test_machine_type_utils
from nova.virt.libvirt import machine_type_utils as mtu

CONF = nova.conf.CONF
MachineTypeTestMixin = test_machine_type_utils.MachineTypeTestMixin


class LibvirtCommandTestCase(MachineTypeTestMixin,
                             test_manage_db.ManageTestMixin,
                             nova_fixtures.TestCase):

    def setUp(self):
        super().setUp()
        self.config_file = self.write_cell_config()

    def libvirt(self, *argv):
        """Run ``nova-manage libvirt argv``; (code, stdout, stderr)."""
        return self.manage('libvirt', *argv, config_file=self.config_file)

    def libvirt_process(self, *argv):
        return self.manage_process('libvirt', *argv,
                                   config_file=self.config_file)

    def assertRefused(self, code, argv, *fragments):
        """The command exits ``code`` with one ERROR line holding fragments,
        and leaves every database untouched."""
        before = self.snapshot()
        got, out, err = self.libvirt(*argv)
        self.assertEqual(code, got, (out, err))
        line = self.assertOneLineError(err)
        for fragment in fragments:
            self.assertIn(fragment, line)
        self.assertEqual(before, self.snapshot())
        return line


class GetMachineTypeTests(LibvirtCommandTestCase):

    def test_printed_from_the_second_cell(self):
        inst = self.make(cell=1, machine_type='pc-q35-8.2')
        self.assertEqual((0, 'pc-q35-8.2\n', ''),
                         self.libvirt('get_machine_type', inst.uuid))

    def test_not_recorded_is_3(self):
        inst = self.make(cell=1)
        self.assertRefused(3, ['get_machine_type', inst.uuid],
                           'No machine type is recorded', inst.uuid)

    def test_no_such_instance_or_mapping_is_2(self):
        unmapped = self.create_instance(self.cell_context(1),
                                        map_instance=False)
        self.assertRefused(2, ['get_machine_type', unmapped.uuid],
                           'has no instance mapping')
        deleted = self.make(machine_type='pc')
        deleted.destroy()
        self.assertRefused(2, ['get_machine_type', deleted.uuid],
                           deleted.uuid, 'could not be found')
        self.assertRefused(2, ['get_machine_type', 'not-a-uuid'],
                           "'not-a-uuid' is not a valid UUID")

    def test_mapping_without_cell_is_2(self):
        instance_uuid = str(uuid_lib.uuid4())
        objects.InstanceMapping(self.context, instance_uuid=instance_uuid,
                                cell_mapping=None, project_id='p').create()
        self.assertRefused(2, ['get_machine_type', instance_uuid],
                           'not in a cell yet')

    def test_unexpected_error_is_1(self):
        broken = self.add_broken_cell()
        instance_uuid = str(uuid_lib.uuid4())
        objects.InstanceMapping(self.context, instance_uuid=instance_uuid,
                                cell_mapping=broken, project_id='p').create()
        self.assertRefused(1, ['get_machine_type', instance_uuid],
                           'database error: file is not a database')

    def test_usage_error_is_127(self):
        code, _, err = self.libvirt('get_machine_type')
        self.assertEqual(127, code)
        self.assertNotIn('Traceback', err)

    def test_console_script(self):
        proc = self.libvirt_process('get_machine_type', str(uuid_lib.uuid4()))
        self.assertEqual((2, ''), (proc.returncode, proc.stdout))
        self.assertIn('has no instance mapping',
                      self.assertOneLineError(proc.stderr))


class UpdateMachineTypeTests(LibvirtCommandTestCase):

    def test_updated_in_second_cell_prints_new_and_previous(self):
        inst = self.make(cell=1, machine_type='pc-q35-8.1')
        code, out, err = self.libvirt('update_machine_type', inst.uuid,
                                      'pc-q35-8.2')
        self.assertEqual((0, ''), (code, err))
        self.assertEqual('Instance %s: machine type updated from pc-q35-8.1 '
                         'to pc-q35-8.2.\n' % inst.uuid, out)
        self.assertEqual('pc-q35-8.2', self.recorded(inst))

    def test_allowed_states_and_first_record(self):
        for vm_state in ('stopped', 'shelved', 'shelved_offloaded'):
            inst = self.make(vm_state=vm_state, host=None)
            code, out, _ = self.libvirt('update_machine_type', inst.uuid,
                                        'pc')
            self.assertEqual(0, code, vm_state)
            self.assertIn('from none (not recorded) to pc', out)
            self.assertEqual('pc', self.recorded(inst))

    def test_first_record_of_another_family_is_4(self):
        """Nothing recorded: the instance resolves to pc, so q35 is 4."""
        inst = self.make(vm_state='shelved_offloaded', host=None)
        self.assertRefused(
            4, ['update_machine_type', inst.uuid, 'q35'], inst.uuid,
            'from none recorded (pc from image, configuration or default) '
            'to q35', 'family from pc to q35', 'Use --force')
        self.assertIsNone(self.recorded(inst))
        code, out, err = self.libvirt('update_machine_type', inst.uuid,
                                      'q35', '--force')
        self.assertEqual(0, code, err)
        self.assertEqual('q35', self.recorded(inst))

    def test_first_record_in_a_running_state_is_3(self):
        inst = self.make(vm_state='active')
        self.assertRefused(3, ['update_machine_type', inst.uuid, 'pc'],
                           'vm_state active', 'from none recorded')

    def test_same_value_is_a_no_op_in_any_state(self):
        inst = self.make(machine_type='pc', vm_state='active')
        before = self.snapshot()
        code, out, err = self.libvirt('update_machine_type', inst.uuid, 'pc')
        self.assertEqual((0, ''), (code, err))
        self.assertIn('already has machine type pc; nothing changed', out)
        self.assertEqual(before, self.snapshot())

    def test_running_or_other_states_are_3(self):
        for vm_state in ('active', 'paused', 'suspended', 'error', 'rescued',
                         'resized', 'building'):
            inst = self.make(machine_type='pc-q35-8.1', vm_state=vm_state)
            self.assertRefused(
                3, ['update_machine_type', inst.uuid, 'pc-q35-8.2'],
                inst.uuid, 'vm_state %s' % vm_state, 'from pc-q35-8.1 to '
                'pc-q35-8.2', 'stopped, shelved or shelved_offloaded')

    def test_family_alias_and_version_changes_are_4(self):
        for existing, new, reason in (
                ('pc', 'q35', 'family from pc to q35'),
                ('pc-i440fx-8.2', 'pc-q35-8.2', 'family from pc to q35'),
                ('q35', 'pc-q35-8.2', 'an alias to a versioned'),
                ('pc-q35-8.2', 'q35', 'a versioned machine type to an alias'),
                ('pc-q35-8.2', 'pc-q35-8.1', 'older'),
                ('pc-q35-2.10', 'pc-q35-2.9', 'older'),
                ('pc-q35-rhel9.2.0', 'pc-q35-9.0', 'RHEL and upstream')):
            inst = self.make(machine_type=existing)
            self.assertRefused(
                4, ['update_machine_type', inst.uuid, new], inst.uuid,
                'vm_state stopped', 'from %s to %s' % (existing, new), reason)

    def test_newer_version_compares_numerically(self):
        inst = self.make(machine_type='pc-q35-2.9')
        self.assertEqual(0, self.libvirt('update_machine_type', inst.uuid,
                                         'pc-q35-2.10')[0])

    def test_unknown_family_is_5(self):
        inst = self.make(machine_type='pc')
        self.assertRefused(5, ['update_machine_type', inst.uuid, 'microvm'],
                           'microvm', inst.uuid, 'vm_state stopped',
                           'machine type pc', 'not pc, q35, virt')

    def test_unsupported_by_the_host_is_5_and_names_it(self):
        self.report('compute7')
        inst = self.make(machine_type='pc-q35-8.1', host='compute7')
        self.assertRefused(5, ['update_machine_type', inst.uuid,
                               'pc-q35-9.0'],
                           'not supported by host compute7', 'x86_64',
                           inst.uuid, 'stays pc-q35-8.1')

    def test_invalid_syntax_is_5_even_with_force(self):
        inst = self.make(machine_type='pc')
        # ('-pc' would be read as an option: a usage error, 127.)
        for bad in ('pc q35', '', 'pc\nq35', 'x' * 256, "pc';--", 'p/c'):
            for force in ([], ['--force']):
                self.assertRefused(
                    5, ['update_machine_type', inst.uuid, bad] + force,
                    'is not a machine type', 'Nothing was changed')

    def test_no_such_instance_is_2(self):
        self.assertRefused(2, ['update_machine_type', str(uuid_lib.uuid4()),
                               'q35'], 'has no instance mapping')
        self.assertRefused(2, ['update_machine_type', '1234', 'q35'],
                           'not a valid UUID')

    def test_force_skips_state_family_version_and_host(self):
        self.report('compute1')
        for vm_state, existing, new in (
                ('active', 'pc-q35-8.1', 'pc-q35-8.2'),
                ('stopped', 'pc', 'q35'),
                ('stopped', 'pc-q35-8.2', 'pc-q35-8.1'),
                ('stopped', 'pc', 'microvm'),
                ('stopped', 'pc-q35-8.1', 'pc-q35-9.0')):
            inst = self.make(machine_type=existing, vm_state=vm_state)
            code, out, err = self.libvirt('update_machine_type', inst.uuid,
                                          new, '--force')
            self.assertEqual(0, code, err)
            self.assertIn('from %s to %s' % (existing, new), out)
            self.assertIn('WARNING: --force skipped', err)
            self.assertEqual(new, self.recorded(inst))

    def test_usage_error_is_127(self):
        before = self.snapshot()
        for argv in (['update_machine_type'],
                     ['update_machine_type', str(uuid_lib.uuid4())],
                     ['update_machine_type', 'a', 'b', 'c']):
            code, _, err = self.libvirt(*argv)
            self.assertEqual(127, code, argv)
            self.assertNotIn('Traceback', err)
        self.assertEqual(before, self.snapshot())

    def refuse_sysmeta_writes(self, cell=0):
        """Make the cell's database refuse every write of system metadata.

        A trigger, as a full disk or a lost privilege would: reads still
        work, so update_machine_type's checks pass and its write fails.
        """
        engine = db.get_engine(self.cell_context(cell))
        statements = {
            'sqlite': [
                "CREATE TRIGGER refuse_{0} BEFORE {0} ON "
                "instance_system_metadata BEGIN SELECT RAISE(ABORT, "
                "'writes refused by the test'); END"],
            'mysql': [
                "CREATE TRIGGER refuse_{0} BEFORE {0} ON "
                "instance_system_metadata FOR EACH ROW SIGNAL SQLSTATE "
                "'45000' SET MESSAGE_TEXT = 'writes refused by the test'"],
            'postgresql': [
                "CREATE OR REPLACE FUNCTION refuse_writes() RETURNS trigger "
                "AS $$ BEGIN RAISE EXCEPTION 'writes refused by the test'; "
                "END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_{0} BEFORE {0} ON "
                "instance_system_metadata FOR EACH ROW EXECUTE FUNCTION "
                "refuse_writes()"]}[engine.dialect.name.split('+')[0]]
        with engine.begin() as conn:
            for verb in ('INSERT', 'UPDATE'):
                for statement in statements:
                    conn.exec_driver_sql(statement.format(verb))
                statements = statements[-1:]

    def test_write_failure_is_1_from_the_console_script(self):
        """The database refuses the write: 1, one line, nothing changed."""
        unrecorded = self.make(host=None)
        recorded = self.make(machine_type='pc-q35-8.1')
        self.refuse_sysmeta_writes()
        before = self.snapshot()
        for inst, new in ((unrecorded, 'pc'), (recorded, 'pc-q35-8.2')):
            proc = self.libvirt_process('update_machine_type', inst.uuid,
                                        new)
            self.assertEqual((1, ''), (proc.returncode, proc.stdout))
            self.assertIn('writes refused by the test',
                          self.assertOneLineError(proc.stderr))
        self.assertEqual(before, self.snapshot())

    def test_unreachable_cell_is_1_from_the_console_script(self):
        """The mapping is found, the cell's database does not answer."""
        broken = self.add_broken_cell()
        instance_uuid = str(uuid_lib.uuid4())
        objects.InstanceMapping(self.context, instance_uuid=instance_uuid,
                                cell_mapping=broken, project_id='p').create()
        proc = self.libvirt_process('update_machine_type', instance_uuid,
                                    'pc')
        self.assertEqual((1, ''), (proc.returncode, proc.stdout))
        self.assertIn('database error: file is not a database',
                      self.assertOneLineError(proc.stderr))

    def test_console_script(self):
        inst = self.make(cell=1, machine_type='pc', vm_state='active')
        proc = self.libvirt_process('update_machine_type', inst.uuid, 'q35')
        self.assertEqual((3, ''), (proc.returncode, proc.stdout))
        self.assertIn('vm_state active', self.assertOneLineError(proc.stderr))
        self.assertEqual('pc', self.recorded(inst))


class ListUnsetMachineTypeTests(LibvirtCommandTestCase):

    def test_none_is_0(self):
        self.make(machine_type='pc')
        self.make(vm_state='building')
        self.assertEqual((0, '', ''), self.libvirt('list_unset_machine_type'))

    def test_listed_is_3_from_both_cells(self):
        first = self.make(cell=0, vm_state='active')
        second = self.make(cell=1, vm_state='shelved_offloaded', host=None)
        self.make(cell=1, machine_type='q35')
        self.make(cell=1, vm_state='building', host=None)
        self.make(cell=0).destroy()
        code, out, err = self.libvirt('list_unset_machine_type')
        self.assertEqual((3, ''), (code, err))
        self.assertEqual([first.uuid, second.uuid], out.split())

    def test_cell_uuid_limits_to_that_cell(self):
        self.make(cell=0)
        second = self.make(cell=1)
        code, out, _ = self.libvirt('list_unset_machine_type', '--cell-uuid',
                                    self.cells[1].uuid)
        self.assertEqual((3, second.uuid + '\n'), (code, out))

    def test_no_such_cell_is_2(self):
        self.make()
        self.assertRefused(2, ['list_unset_machine_type', '--cell-uuid',
                               str(uuid_lib.uuid4())], 'has no mapping')
        self.assertRefused(2, ['list_unset_machine_type', '--cell-uuid',
                               'cell1'], "'cell1' is not a valid UUID")

    def test_no_cell_mapped_is_2(self):
        """[database] holds an unrecorded instance but no cell is mapped:
        not 'none' (0), which would say there is nothing to do."""
        self.make(cell=0)
        unmap_every_cell()
        self.assertRefused(2, ['list_unset_machine_type'],
                           'No cell is mapped in the API database',
                           'nova-manage cell_v2 simple_cell_setup')

    def test_cell_that_does_not_answer_is_1_and_others_listed(self):
        inst = self.make(cell=1)
        broken = self.add_broken_cell()
        code, out, err = self.libvirt('list_unset_machine_type')
        self.assertEqual((1, inst.uuid + '\n'), (code, out))
        line = self.assertOneLineError(err)
        self.assertIn('broken (%s) did not answer' % broken.uuid, line)

    def test_console_script(self):
        inst = self.make(cell=1)
        self.add_broken_cell()
        proc = self.libvirt_process('list_unset_machine_type')
        self.assertEqual((1, inst.uuid + '\n'),
                         (proc.returncode, proc.stdout))
        self.assertIn('did not answer', self.assertOneLineError(proc.stderr))


class BulkUpdateMachineTypeTests(LibvirtCommandTestCase):

    def bulk(self, *argv):
        return self.libvirt('bulk_update_machine_type', *argv)

    def test_all_updated_in_both_cells_is_0(self):
        made = [self.make(cell=c, machine_type='pc-q35-8.1', vm_state=s,
                          host=None if s == 'shelved_offloaded' else 'h')
                for c in (0, 1)
                for s in ('stopped', 'shelved', 'shelved_offloaded')]
        other = self.make(machine_type='pc-q35-8.0')
        code, out, err = self.bulk('--from', 'pc-q35-8.1', '--to',
                                   'pc-q35-8.2')
        self.assertEqual((0, ''), (code, err))
        for cell in self.cells:
            self.assertIn('Cell %s:' % cell.identity, out)
        self.assertEqual(2, out.count('| updated | 3         |'))
        self.assertEqual(['pc-q35-8.2'] * 6, [self.recorded(i) for i in made])
        self.assertEqual('pc-q35-8.0', self.recorded(other))

    def test_some_refused_is_3_with_reasons_and_the_rest_updated(self):
        self.report('compute1')
        ok = self.make(machine_type='pc-q35-8.1', host='compute2')
        running = [self.make(machine_type='pc-q35-8.1', vm_state='active')
                   for _ in range(2)]
        unsupported = self.make(cell=0, machine_type='pc-q35-8.1',
                                host='compute1')
        code, out, err = self.bulk('--from', 'pc-q35-8.1', '--to',
                                   'pc-q35-9.0')
        self.assertEqual((3, ''), (code, err))
        self.assertIn('| updated | 1         |', out)
        self.assertIn('| refused | 2         | vm_state active', out)
        self.assertIn('| refused | 1         | host compute1 does not '
                      'support pc-q35-9.0', out)
        self.assertEqual('pc-q35-9.0', self.recorded(ok))
        self.assertEqual(['pc-q35-8.1'] * 3,
                         [self.recorded(i) for i in running + [unsupported]])

    def test_dry_run_changes_nothing(self):
        self.make(machine_type='pc-q35-8.1')
        self.make(cell=1, machine_type='pc-q35-8.1', vm_state='active')
        before = self.snapshot()
        code, out, _ = self.bulk('--from', 'pc-q35-8.1', '--to',
                                 'pc-q35-8.2', '--dry-run')
        self.assertEqual(3, code)
        self.assertEqual(1, out.count('| would update | 1 '), out)
        self.assertIn('| refused      | 1         | vm_state active', out)
        self.assertEqual(before, self.snapshot())

    def test_force_updates_what_would_be_refused(self):
        self.report('compute1')
        made = [self.make(machine_type='pc', vm_state='active'),
                self.make(machine_type='pc', host='compute1')]
        code, out, err = self.bulk('--from', 'pc', '--to', 'q35', '--force')
        self.assertEqual((0, ''), (code, err))
        self.assertEqual(['q35', 'q35'], [self.recorded(i) for i in made])

    def test_change_itself_refused_is_4(self):
        self.make(machine_type='pc-q35-8.2')
        for old, new, reason in (('pc', 'q35', 'family from pc to q35'),
                                 ('pc-q35-8.2', 'pc-q35-8.1', 'older'),
                                 ('q35', 'pc-q35-8.2', 'alias')):
            self.assertRefused(4, ['bulk_update_machine_type', '--from', old,
                                   '--to', new],
                               'from %s to %s' % (old, new), reason)

    def test_unsupported_to_is_5(self):
        self.make(machine_type='pc')
        self.assertRefused(5, ['bulk_update_machine_type', '--from', 'pc',
                               '--to', 'microvm'], 'microvm')
        for force in ([], ['--force']):
            self.assertRefused(5, ['bulk_update_machine_type', '--from', 'pc',
                                   '--to', 'pc q35'] + force,
                               'is not a machine type')

    def test_no_such_cell_is_2(self):
        self.make(machine_type='pc-q35-8.1')
        self.assertRefused(2, ['bulk_update_machine_type', '--from',
                               'pc-q35-8.1', '--to', 'pc-q35-8.2',
                               '--cell-uuid', str(uuid_lib.uuid4())],
                           'has no mapping')

    def test_cell_uuid_limits_to_that_cell(self):
        first = self.make(cell=0, machine_type='pc-q35-8.1')
        second = self.make(cell=1, machine_type='pc-q35-8.1')
        code, out, _ = self.bulk('--from', 'pc-q35-8.1', '--to', 'pc-q35-8.2',
                                 '--cell-uuid', self.cells[1].uuid)
        self.assertEqual(0, code)
        self.assertNotIn(self.cells[0].uuid, out)
        self.assertEqual(['pc-q35-8.1', 'pc-q35-8.2'],
                         [self.recorded(first), self.recorded(second)])

    def test_same_types_or_nothing_recorded_is_0(self):
        self.make(machine_type='pc')
        before = self.snapshot()
        self.assertEqual((0, '--from and --to are both pc; nothing to do.\n',
                          ''), self.bulk('--from', 'pc', '--to', 'pc'))
        code, out, _ = self.bulk('--from', 'pc-i440fx-8.1', '--to',
                                 'pc-i440fx-8.2')
        self.assertEqual(0, code)
        self.assertEqual(2, out.count('| updated | 0 '))
        self.assertEqual(before, self.snapshot())

    def test_cell_that_does_not_answer_is_1_and_others_done(self):
        inst = self.make(cell=1, machine_type='pc-q35-8.1')
        broken = self.add_broken_cell()
        code, out, err = self.bulk('--from', 'pc-q35-8.1', '--to',
                                   'pc-q35-8.2')
        self.assertEqual(1, code)
        self.assertIn('broken (%s) did not answer' % broken.uuid,
                      self.assertOneLineError(err))
        self.assertEqual('pc-q35-8.2', self.recorded(inst))

    def test_usage_error_is_127(self):
        for argv in (['--from', 'pc'], ['--to', 'pc'], ['--from']):
            code, _, err = self.bulk(*argv)
            self.assertEqual(127, code, argv)
            self.assertNotIn('Traceback', err)

    def test_console_script(self):
        self.make(cell=1, machine_type='pc-q35-8.1', vm_state='active')
        proc = self.libvirt_process('bulk_update_machine_type', '--from',
                                    'pc-q35-8.1', '--to', 'pc-q35-8.2')
        self.assertEqual((3, ''), (proc.returncode, proc.stderr))
        self.assertIn('| refused | 1         | vm_state active', proc.stdout)


class MachineTypeSummaryTests(LibvirtCommandTestCase):

    def test_table_per_cell(self):
        self.make(cell=0, machine_type='pc', vm_state='active')
        self.make(cell=0, machine_type='pc', vm_state='stopped')
        self.make(cell=0, machine_type='q35', vm_state='active')
        self.make(cell=0, vm_state='active')
        code, out, err = self.libvirt('machine_type_summary')
        self.assertEqual((0, ''), (code, err))
        self.assertEqual(
            'Cell %s:\n'
            '+--------------+--------+---------+-------+\n'
            '| Machine type | active | stopped | Total |\n'
            '+--------------+--------+---------+-------+\n'
            '| pc           | 1      | 1       | 2     |\n'
            '| q35          | 1      | 0       | 1     |\n'
            '| unset        | 1      | 0       | 1     |\n'
            '+--------------+--------+---------+-------+\n'
            'Cell %s:\n'
            'No instances.\n' % (self.cells[0].identity,
                                 self.cells[1].identity), out)

    def test_cell_uuid_and_no_such_cell(self):
        self.make(cell=1, machine_type='virt', vm_state='shelved_offloaded',
                  host=None)
        code, out, _ = self.libvirt('machine_type_summary', '--cell-uuid',
                                    self.cells[1].uuid)
        self.assertEqual(0, code)
        self.assertNotIn(self.cells[0].uuid, out)
        self.assertIn('| virt         | 1                 | 1     |', out)
        self.assertRefused(2, ['machine_type_summary', '--cell-uuid',
                               str(uuid_lib.uuid4())], 'has no mapping')

    def test_cell_that_does_not_answer_is_1_and_others_printed(self):
        self.make(cell=1, machine_type='pc')
        broken = self.add_broken_cell()
        code, out, err = self.libvirt('machine_type_summary')
        self.assertEqual(1, code)
        self.assertIn('| pc ', out)
        self.assertIn('broken (%s) did not answer' % broken.uuid,
                      self.assertOneLineError(err))

    def test_console_script(self):
        self.make(cell=1, machine_type='pc')
        self.add_broken_cell()
        proc = self.libvirt_process('machine_type_summary')
        self.assertEqual(1, proc.returncode)
        self.assertIn('| pc ', proc.stdout)
        self.assertIn('did not answer', self.assertOneLineError(proc.stderr))


class JsonOutputTests(LibvirtCommandTestCase):
    """--format json: one document on stdout, errors still on stderr."""

    def json_of(self, *argv):
        """Run ``nova-manage libvirt argv --format json`` in-process;
        (code, parsed stdout, stderr)."""
        code, out, err = self.libvirt(*(argv + ('--format', 'json')))
        return code, json.loads(out), err

    def cell_keys(self, cell):
        return {'cell_uuid': self.cells[cell].uuid,
                'cell_name': self.cells[cell].name}

    # -- get_machine_type

    def test_get_machine_type(self):
        inst = self.make(cell=1, machine_type='pc-q35-8.2', host='compute4',
                         vm_state='active')
        code, document, err = self.json_of('get_machine_type', inst.uuid)
        self.assertEqual((0, ''), (code, err))
        self.assertEqual(dict(self.cell_keys(1), instance_uuid=inst.uuid,
                              machine_type='pc-q35-8.2', host='compute4',
                              vm_state='active'), document)

    def test_get_machine_type_not_recorded_is_3_with_null(self):
        inst = self.make()
        proc = self.libvirt_process('get_machine_type', inst.uuid,
                                    '--format', 'json')
        self.assertEqual(3, proc.returncode)
        document = json.loads(proc.stdout)
        self.assertIsNone(document['machine_type'])
        self.assertEqual(inst.uuid, document['instance_uuid'])
        self.assertIn('No machine type is recorded',
                      self.assertOneLineError(proc.stderr))

    def test_get_machine_type_refusals_keep_stdout_empty(self):
        for argv, code, fragment in (
                (['get_machine_type', str(uuid_lib.uuid4())], 2,
                 'has no instance mapping'),
                (['get_machine_type', 'x'], 2, 'not a valid UUID')):
            self.assertRefused(code, argv + ['--format', 'json'], fragment)
            self.assertEqual('', self.libvirt(*argv, '--format',
                                              'json')[1])

    def test_unknown_format_is_127(self):
        inst = self.make(machine_type='pc')
        for argv in (['get_machine_type', inst.uuid],
                     ['list_unset_machine_type'], ['machine_type_summary'],
                     ['bulk_update_machine_type', '--from', 'pc', '--to',
                      'pc']):
            proc = self.libvirt_process(*argv, '--format', 'yaml')
            self.assertEqual((127, ''), (proc.returncode, proc.stdout))
            self.assertIn("invalid choice: 'yaml'", proc.stderr)
            self.assertNotIn('Traceback', proc.stderr)

    # -- list_unset_machine_type

    def test_list_unset_empty_is_0_and_valid(self):
        self.make(machine_type='pc')
        for argv in ([], ['--cell-uuid', self.cells[1].uuid]):
            code, document, err = self.json_of('list_unset_machine_type',
                                               *argv)
            self.assertEqual((0, ''), (code, err))
            self.assertEqual({'instances': [], 'count': 0, 'errors': []},
                             document)

    def test_list_unset_names_each_instance_cell(self):
        first = self.make(cell=0, vm_state='active')
        second = self.make(cell=1, vm_state='shelved_offloaded', host=None)
        third = self.make(cell=1)
        self.make(cell=1, machine_type='q35')
        code, document, err = self.json_of('list_unset_machine_type')
        self.assertEqual((3, ''), (code, err))
        self.assertEqual(
            {'instances': [dict(self.cell_keys(0), instance_uuid=first.uuid),
                           dict(self.cell_keys(1), instance_uuid=second.uuid),
                           dict(self.cell_keys(1), instance_uuid=third.uuid)],
             'count': 3, 'errors': []}, document)

    def test_list_unset_streams_chunk_by_chunk(self):
        """Each chunk is written (and flushed) before the next is read."""
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils.LIST_CHUNK_SIZE', 2))
        self.useFixture(fixtures.MockPatch(
            'nova.db.main.api.LIST_ID_RANGE', 2))
        made = [self.make().uuid for _ in range(5)]
        out = io.StringIO()
        written = []

        def chunks():
            for cell, chunk in mtu.list_unset_machine_type_by_cell(
                    self.context):
                written.append(out.getvalue())
                yield cell, chunk
        with contextlib.redirect_stdout(out):
            self.assertEqual((5, []), manage._stream_unset_json(chunks()))
        # Before each chunk is read, every earlier UUID is already out.
        self.assertEqual([0, 2, 4], [sum(u in text for u in made)
                                     for text in written[:3]])
        self.assertEqual(made, [i['instance_uuid'] for i in
                                json.loads(out.getvalue())['instances']])

    def test_list_unset_memory_is_flat_in_the_number_listed(self):
        """The writer keeps no instance: its peak memory is the same for
        ten chunks as for a hundred."""
        class Sink(io.TextIOBase):
            def __init__(self):
                self.size = 0

            def write(self, text):
                self.size += len(text)
                return len(text)

        def peak(number_of_chunks):
            def chunks():
                for number in range(number_of_chunks):
                    yield self.cells[0], [str(uuid_lib.UUID(int=number * 1000
                                                            + index))
                                          for index in range(1000)]
            sink = Sink()
            tracemalloc.start()
            try:
                with contextlib.redirect_stdout(sink):
                    manage._stream_unset_json(chunks())
                return tracemalloc.get_traced_memory()[1], sink.size
            finally:
                tracemalloc.stop()
        small, small_size = peak(10)
        large, large_size = peak(100)
        self.assertGreater(large_size, 9 * small_size)
        self.assertLess(large, small * 1.5 + 64 * 1024)

    def test_list_unset_cell_failing_part_way_keeps_the_document_valid(self):
        """A cell that fails after some chunks: they stay, the document
        closes with the error, the error is on stderr, exit 1."""
        made = [self.make(cell=1).uuid for _ in range(3)]
        real = db.instance_iter_uuids_without_sysmeta

        def fail_after_one_chunk(cctxt, key, chunk_size):
            for number, chunk in enumerate(real(cctxt, key, 1)):
                if number == 1:
                    raise db_exc.DBConnectionError('server has gone away')
                yield chunk
        self.useFixture(fixtures.MockPatch(
            'nova.db.main.api.instance_iter_uuids_without_sysmeta',
            fail_after_one_chunk))
        code, document, err = self.json_of('list_unset_machine_type')
        self.assertEqual(1, code)
        self.assertEqual([made[0]], [i['instance_uuid']
                                     for i in document['instances']])
        self.assertEqual(1, document['count'])
        [error] = document['errors']
        self.assertEqual(self.cells[1].uuid, error['cell_uuid'])
        self.assertIn('server has gone away', error['error'])
        line = self.assertOneLineError(err)
        self.assertIn('Cell %s did not answer' % self.cells[1].identity, line)

    def test_list_unset_unexpected_error_closes_the_document(self):
        self.make()

        def broken(ctxt, cell_uuid):
            yield self.cells[0], ['a']
            raise RuntimeError('boom')
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils.'
            'list_unset_machine_type_by_cell', broken))
        code, document, err = self.json_of('list_unset_machine_type')
        self.assertEqual(1, code)
        [error] = document['errors']
        self.assertEqual((1, None), (document['count'], error['cell_uuid']))
        self.assertIn('boom', error['error'])
        self.assertIn('unexpected error: ', self.assertOneLineError(err))

    def test_list_unset_console_script_with_a_broken_cell(self):
        inst = self.make(cell=1)
        broken = self.add_broken_cell()
        proc = self.libvirt_process('list_unset_machine_type', '--format',
                                    'json')
        self.assertEqual(1, proc.returncode)
        document = json.loads(proc.stdout)
        self.assertEqual(([dict(self.cell_keys(1), instance_uuid=inst.uuid)],
                          1), (document['instances'], document['count']))
        [error] = document['errors']
        self.assertEqual((broken.uuid, 'broken'),
                         (error['cell_uuid'], error['cell_name']))
        self.assertIn('did not answer', error['error'])
        self.assertIn('did not answer', self.assertOneLineError(proc.stderr))

    def test_list_unset_no_such_cell_is_2_with_nothing_on_stdout(self):
        for cell_uuid in (str(uuid_lib.uuid4()), 'cell1'):
            code, out, err = self.libvirt('list_unset_machine_type',
                                          '--cell-uuid', cell_uuid,
                                          '--format', 'json')
            self.assertEqual((2, ''), (code, out))
            self.assertOneLineError(err)

    # -- machine_type_summary

    def test_summary(self):
        for machine_type, vm_state in (('pc', 'active'), ('pc', 'active'),
                                       ('pc', 'stopped'), (None, 'active')):
            self.make(machine_type=machine_type, vm_state=vm_state)
        code, document, err = self.json_of('machine_type_summary')
        self.assertEqual((0, ''), (code, err))
        self.assertEqual(
            {'total': 4,
             'cells': [
                 dict(self.cell_keys(0), total=4, counts=[
                     {'machine_type': 'pc', 'vm_state': 'active',
                      'count': 2},
                     {'machine_type': 'pc', 'vm_state': 'stopped',
                      'count': 1},
                     {'machine_type': None, 'vm_state': 'active',
                      'count': 1}]),
                 dict(self.cell_keys(1), total=0, counts=[])],
             'errors': []}, document)

    def test_summary_console_script_with_a_broken_cell(self):
        self.make(cell=1, machine_type='pc')
        broken = self.add_broken_cell()
        proc = self.libvirt_process('machine_type_summary', '--format',
                                    'json')
        self.assertEqual(1, proc.returncode)
        document = json.loads(proc.stdout)
        self.assertEqual(1, document['total'])
        self.assertEqual([self.cells[0].uuid, self.cells[1].uuid],
                         [c['cell_uuid'] for c in document['cells']])
        self.assertEqual([broken.uuid],
                         [e['cell_uuid'] for e in document['errors']])
        self.assertIn('did not answer', self.assertOneLineError(proc.stderr))

    def test_summary_no_such_cell_is_2(self):
        code, out, err = self.libvirt('machine_type_summary', '--cell-uuid',
                                      str(uuid_lib.uuid4()), '--format',
                                      'json')
        self.assertEqual((2, ''), (code, out))
        self.assertIn('has no mapping', self.assertOneLineError(err))

    # -- bulk_update_machine_type

    def test_bulk_update_counts_per_cell_and_in_all(self):
        self.report('compute1')
        self.make(cell=0, machine_type='pc-q35-8.1', host='compute2')
        self.make(cell=0, machine_type='pc-q35-8.1', vm_state='active')
        self.make(cell=0, machine_type='pc-q35-8.1', host='compute1')
        self.make(cell=1, machine_type='pc-q35-8.1', host='compute2')
        code, document, err = self.json_of(
            'bulk_update_machine_type', '--from', 'pc-q35-8.1', '--to',
            'pc-q35-9.0')
        self.assertEqual((3, ''), (code, err))
        self.assertEqual(
            {'from': 'pc-q35-8.1', 'to': 'pc-q35-9.0', 'dry_run': False,
             'force': False, 'updated': 2, 'refused': 2,
             'cells': [
                 dict(self.cell_keys(0), updated=1, refused=2, refusals=[
                     {'reason': 'host compute1 does not support pc-q35-9.0',
                      'count': 1},
                     {'reason': 'vm_state active (only stopped, shelved, '
                                'shelved_offloaded instances can change)',
                      'count': 1}]),
                 dict(self.cell_keys(1), updated=1, refused=0,
                      refusals=[])],
             'errors': []}, document)

    def test_bulk_update_dry_run_and_nothing_to_do(self):
        self.make(machine_type='pc-q35-8.1')
        before = self.snapshot()
        code, document, _ = self.json_of(
            'bulk_update_machine_type', '--from', 'pc-q35-8.1', '--to',
            'pc-q35-8.2', '--dry-run')
        self.assertEqual(0, code)
        self.assertEqual((True, 1), (document['dry_run'],
                                     document['updated']))
        code, document, _ = self.json_of(
            'bulk_update_machine_type', '--from', 'pc', '--to', 'pc')
        self.assertEqual((0, [], 0), (code, document['cells'],
                                      document['updated']))
        self.assertEqual(before, self.snapshot())

    def test_bulk_update_progress_goes_to_stderr(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils.BULK_BATCH', 1))
        self.useFixture(fixtures.MockPatch(
            'nova.cmd.manage.BULK_PROGRESS_EVERY', -1))
        for _ in range(3):
            self.make(machine_type='pc-q35-8.1')
        code, document, err = self.json_of(
            'bulk_update_machine_type', '--from', 'pc-q35-8.1', '--to',
            'pc-q35-8.2')
        self.assertEqual((0, 3), (code, document['updated']))
        self.assertIn('instances updated so far', err)

    def test_bulk_update_refusals_keep_stdout_empty(self):
        self.make(machine_type='pc')
        for argv, code in ((['--from', 'pc', '--to', 'q35'], 4),
                           (['--from', 'pc', '--to', 'microvm'], 5),
                           (['--from', 'pc-i440fx-8.1', '--to',
                             'pc-i440fx-8.2', '--cell-uuid',
                             str(uuid_lib.uuid4())], 2)):
            self.assertRefused(code, ['bulk_update_machine_type'] + argv +
                               ['--format', 'json'])
            self.assertEqual('', self.libvirt(
                'bulk_update_machine_type', *argv, '--format', 'json')[1])

    def test_bulk_update_console_script_with_a_broken_cell(self):
        inst = self.make(cell=1, machine_type='pc-q35-8.1')
        broken = self.add_broken_cell()
        proc = self.libvirt_process(
            'bulk_update_machine_type', '--from', 'pc-q35-8.1', '--to',
            'pc-q35-8.2', '--format', 'json')
        self.assertEqual(1, proc.returncode)
        document = json.loads(proc.stdout)
        self.assertEqual(1, document['updated'])
        self.assertEqual([broken.uuid],
                         [e['cell_uuid'] for e in document['errors']])
        self.assertIn('did not answer', self.assertOneLineError(proc.stderr))
        self.assertEqual('pc-q35-8.2', self.recorded(inst))

    def test_get_machine_type_console_script(self):
        inst = self.make(cell=1, machine_type='q35')
        proc = self.libvirt_process('get_machine_type', inst.uuid,
                                    '--format', 'json')
        self.assertEqual((0, ''), (proc.returncode, proc.stderr))
        document = json.loads(proc.stdout)
        self.assertEqual(('q35', self.cells[1].uuid),
                         (document['machine_type'], document['cell_uuid']))


def unmap_every_cell():
    """Remove every cell mapping (and what refers to one) from the API
    database, as before cell_v2 simple_cell_setup was ever run."""
    engine = sa.create_engine(CONF.api_database.connection)
    with engine.begin() as conn:
        for table in ('instance_mappings', 'host_mappings',
                      'cell_mappings'):
            conn.execute(sa.text('DELETE FROM %s' % table))
    engine.dispose()
