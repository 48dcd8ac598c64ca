"""Pinning, conditioned writes, start-up errors, drift (the event table).

libvirt's test driver keeps an alias as it was given; a QEMU host reports
the versioned type it runs. ``base.QemuCapabilities`` gives a manager the
capabilities of a real QEMU 7.2 host, whose ``canonical`` attributes say
which versioned type each alias runs as, so that from then on its driver
reports what QEMU would: 'pc' runs as pc-i440fx-7.2.
"""

import fixtures

from nova.compute import machine_type_records
from nova.compute import vm_states
from nova.db.main import api as db
from nova import exception
from nova import objects
from nova.objects import service as service_obj
from nova.tests.unit import compute as base
from nova.virt.libvirt import machine_type_utils

KEY = base.KEY
PINNED_PC = 'pc-i440fx-7.2'


class PinningTestCase(base.ComputeTestCase):
    """An alias record becomes the versioned type QEMU runs it as."""

    def setUp(self):
        super().setUp()
        # Built on a host that keeps aliases: 'pc' is recorded.
        self.instance = self.build()
        self.assertEqual('pc', self.recorded(self.instance))

    def on_qemu_hosts(self):
        """From now on both hosts report what QEMU 7.2 runs."""
        for compute in (self.compute, self.compute2):
            self.useFixture(base.QemuCapabilities(compute.driver))

    def assertPinned(self, vm_state, host='compute1'):
        self.assertState(self.instance, vm_state, host=host)
        self.assertEqual([PINNED_PC], self.machine_type_rows(self.instance))
        # The object the manager holds agrees with the database.
        self.assertEqual(PINNED_PC, self.instance.system_metadata[KEY])

    def test_hard_reboot(self):
        self.on_qemu_hosts()
        self.compute.reboot_instance(self.ctxt, self.instance, 'HARD')
        self.assertPinned(vm_states.ACTIVE)

    def test_soft_reboot_defines_nothing_and_pins_nothing(self):
        self.on_qemu_hosts()
        self.compute.reboot_instance(self.ctxt, self.instance, 'SOFT')
        self.assertEqual(['pc'], self.machine_type_rows(self.instance))

    def test_start(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.on_qemu_hosts()
        self.compute.start_instance(self.ctxt, self.instance)
        self.assertPinned(vm_states.ACTIVE)

    def test_resume(self):
        self.compute.suspend_instance(self.ctxt, self.instance)
        self.on_qemu_hosts()
        self.compute.resume_instance(self.ctxt, self.instance)
        self.assertPinned(vm_states.ACTIVE)

    def test_unrescue(self):
        self.compute.rescue_instance(self.ctxt, self.instance)
        self.assertEqual(['pc'], self.machine_type_rows(self.instance))
        self.on_qemu_hosts()
        self.compute.unrescue_instance(self.ctxt, self.instance)
        self.assertPinned(vm_states.ACTIVE)

    def test_unshelve_offloaded_on_another_host(self):
        self.compute.shelve_instance(self.ctxt, self.instance)
        self.compute.shelve_offload_instance(self.ctxt, self.instance)
        self.on_qemu_hosts()
        self.compute2.unshelve_instance(self.ctxt, self.instance)
        self.assertPinned(vm_states.ACTIVE, host='compute2')

    def test_evacuate(self):
        self.on_qemu_hosts()
        self.compute2.rebuild_instance(self.ctxt, self.instance,
                                       recreate=True)
        self.assertPinned(vm_states.ACTIVE, host='compute2')

    def test_cold_migration_finish(self):
        self.on_qemu_hosts()
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)
        self.assertPinned(vm_states.RESIZED, host='compute2')
        self.compute2.confirm_migration(self.ctxt, self.instance)
        self.assertPinned(vm_states.ACTIVE, host='compute2')

    def test_cold_migration_revert(self):
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)
        self.on_qemu_hosts()
        self.compute2.revert_migration(self.ctxt, self.instance)
        self.assertPinned(vm_states.ACTIVE)

    def test_live_migration(self):
        self.on_qemu_hosts()
        self.compute.live_migrate_instance(self.ctxt, self.instance,
                                           self.compute2)
        self.assertPinned(vm_states.ACTIVE, host='compute2')

    def test_pinned_in_the_save_that_ends_the_operation(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.on_qemu_hosts()
        sql = self.useFixture(base.SQLRecorder())
        self.compute.start_instance(self.ctxt, self.instance)
        pins = sql.find('UPDATE instance_system_metadata', PINNED_PC)
        activations = sql.find('UPDATE instances', vm_states.ACTIVE)
        self.assertEqual((1, 1), (len(pins), len(activations)), sql.events)
        first, last = sorted(pins + activations)
        self.assertNotIn('COMMIT', sql.events[first:last])

    def test_versioned_record_never_changes(self):
        instance = self.build({'hw_machine_type': 'pc-q35-6.2'})
        self.on_qemu_hosts()
        self.compute.reboot_instance(self.ctxt, instance, 'HARD')
        self.compute.migrate_instance(self.ctxt, instance, self.compute2)
        self.compute2.confirm_migration(self.ctxt, instance)
        self.assertEqual(['pc-q35-6.2'], self.machine_type_rows(instance))


class PinTargetTestCase(base.ComputeTestCase):
    """machine_type_records.pin_target: which report replaces a record."""

    def target(self, recorded, reported):
        instance = objects.Instance(uuid='instance-x')
        return machine_type_records.pin_target(instance, recorded, reported)

    def test_alias_takes_the_versioned_type_of_its_family(self):
        self.assertEqual('pc-q35-7.2', self.target('q35', 'pc-q35-7.2'))
        self.assertEqual('pc-q35-rhel9.2.0',
                         self.target('q35', 'pc-q35-rhel9.2.0'))
        self.assertEqual('virt-7.2', self.target('virt', 'virt-7.2'))

    def test_nothing_to_pin(self):
        for recorded, reported in (('q35', 'q35'), ('q35', None),
                                   ('pc-q35-6.2', 'pc-q35-7.2')):
            self.assertIsNone(self.target(recorded, reported))
        self.assertNotIn('another family', self.logger.output)

    def test_report_of_another_family_is_logged_and_changes_nothing(self):
        self.assertIsNone(self.target('q35', 'pc-i440fx-7.2'))
        self.assertIn('libvirt reports machine type pc-i440fx-7.2 for a '
                      'domain defined from the record q35, of another '
                      'family; the record is kept', self.logger.output)
        self.assertIn('instance-x', self.logger.output)


class RecorderInterleavingTestCase(base.ComputeTestCase):
    """The operator's update lands between a recorder's read and write.

    Each test wraps the recorder's own read function so that the operator's
    ``update_machine_type`` (with --force: the states vary) commits right
    after it returns, on the real database. The operator's value stays.
    Run on SQLite here and on MariaDB and PostgreSQL in the functional tier
    (nova/tests/functional/compute/test_recorder_interleaving.py).
    """

    OPERATOR = 'q35'

    def writer_after(self, read_function, write):
        """Make ``write()`` follow the first ``read_function`` call;
        returns the list of what that call returned."""
        original = getattr(machine_type_records, read_function)
        calls = []

        def read_then_write(*args, **kwargs):
            result = original(*args, **kwargs)
            if not calls:
                calls.append(result)
                write()
            return result

        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.machine_type_records.' + read_function,
            read_then_write))
        return calls

    def operator_after(self, read_function, instance):
        """Make the operator's update follow the first ``read_function``."""
        return self.writer_after(
            read_function, lambda: machine_type_utils.update_machine_type(
                self.context, instance.uuid, self.OPERATOR, force=True))

    def test_start_up(self):
        [instance] = self.legacy_instances('pc')
        calls = self.operator_after('read_unrecorded', instance)
        self.compute.init_host()
        self.assertEqual(1, len(calls))
        self.assertEqual([self.OPERATOR], self.machine_type_rows(instance))

    def test_ensure_recorded(self):
        [instance] = self.legacy_instances('pc')
        instance = self.reload(instance)
        calls = self.operator_after('read_record', instance)
        self.compute.start_instance(self.ctxt, instance)
        self.assertEqual([None], calls)
        self.assertEqual([self.OPERATOR], self.machine_type_rows(instance))
        # The domain is defined from the decision that was kept.
        self.assertDomainMachineType(self.OPERATOR, instance)

    def test_spawn(self):
        """Another recorder (start-up, the online migration: an
        insert-if-absent) records between the spawn's read and its
        write: its value stays."""
        instance = self.create_instance()
        calls = self.recorder_after('read_record', instance)
        self.compute.build_and_run_instance(self.ctxt, instance, self.image())
        self.assertEqual([None], calls)
        self.assertState(instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual([self.OPERATOR], self.machine_type_rows(instance))

    def test_operator_refused_during_spawn(self):
        """The operator's command never lands inside an operation: the
        spawn has claimed the instance when it reads the record."""
        instance = self.create_instance()
        refusals = []
        original = machine_type_records.read_record

        def read_then_operator(*args, **kwargs):
            result = original(*args, **kwargs)
            refusals.append(self.assertRaises(
                exception.MachineTypeUpdateInstanceBusy,
                machine_type_utils.update_machine_type, self.context,
                instance.uuid, self.OPERATOR, force=True))
            return result
        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.machine_type_records.read_record',
            read_then_operator))
        self.compute.build_and_run_instance(self.ctxt, instance, self.image())
        self.assertIn('spawning', refusals[0].format_message())
        self.assertState(instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual([self.domain_machine_type(instance)],
                         self.machine_type_rows(instance))

    def recorder_after(self, read_function, instance):
        """Make an insert-if-absent recorder follow ``read_function``."""
        return self.writer_after(
            read_function, lambda: db.instance_system_metadata_record(
                self.cell_context(), base.KEY,
                {instance.uuid: self.OPERATOR}))

    def test_pin(self):
        instance = self.build()
        self.compute.stop_instance(self.ctxt, instance)
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        calls = self.operator_after('read_record', instance)
        self.compute.start_instance(self.ctxt, instance)
        self.assertEqual(['pc'], calls)
        self.assertState(instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual([self.OPERATOR], self.machine_type_rows(instance))

    def test_start_up_pin(self):
        instance = self.build()
        restarted = self.compute.__class__('compute1')
        self.useFixture(base.QemuCapabilities(restarted.driver))
        calls = self.operator_after('read_host_records', instance)
        restarted.init_host()
        self.assertEqual(1, len(calls))
        self.assertEqual([self.OPERATOR], self.machine_type_rows(instance))


class StartUpPinAndDriftTestCase(base.ComputeTestCase):
    """init_host compares every running domain with its instance's record."""

    def restart(self, qemu=False):
        """A new nova-compute for compute1, started."""
        restarted = self.compute.__class__('compute1')
        if qemu:
            self.useFixture(base.QemuCapabilities(restarted.driver))
        restarted.init_host()
        return restarted

    def test_alias_record_is_pinned_to_what_the_domain_runs(self):
        instance = self.build()
        self.restart(qemu=True)
        self.assertEqual([PINNED_PC], self.machine_type_rows(instance))
        self.assertEqual([], db.machine_type_drift_get_all(self.ctxt))

    def drifted(self):
        """A 'pc' instance whose domain was made q35 by hand and started,
        after a restart of its nova-compute.
        """
        instance = self.build()
        self.compute.stop_instance(self.ctxt, instance)
        self.define_domain(instance, 'q35', start=True)
        self.restart()
        return instance

    def test_operator_change_of_a_stopped_instance_outlives_a_restart(self):
        """update_machine_type on a stopped instance whose domain (still
        defined, not running) has the old versioned type: a restart of
        nova-compute neither pins the new alias back to the old version
        nor reports the new versioned type as drift."""
        for new in ('q35', 'pc-q35-8.0'):
            instance = self.build()
            self.compute.stop_instance(self.ctxt, instance)
            self.define_domain(instance, 'pc-q35-7.2')
            machine_type_utils.update_machine_type(
                self.context, instance.uuid, new, force=True)
            self.restart(qemu=True)
            self.assertEqual([new], self.machine_type_rows(instance))
            self.assertEqual([], db.machine_type_drift_get_all(self.ctxt))
            self.assertFalse(self.domain_is_running(instance))

    def test_stopped_domain_changed_by_hand_is_not_drift(self):
        """Drift is what a running guest runs: a stopped domain is
        defined again from the record at its next start."""
        instance = self.build()
        self.compute.stop_instance(self.ctxt, instance)
        self.define_domain(instance, 'q35')
        self.restart()
        self.assertEqual([], db.machine_type_drift_get_all(self.ctxt))
        self.compute.start_instance(self.ctxt, self.reload(instance))
        self.assertDomainMachineType('pc', instance)

    def test_domain_changed_behind_our_back_is_stored_as_drift(self):
        instance = self.drifted()
        drift = db.machine_type_drift_get_all(self.ctxt)
        self.assertEqual(
            [('compute1', instance.uuid, 'pc', 'q35')],
            [(d['host'], d['instance_uuid'], d['recorded'], d['running'])
             for d in drift])
        self.assertIn('Instance %s on host compute1 runs machine type q35 '
                      'but pc is recorded' % instance.uuid,
                      self.logger.output)
        # The record is what nova keeps: the drift does not change it.
        self.assertEqual(['pc'], self.machine_type_rows(instance))

    def test_drift_goes_once_the_record_matches(self):
        instance = self.drifted()
        machine_type_utils.update_machine_type(self.context, instance.uuid,
                                               'q35', force=True)
        self.assertEqual([], db.machine_type_drift_get_all(self.ctxt))

    def test_next_start_replaces_the_hosts_drift(self):
        instance = self.drifted()
        # Put right by hand: the guest runs pc again.
        self.libvirt.get_connection().lookupByUUIDString(
            instance.uuid).destroy()
        self.define_domain(instance, 'pc', start=True)
        self.restart()
        self.assertEqual([], db.machine_type_drift_get_all(self.ctxt))

    def test_drift_of_a_deleted_instance_is_not_reported(self):
        instance = self.drifted()
        self.compute.terminate_instance(self.ctxt, instance)
        self.assertEqual([], db.machine_type_drift_get_all(self.ctxt))


class BadDomainAtStartUpTestCase(base.ComputeTestCase):
    """One domain that cannot be read does not stop nova-compute."""

    def test_other_instances_recorded_and_service_up(self):
        good, bad = self.legacy_instances('q35', count=2)
        list_guests = self.compute.driver._host.list_guests

        def list_with_one_unreadable():
            # The bad domain's XML read is a real call to the test driver
            # with a flag it refuses: a real libvirtError, not NO_DOMAIN.
            guests = list_guests()
            for guest in guests:
                if guest.uuid == bad.uuid:
                    guest.get_xml_desc = (
                        lambda g=guest: g._domain.XMLDesc(1 << 30))
            return guests

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.list_guests',
            lambda self_: list_with_one_unreadable()))
        self.compute.init_host()
        self.assertEqual(['q35'], self.machine_type_rows(good))
        self.assertEqual([], self.machine_type_rows(bad))
        self.assertIn('Cannot read the domain of instance %s' % bad.uuid,
                      self.logger.output)
        self.assertIn('Instance %s (stopped) stays unrecorded: its domain '
                      'could not be read' % bad.uuid, self.logger.output)
        self.assertIn('flags', self.logger.output)
        # nova-compute started: it registered at the recording version.
        self.assertEqual(
            [('compute1', service_obj.SERVICE_VERSION)],
            [(s.host, s.version) for s in objects.ServiceList.get_by_binary(
                self.ctxt, 'nova-compute')])


class SpawnWithoutReportTestCase(base.ComputeTestCase):
    """A spawn whose domain libvirt reports no machine type for."""

    def test_records_the_resolved_value_with_a_warning(self):
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.get_machine_type',
            lambda self_, guest, arch=None: None))
        instance = self.build()
        self.assertState(instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual(['q35'], self.machine_type_rows(instance))
        self.assertIn('libvirt reports no machine type for the domain of '
                      'instance %s; recording the resolved q35'
                      % instance.uuid, self.logger.output)
