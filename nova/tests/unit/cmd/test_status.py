"""nova-status upgrade check: the machine type checks and exit codes.

Checks run in-process on two cells; the console script is run for each
exit code (0, 1, 2, 255). Runs on MariaDB and PostgreSQL too
(nova/tests/functional/cmd/).
"""

import contextlib
import io
import json
import os
import subprocess
import sys

import fixtures
from oslo_db import exception as db_exc
from oslo_upgradecheck import upgradecheck

from nova.cmd import status
from nova.db.main import api as db
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.cmd import test_manage_db
from nova.tests.unit.cmd import test_manage_libvirt
from nova.tests.unit.virt.libvirt import test_machine_type_utils

NOVA_STATUS = os.path.join(os.path.dirname(sys.executable), 'nova-status')
Code = upgradecheck.Code


class StatusTestCase(test_machine_type_utils.MachineTypeTestMixin,
                     test_manage_db.ManageTestMixin,
                     nova_fixtures.TestCase):

    def setUp(self):
        super().setUp()
        self.checks = status.Checks()

    def check(self):
        """Run every check; (code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.checks.check()
        return code, out.getvalue(), err.getvalue()

    def status_process(self, *argv, **sections):
        """Run the nova-status console script with a config file holding
        the test's databases and ``sections``."""
        config_file = self.write_cell_config(**sections)
        return subprocess.run(
            [NOVA_STATUS, '--config-file', config_file] + list(argv),
            capture_output=True, text=True, timeout=120)


class MachineTypeSetCheckTests(StatusTestCase):

    def test_no_cell_mapped_is_an_error_not_success(self):
        self.make(cell=0)
        test_manage_libvirt.unmap_every_cell()
        code, out, err = self.check()
        self.assertEqual((status.EXIT_ERROR, ''), (code, out))
        self.assertEqual(1, len(err.splitlines()), err)
        self.assertIn('No cell is mapped in the API database', err)

    def test_success_when_every_instance_is_recorded(self):
        self.make(cell=0, machine_type='pc')
        self.make(cell=1, machine_type='q35', host=None,
                  vm_state='shelved_offloaded')
        # Being built: its spawn records it.
        self.make(cell=1, host=None, vm_state='building')
        self.make(cell=1).destroy()
        result = self.checks._check_machine_type_set()
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertEqual('Every instance has a recorded machine type.',
                         result.details)

    def test_warning_names_counts_hosts_and_remedies_per_cell(self):
        self.register('compute1')
        self.register('compute2', version=0)
        self.make(cell=0, host='compute1')
        self.make(cell=0, host='compute2')
        self.make(cell=0, host='compute2')
        self.make(cell=0, host='compute9')
        self.make(cell=1, host=None, vm_state='shelved_offloaded')
        self.make(cell=1, machine_type='pc')
        result = self.checks._check_machine_type_set()
        self.assertEqual(Code.WARNING, result.code)
        self.assertEqual(
            'Cell %s: 4 instance(s) have no recorded machine type; restart '
            'nova-compute on compute1 (1) to record theirs; nova-compute on '
            'compute2 (2) predates machine type recording: upgrade it and '
            'restart it; no nova-compute service is recorded for compute9 '
            '(1): start an upgraded nova-compute there. '
            'Cell %s: 1 instance(s) have no recorded machine type; 1 '
            'instance(s) without a host: run nova-manage db '
            'online_data_migrations. List them with nova-manage libvirt '
            'list_unset_machine_type.' % (self.cells[0].identity,
                                          self.cells[1].identity),
            result.details)

    def test_many_hosts_are_cut(self):
        for index in range(status.HOSTS_SHOWN + 3):
            self.make(host='compute%02d' % index)
        details = self.checks._check_machine_type_set().details
        self.assertIn('compute09 (1), and 3 more: start', details)
        self.assertNotIn('compute10', details)

    def test_cell_that_does_not_answer_is_a_failure_naming_it(self):
        self.make(cell=1)
        broken = self.add_broken_cell()
        result = self.checks._check_machine_type_set()
        self.assertEqual(Code.FAILURE, result.code)
        self.assertIn('Cell broken (%s) did not answer: database error: file '
                      'is not a database' % broken.uuid, result.details)
        # The other cells are still reported.
        self.assertIn('Cell %s: 1 instance(s)' % self.cells[1].identity,
                      result.details)


class MachineTypeSupportCheckTests(StatusTestCase):

    def test_success(self):
        self.report('compute1')
        self.make(machine_type='pc')
        self.make(machine_type='pc-q35-8.2')
        # A host that reported nothing cannot be judged.
        self.make(machine_type='pc-i440fx-1.0', host='silent')
        self.assertEqual(Code.SUCCESS,
                         self.checks._check_machine_type_support().code)

    def test_deprecated_and_unsupported_per_host_and_type(self):
        self.report('compute1')
        self.report('compute2', cell=1)
        self.make(machine_type='pc-i440fx-2.0')
        self.make(machine_type='pc-i440fx-2.0')
        self.make(cell=1, machine_type='pc-q35-7.0', host='compute2')
        result = self.checks._check_machine_type_support()
        self.assertEqual(Code.WARNING, result.code)
        self.assertEqual(
            'Cell %s: compute1: 2 instance(s) recorded as pc-i440fx-2.0, '
            'which the host reports as deprecated. Cell %s: compute2: 1 '
            'instance(s) recorded as pc-q35-7.0, which the host does not '
            'support. Stop those instances and move them to a supported '
            'type with nova-manage libvirt update_machine_type (or '
            'bulk_update_machine_type) before the hosts drop it.'
            % (self.cells[0].identity, self.cells[1].identity),
            result.details)

    def test_cell_that_does_not_answer_is_a_failure(self):
        broken = self.add_broken_cell()
        result = self.checks._check_machine_type_support()
        self.assertEqual(Code.FAILURE, result.code)
        self.assertIn(broken.uuid, result.details)


class MachineTypeDriftCheckTests(StatusTestCase):
    """Instances whose live domain runs another type than recorded."""

    def drift(self, inst, running, cell=0):
        """Store ``inst`` as drifting, as its host's nova-compute does at
        start-up (one call per host replaces its rows)."""
        ctxt = self.cell_context(cell)
        stored = {d['instance_uuid']: (d['recorded'], d['running'])
                  for d in db.machine_type_drift_get_all(ctxt)
                  if d['host'] == inst.host}
        stored[inst.uuid] = (self.recorded(inst), running)
        db.machine_type_drift_replace(ctxt, inst.host, stored)

    def test_success_without_drift(self):
        self.make(machine_type='pc')
        result = self.checks._check_machine_type_drift()
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertIn('Every live domain runs the machine type recorded',
                      result.details)
        self.assertEqual(0, result.data['total'])

    def test_warning_counts_per_host_and_names_the_commands(self):
        first = self.make(machine_type='pc', host='compute1')
        second = self.make(machine_type='pc', host='compute1')
        third = self.make(cell=1, machine_type='pc-q35-7.2', host='compute2')
        self.make(machine_type='pc', host='compute1')
        self.drift(first, 'q35')
        self.drift(second, 'pc-i440fx-7.2')
        self.drift(third, 'pc-q35-8.2', cell=1)
        result = self.checks._check_machine_type_drift()
        self.assertEqual(Code.WARNING, result.code)
        self.assertIn(
            'Cell %s: 2 instance(s) run another machine type than recorded, '
            'on compute1 (2): ' % self.cells[0].identity, result.details)
        self.assertIn('%s on compute1 (recorded pc, running q35)'
                      % first.uuid, result.details)
        self.assertIn(
            'Cell %s: 1 instance(s) run another machine type than recorded, '
            'on compute2 (1): %s on compute2 (recorded pc-q35-7.2, running '
            'pc-q35-8.2).' % (self.cells[1].identity, third.uuid),
            result.details)
        for command in ('nova-manage libvirt get_machine_type INSTANCE_UUID',
                        'virsh dumpxml INSTANCE_UUID',
                        'nova-manage libvirt update_machine_type '
                        'INSTANCE_UUID MACHINE_TYPE --force',
                        'hard reboot'):
            self.assertIn(command, result.details)
        self.assertEqual(3, result.data['total'])
        cell0, cell1 = result.data['cells']
        self.assertEqual((self.cells[0].uuid, self.cells[0].name, 2,
                          [{'host': 'compute1', 'count': 2}]),
                         (cell0['cell_uuid'], cell0['cell_name'],
                          cell0['total'], cell0['hosts']))
        self.assertEqual(
            [(third.uuid, 'compute2', 'pc-q35-7.2', 'pc-q35-8.2')],
            [(i['instance_uuid'], i['host'], i['recorded'], i['running'])
             for i in cell1['instances']])
        self.assertEqual([], result.data['errors'])

    def test_many_instances_are_cut(self):
        for _ in range(status.DRIFT_SHOWN + 2):
            self.drift(self.make(machine_type='pc'), 'q35')
        result = self.checks._check_machine_type_drift()
        self.assertIn('and 2 more.', result.details)
        self.assertEqual(status.DRIFT_SHOWN + 2, result.data['total'])

    def test_fixed_record_clears_it(self):
        inst = self.make(machine_type='pc', vm_state='stopped')
        self.drift(inst, 'q35')
        self.assertEqual(Code.WARNING,
                         self.checks._check_machine_type_drift().code)
        code, _, err = self.manage(
            'libvirt', 'update_machine_type', inst.uuid, 'q35', '--force',
            config_file=self.write_cell_config())
        self.assertEqual(0, code, err)
        self.assertEqual(Code.SUCCESS,
                         self.checks._check_machine_type_drift().code)

    def test_cell_that_does_not_answer_is_a_failure_naming_it(self):
        inst = self.make(cell=1, machine_type='pc')
        self.drift(inst, 'q35', cell=1)
        broken = self.add_broken_cell()
        result = self.checks._check_machine_type_drift()
        self.assertEqual(Code.FAILURE, result.code)
        self.assertIn('Cell broken (%s) did not answer' % broken.uuid,
                      result.details)
        self.assertIn(inst.uuid, result.details)
        self.assertEqual([(broken.uuid, 'broken')],
                         [(e['cell_uuid'], e['cell_name'])
                          for e in result.data['errors']])
        self.assertEqual(1, result.data['total'])

    def test_console_script_warning_is_1_with_json_counts(self):
        inst = self.make(cell=1, machine_type='pc', host='compute3')
        self.drift(inst, 'q35', cell=1)
        proc = self.status_process('upgrade', 'check', '--json')
        self.assertEqual((1, ''), (proc.returncode, proc.stderr))
        check = json.loads(proc.stdout)['checks'][3]
        self.assertEqual(('hw_machine_type drift', Code.WARNING),
                         (check['check'], check['result']))
        self.assertIn('compute3 (1)', check['details'])
        [cell] = [c for c in check['data']['cells'] if c['total']]
        self.assertEqual(self.cells[1].uuid, cell['cell_uuid'])
        self.assertEqual([{'host': 'compute3', 'count': 1}], cell['hosts'])
        self.assertEqual(inst.uuid, cell['instances'][0]['instance_uuid'])

    def test_console_script_table(self):
        inst = self.make(machine_type='pc')
        self.drift(inst, 'q35')
        proc = self.status_process('upgrade', 'check')
        self.assertEqual((1, ''), (proc.returncode, proc.stderr))
        self.assertIn('Check: hw_machine_type drift', proc.stdout)
        self.assertIn('virsh dumpxml', proc.stdout)


class MachineTypeConfigCheckTests(StatusTestCase):

    def test_success_names_no_entry(self):
        self.flags(hw_machine_type=['x86_64=q35', 'aarch64=virt'],
                   group='libvirt')
        result = self.checks._check_machine_type_config()
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertEqual('Every [libvirt]hw_machine_type entry is well '
                         'formed.', result.details)

    def test_each_malformed_entry_is_a_failure_naming_it(self):
        for value, named in (
                ('x86_64', "entry 'x86_64' is not of the form "
                           "arch=machine_type"),
                ('x86_64=q35,pdp11=pc', "entry 'pdp11=pc' names an unknown "
                                        "architecture 'pdp11'"),
                ('x86_64=', "entry 'x86_64=' has an empty machine type"),
                ('x86_64=pc q35', "entry 'x86_64=pc q35' has an invalid "
                                  "machine type")):
            proc = self.status_process(
                'upgrade', 'check', '--json',
                libvirt={'hw_machine_type': value})
            self.assertEqual((2, ''), (proc.returncode, proc.stderr), value)
            check = json.loads(proc.stdout)['checks'][0]
            self.assertEqual('hw_machine_type configuration', check['check'])
            self.assertEqual(Code.FAILURE, check['result'])
            self.assertIn('[libvirt]hw_machine_type: ' + named,
                          check['details'])
            self.assertIn('nova-compute and nova-manage refuse to start',
                          check['details'])
            self.assertIn('[libvirt]hw_machine_type: ' + named,
                          check['data']['error'])

    def test_console_script_table_shows_the_entry(self):
        proc = self.status_process('upgrade', 'check',
                                   libvirt={'hw_machine_type': 'q35'})
        self.assertEqual((2, ''), (proc.returncode, proc.stderr))
        self.assertIn('Check: hw_machine_type configuration', proc.stdout)
        self.assertIn('Result: Failure', proc.stdout)
        self.assertIn("[libvirt]hw_machine_type: entry 'q35'", proc.stdout)
        self.assertNotIn('Traceback', proc.stdout)


class UpgradeCheckCommandTests(StatusTestCase):

    def test_table_and_worst_code(self):
        self.make(machine_type='pc')
        self.make(cell=1)
        code, out, err = self.check()
        self.assertEqual((Code.WARNING, ''), (code, err))
        self.assertIn('Check: hw_machine_type unset', out)
        self.assertIn('Result: Warning', out)
        self.assertIn('Check: hw_machine_type support', out)
        self.assertIn('Result: Success', out)

    def test_api_database_error_is_255_on_one_line(self):
        self.useFixture(fixtures.MockPatchObject(
            objects.CellMappingList, 'get_all',
            side_effect=db_exc.DBConnectionError('connection refused')))
        code, out, err = self.check()
        self.assertEqual((255, ''), (code, out))
        self.assertIn('database error', self.assertOneLineError(err))

    def test_console_script_success_is_0(self):
        self.make(machine_type='pc')
        proc = self.status_process('upgrade', 'check')
        self.assertEqual((0, ''), (proc.returncode, proc.stderr))
        self.assertIn('Every instance has a recorded machine type.',
                      proc.stdout)

    def test_console_script_warning_is_1_and_json(self):
        self.make(cell=1, host=None, vm_state='shelved_offloaded')
        proc = self.status_process('upgrade', 'check', '--json')
        self.assertEqual((1, ''), (proc.returncode, proc.stderr))
        checks = json.loads(proc.stdout)['checks']
        self.assertEqual([('hw_machine_type configuration', 0),
                          ('hw_machine_type unset', 1),
                          ('hw_machine_type support', 0),
                          ('hw_machine_type drift', 0)],
                         [(c['check'], c['result']) for c in checks])

    def test_console_script_json_carries_the_counts(self):
        """--json: each check's counts per cell under "data"."""
        self.register('compute1')
        self.report('compute1')
        self.make(host='compute1')
        self.make(host='compute1')
        self.make(cell=1, host=None, vm_state='shelved_offloaded')
        self.make(machine_type='pc-i440fx-2.0')
        broken = self.add_broken_cell()
        proc = self.status_process('upgrade', 'check', '--json')
        self.assertEqual((2, ''), (proc.returncode, proc.stderr))
        document = json.loads(proc.stdout)
        self.assertEqual('Upgrade Check Results', document['name'])
        checks = {c['check']: c for c in document['checks']}
        self.assertEqual({'error': None},
                         checks['hw_machine_type configuration']['data'])
        unset = checks['hw_machine_type unset']
        self.assertEqual(Code.FAILURE, unset['result'])
        self.assertEqual(3, unset['data']['total'])
        self.assertEqual(
            [{'cell_uuid': self.cells[0].uuid,
              'cell_name': self.cells[0].name, 'total': 2, 'hostless': 0,
              'restart': [{'host': 'compute1', 'count': 2}],
              'outdated': [], 'unknown': []},
             {'cell_uuid': self.cells[1].uuid,
              'cell_name': self.cells[1].name, 'total': 1, 'hostless': 1,
              'restart': [], 'outdated': [], 'unknown': []}],
            unset['data']['cells'])
        for check in document['checks'][1:]:
            [error] = check['data']['errors']
            self.assertEqual((broken.uuid, 'broken'),
                             (error['cell_uuid'], error['cell_name']))
            self.assertIn('did not answer', error['error'])
        support = checks['hw_machine_type support']['data']
        self.assertEqual(1, support['total'])
        self.assertEqual(
            [{'host': 'compute1', 'machine_type': 'pc-i440fx-2.0',
              'problem': 'deprecated', 'count': 1}],
            support['cells'][0]['findings'])
        self.assertEqual(0, checks['hw_machine_type drift']['data']['total'])

    def test_table_in_process_has_the_drift_check(self):
        """The table (no --json) is oslo.upgradecheck's, same results."""
        self.make(cell=1)
        code, out, err = self.check()
        self.assertEqual((Code.WARNING, ''), (code, err))
        self.assertIn('Check: hw_machine_type drift', out)

    def test_console_script_failure_is_2(self):
        broken = self.add_broken_cell()
        proc = self.status_process('upgrade', 'check')
        self.assertEqual((2, ''), (proc.returncode, proc.stderr))
        self.assertIn('Result: Failure', proc.stdout)
        self.assertIn('Cell broken (%s) did not' % broken.uuid, proc.stdout)

    def test_console_script_errors_are_255_without_traceback(self):
        for argv in (['bogus'], ['--config-file', '/nonexistent/nova.conf',
                                 'upgrade', 'check']):
            proc = self.status_process(*argv)
            self.assertEqual(255, proc.returncode, argv)
            self.assertNotIn('Traceback', proc.stdout + proc.stderr)
