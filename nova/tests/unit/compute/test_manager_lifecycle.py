"""After the build: each event of the event table, row by row.

Every test builds an instance on compute1 (recorded: the built-in 'pc'),
then changes ``[libvirt]hw_machine_type`` to q35, so a domain defined from
configuration would show it. Before the event, the domain's stored
definition is changed behind nova's back (TAMPERED): an event that
redefines the domain from the record replaces it with 'pc', one that does
not redefine it leaves it.
"""

import fixtures
import sqlalchemy as sa

from nova.compute import manager
from nova.compute import power_state
from nova.compute import services
from nova.compute import vm_states
from nova.db.main import api as db
from nova.db import transactions
from nova import exception
from nova import objects
from nova.tests.unit import compute as base
from nova.virt.libvirt import machine_type_utils

RECORDED = 'pc'
TAMPERED = 'pc-tampered'


class LifecycleTestCase(base.ComputeTestCase):

    def setUp(self):
        super().setUp()
        self.instance = self.build()
        self.assertEqual(RECORDED, self.recorded(self.instance))
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')

    def tamper(self):
        """Change the stored definition; a running domain keeps running."""
        self.define_domain(self.instance, TAMPERED)

    def assertRedefinedFromRecord(self, running=True, host='compute1'):
        self.assertEqual(RECORDED, self.recorded(self.instance))
        self.assertEqual([RECORDED], self.machine_type_rows(self.instance))
        self.assertEqual(RECORDED,
                         self.persistent_machine_type(self.instance))
        self.assertEqual(running, self.domain_is_running(self.instance))
        if running:
            self.assertDomainMachineType(RECORDED, self.instance)
        self.assertEqual(host, self.reload(self.instance).host)

    def assertNotRedefined(self):
        self.assertEqual(RECORDED, self.recorded(self.instance))
        self.assertEqual(TAMPERED,
                         self.persistent_machine_type(self.instance))

    def migration_statuses(self):
        """The statuses of the instance's migration rows, by id."""
        migrations = db.MIGRATIONS
        with transactions.using(
                self.ctxt, db.get_context_manager(self.ctxt).reader):
            return self.ctxt.session.execute(
                sa.select(migrations.c.status)
                .where(migrations.c.instance_uuid == self.instance.uuid)
                .order_by(migrations.c.id)).scalars().all()


class RedefiningEventsTestCase(LifecycleTestCase):
    """Hard reboot, power on, resume, unrescue, unshelve, moves."""

    def test_hard_reboot(self):
        self.tamper()
        self.compute.reboot_instance(self.ctxt, self.instance, 'HARD')
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertRedefinedFromRecord()

    def test_hard_reboot_of_stopped_instance(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.tamper()
        self.compute.reboot_instance(self.ctxt, self.instance,
                                     reboot_type='HARD')
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertRedefinedFromRecord()

    def test_stop_and_start(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.STOPPED, host='compute1')
        self.assertFalse(self.domain_is_running(self.instance))
        self.tamper()
        self.compute.start_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual(power_state.RUNNING, self.instance.power_state)
        self.assertRedefinedFromRecord()

    def test_suspend_and_resume(self):
        self.compute.suspend_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.SUSPENDED, host='compute1')
        self.tamper()
        self.compute.resume_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertRedefinedFromRecord()

    def test_rescue_and_unrescue(self):
        self.tamper()
        self.compute.rescue_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.RESCUED, host='compute1')
        self.assertRedefinedFromRecord()
        self.tamper()
        self.compute.unrescue_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertRedefinedFromRecord()

    def test_unshelve_on_the_same_host(self):
        self.compute.shelve_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.SHELVED, host='compute1')
        self.tamper()
        self.compute.unshelve_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertRedefinedFromRecord()

    def test_unshelve_on_another_host(self):
        self.compute.shelve_instance(self.ctxt, self.instance)
        self.compute.shelve_offload_instance(self.ctxt, self.instance)
        self.compute2.unshelve_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute2')
        self.assertEqual('compute2', self.reload(self.instance).node)
        self.assertRedefinedFromRecord(host='compute2')

    def test_cold_migration(self):
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)
        self.assertState(self.instance, vm_states.RESIZED, host='compute2')
        self.assertRedefinedFromRecord(host='compute2')
        self.compute.confirm_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute2')
        self.assertRedefinedFromRecord(host='compute2')

    def test_cold_migration_revert(self):
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)
        self.tamper()
        self.compute2.revert_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual('compute1', self.reload(self.instance).node)
        self.assertRedefinedFromRecord()

    def test_revert_refused_before_the_domain_goes(self):
        """The record was pinned on the destination to a version the
        source's QEMU lacks (7.2 -> 8.2): the revert is refused before the
        destination's domain is removed, and a confirm still works."""
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)
        machine_type_utils.update_machine_type(
            self.context, self.instance.uuid, 'pc-i440fx-8.2', force=True)
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        self.assertRaises(exception.UnsupportedMachineType,
                          self.compute2.revert_migration, self.ctxt,
                          self.reload(self.instance))
        self.assertState(self.instance, vm_states.RESIZED, host='compute2')
        self.assertTrue(self.domain_is_running(self.instance))
        self.assertEqual(['finished'], self.migration_statuses())
        self.compute2.confirm_migration(self.ctxt, self.reload(self.instance))
        self.assertState(self.instance, vm_states.ACTIVE, host='compute2')

    def test_cold_migration_of_stopped_instance(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)
        self.assertState(self.instance, vm_states.RESIZED, host='compute2')
        self.assertRedefinedFromRecord(running=False, host='compute2')
        self.compute.revert_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.STOPPED, host='compute1')
        self.assertRedefinedFromRecord(running=False)

    def test_evacuate(self):
        self.tamper()
        self.compute2.rebuild_instance(self.ctxt, self.instance,
                                       self.image(hw_machine_type='q35'),
                                       recreate=True)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute2')
        self.assertRedefinedFromRecord(host='compute2')
        # Evacuate keeps the image too: only rebuild replaces it.
        self.assertNotIn('image_hw_machine_type',
                         self.reload(self.instance).system_metadata)

    def test_evacuate_of_stopped_instance(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.compute2.rebuild_instance(self.ctxt, self.instance, None,
                                       recreate=True)
        self.assertState(self.instance, vm_states.STOPPED, host='compute2')
        self.assertRedefinedFromRecord(running=False, host='compute2')

    def test_live_migration(self):
        self.compute.live_migrate_instance(self.ctxt, self.instance,
                                           self.compute2)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute2')
        self.assertEqual('compute2', self.reload(self.instance).node)
        self.assertRedefinedFromRecord(host='compute2')

    def test_live_migration_of_paused_instance(self):
        self.compute.pause_instance(self.ctxt, self.instance)
        self.compute.live_migrate_instance(self.ctxt, self.instance,
                                           self.compute2)
        self.assertState(self.instance, vm_states.PAUSED, host='compute2')
        self.assertRedefinedFromRecord(host='compute2')


class NotRedefiningEventsTestCase(LifecycleTestCase):
    """Soft reboot, pause and unpause leave the domain as it is."""

    def test_soft_reboot(self):
        self.tamper()
        self.compute.reboot_instance(self.ctxt, self.instance, 'SOFT')
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertNotRedefined()

    def test_pause_and_unpause(self):
        self.tamper()
        self.compute.pause_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.PAUSED, host='compute1')
        self.assertEqual(power_state.PAUSED, self.instance.power_state)
        self.assertNotRedefined()
        self.compute.unpause_instance(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertNotRedefined()
        # The running domain is still the one built from the record.
        self.assertDomainMachineType(RECORDED, self.instance)


class ShelveOffloadTestCase(LifecycleTestCase):

    def test_record_stays_and_host_is_cleared(self):
        self.compute.shelve_instance(self.ctxt, self.instance)
        self.compute.shelve_offload_instance(self.ctxt, self.instance)
        saved = self.reload(self.instance)
        self.assertEqual(
            (vm_states.SHELVED_OFFLOADED, None, None, None,
             power_state.NOSTATE),
            (saved.vm_state, saved.task_state, saved.host, saved.node,
             saved.power_state))
        self.assertEqual(RECORDED, saved.system_metadata[base.KEY])
        self.assertIsNone(self.libvirt.get_guest(self.instance.uuid))


class RebuildTestCase(LifecycleTestCase):

    def test_image_with_machine_type_is_taken(self):
        image = self.image(hw_machine_type='pc-i440fx-2.11',
                           hw_disk_bus='scsi')
        self.compute.rebuild_instance(self.ctxt, self.instance, image)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        saved = self.reload(self.instance)
        self.assertEqual(
            {'image_hw_machine_type': 'pc-i440fx-2.11',
             'image_hw_disk_bus': 'scsi', base.KEY: 'pc-i440fx-2.11'},
            saved.system_metadata)
        self.assertEqual(image.id, saved.image_ref)
        self.assertEqual(['pc-i440fx-2.11'],
                         self.machine_type_rows(self.instance))
        self.assertDomainMachineType('pc-i440fx-2.11', self.instance)

    def test_image_without_machine_type_takes_the_current_default(self):
        self.compute.rebuild_instance(self.ctxt, self.instance, self.image())
        self.assertEqual('q35', self.recorded(self.instance))
        self.assertEqual(['q35'], self.machine_type_rows(self.instance))
        self.assertDomainMachineType('q35', self.instance)

    def test_old_image_properties_are_replaced(self):
        instance = self.build({'hw_machine_type': 'pc-i440fx-2.11'})
        self.compute.rebuild_instance(self.ctxt, instance, self.image())
        sysmeta = self.reload(instance).system_metadata
        self.assertNotIn('image_hw_machine_type', sysmeta)
        self.assertEqual('q35', sysmeta[base.KEY])

    def test_same_image_takes_the_current_default(self):
        self.compute.rebuild_instance(self.ctxt, self.instance)
        self.assertEqual('q35', self.recorded(self.instance))

    def test_stopped_instance_stays_stopped(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.compute.rebuild_instance(self.ctxt, self.instance, self.image())
        self.assertState(self.instance, vm_states.STOPPED, host='compute1')
        self.assertEqual('q35', self.recorded(self.instance))
        self.assertFalse(self.domain_is_running(self.instance))

    def test_unsupported_machine_type_errors_out_without_record(self):
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        self.assertRaises(
            exception.UnsupportedMachineType, self.compute.rebuild_instance,
            self.ctxt, self.instance, self.image(hw_machine_type='bogus'))
        self.assertState(self.instance, vm_states.ERROR, host='compute1')
        self.assertEqual([], self.machine_type_rows(self.instance))
        fault = db.instance_fault_get_latest(self.ctxt, self.instance.uuid)
        self.assertIn('bogus', fault['message'])
        self.assertIn('compute1', fault['message'])


class RefusedTestCase(LifecycleTestCase):
    """Operations refused before anything changes."""

    def assertUnchanged(self):
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertTrue(self.domain_is_running(self.instance))
        self.assertEqual(RECORDED, self.recorded(self.instance))

    def test_destination_without_the_recorded_machine_type(self):
        self.useFixture(base.QemuCapabilities(self.compute2.driver))
        db.instance_system_metadata_record(
            self.ctxt, base.KEY, {self.instance.uuid: 'pc-q35-1.0'},
            overwrite=True)
        self.instance.refresh()
        for move in (self.compute.migrate_instance,
                     self.compute.live_migrate_instance):
            err = self.assertRaises(exception.UnsupportedMachineType, move,
                                    self.ctxt, self.instance, self.compute2)
            self.assertIn('pc-q35-1.0', str(err))
            self.assertIn('compute2', str(err))
            self.assertState(self.instance, vm_states.ACTIVE,
                             host='compute1')
            self.assertTrue(self.domain_is_running(self.instance))

    def test_unsupported_record_on_hard_reboot_errors_out(self):
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        db.instance_system_metadata_record(
            self.ctxt, base.KEY, {self.instance.uuid: 'pc-q35-1.0'},
            overwrite=True)
        self.instance.refresh()
        self.assertRaises(exception.UnsupportedMachineType,
                          self.compute.reboot_instance, self.ctxt,
                          self.instance, 'HARD')
        self.assertState(self.instance, vm_states.ERROR, host='compute1')
        # Refused before the domain was touched: it still runs.
        self.assertTrue(self.domain_is_running(self.instance))
        fault = db.instance_fault_get_latest(self.ctxt, self.instance.uuid)
        self.assertIn('pc-q35-1.0', fault['message'])

    def test_wrong_vm_state(self):
        for method in (self.compute.start_instance,
                       self.compute.unpause_instance,
                       self.compute.resume_instance,
                       self.compute.unrescue_instance,
                       self.compute.shelve_offload_instance,
                       self.compute.unshelve_instance,
                       self.compute.confirm_migration,
                       self.compute.revert_migration):
            self.assertRaises(exception.InstanceInvalidState, method,
                              self.ctxt, self.instance)
        self.assertUnchanged()

    def test_soft_reboot_of_stopped_instance(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.assertRaises(exception.InstanceInvalidState,
                          self.compute.reboot_instance, self.ctxt,
                          self.instance, 'SOFT')
        self.assertState(self.instance, vm_states.STOPPED, host='compute1')

    def test_unknown_reboot_type(self):
        self.assertRaises(exception.InvalidInput,
                          self.compute.reboot_instance, self.ctxt,
                          self.instance, 'WARM')
        self.assertUnchanged()

    def test_unshelve_of_shelved_instance_on_another_host(self):
        self.compute.shelve_instance(self.ctxt, self.instance)
        self.assertRaises(exception.InstanceInvalidState,
                          self.compute2.unshelve_instance, self.ctxt,
                          self.instance)
        self.assertState(self.instance, vm_states.SHELVED, host='compute1')

    def test_confirm_unknown_migration(self):
        self.instance.vm_state = vm_states.RESIZED
        self.instance.save()
        self.assertRaises(exception.MigrationError,
                          self.compute.confirm_migration, self.ctxt,
                          self.instance)


class MigrationRestartTestCase(LifecycleTestCase):
    """A resize survives a restart of either host's nova-compute.

    A restart is a new ComputeManager for the host and its init_host,
    with no memory of the old one; the instance is loaded afresh, as the
    API would hand it over. Confirm and revert then find the migration in
    the cell database; the record and the domain's machine type stay.
    """

    def restart(self, *hosts):
        """Restart the nova-compute of ``hosts``, in that order."""
        for host in hosts:
            compute = manager.ComputeManager(host)
            compute.init_host()
            if host == 'compute1':
                self.compute = compute
            else:
                self.compute2 = compute
        self.instance = self.reload(self.instance)

    def migrate(self):
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)
        self.assertState(self.instance, vm_states.RESIZED, host='compute2')
        self.assertEqual(['finished'], self.migration_statuses())

    def check_confirm(self, restarted, asked):
        self.migrate()
        self.restart(*restarted)
        self.assertRedefinedFromRecord(host='compute2')
        getattr(self, asked).confirm_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute2')
        self.assertEqual(power_state.RUNNING, self.instance.power_state)
        self.assertRedefinedFromRecord(host='compute2')
        self.assertEqual(['confirmed'], self.migration_statuses())

    def test_confirm_after_source_restart(self):
        self.check_confirm(['compute1'], 'compute')

    def test_confirm_after_destination_restart(self):
        self.check_confirm(['compute2'], 'compute2')

    def test_confirm_after_both_restart(self):
        self.check_confirm(['compute2', 'compute1'], 'compute')

    def check_revert(self, restarted, asked):
        self.migrate()
        self.restart(*restarted)
        self.assertRedefinedFromRecord(host='compute2')
        self.tamper()
        getattr(self, asked).revert_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual('compute1', self.reload(self.instance).node)
        self.assertRedefinedFromRecord()
        self.assertEqual(['reverted'], self.migration_statuses())

    def test_revert_after_source_restart(self):
        self.check_revert(['compute1'], 'compute2')

    def test_revert_after_destination_restart(self):
        self.check_revert(['compute2'], 'compute2')

    def test_revert_after_both_restart(self):
        self.check_revert(['compute1', 'compute2'], 'compute')

    def test_stopped_instance_reverted_after_restart_stays_stopped(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.migrate()
        self.restart('compute1', 'compute2')
        self.compute.revert_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.STOPPED, host='compute1')
        self.assertEqual(power_state.SHUTDOWN, self.instance.power_state)
        self.assertRedefinedFromRecord(running=False)

    def test_stopped_instance_confirmed_after_restart_stays_stopped(self):
        self.compute.stop_instance(self.ctxt, self.instance)
        self.migrate()
        self.restart('compute2')
        self.compute2.confirm_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.STOPPED, host='compute2')
        self.assertRedefinedFromRecord(running=False, host='compute2')

    def test_revert_while_the_source_is_down_changes_nothing(self):
        self.migrate()
        self.useFixture(fixtures.MockPatchObject(services, '_SERVICES', {}))
        self.restart('compute2')
        err = self.assertRaises(exception.MigrationError,
                                self.compute2.revert_migration, self.ctxt,
                                self.instance)
        self.assertIn('compute1', str(err))
        self.assertState(self.instance, vm_states.RESIZED, host='compute2')
        self.assertEqual(['finished'], self.migration_statuses())
        self.restart('compute1')
        self.compute2.revert_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertRedefinedFromRecord()

    def test_confirm_and_revert_after_the_end_are_refused(self):
        self.migrate()
        self.restart('compute1', 'compute2')
        self.compute.confirm_migration(self.ctxt, self.instance)
        self.instance.vm_state = vm_states.RESIZED
        self.instance.save()
        for method in (self.compute.confirm_migration,
                       self.compute2.revert_migration):
            self.assertRaises(exception.MigrationError, method, self.ctxt,
                              self.instance)
        self.assertEqual(['confirmed'], self.migration_statuses())

    def test_host_outside_the_migration_is_refused(self):
        self.migrate()
        compute3 = manager.ComputeManager('compute3')
        err = self.assertRaises(exception.MigrationError,
                                compute3.confirm_migration, self.ctxt,
                                self.instance)
        self.assertIn('compute3', str(err))
        self.assertState(self.instance, vm_states.RESIZED, host='compute2')

    def test_start_up_records_resized_instance_from_destination_domain(self):
        # Resized before machine types were recorded: RESIZED on compute2
        # (the host column names the destination), whose domain runs LIVE,
        # with nothing recorded; the migration waits for its revert.
        live = 'pc-i440fx-2.11'
        self.instance = self.create_instance(
            host='compute2', node='compute2', vm_state=vm_states.RESIZED,
            power_state=power_state.RUNNING)
        self.define_domain(self.instance, live, start=True)
        objects.Migration(
            self.ctxt, instance_uuid=self.instance.uuid,
            source_compute='compute1', source_node='compute1',
            dest_compute='compute2', dest_node='compute2',
            status='finished', old_vm_state=vm_states.ACTIVE).create()
        self.restart('compute1')
        self.assertIsNone(self.recorded(self.instance))
        self.restart('compute2')
        self.assertEqual([live], self.machine_type_rows(self.instance))
        self.assertDomainMachineType(live, self.instance)
        self.compute.revert_migration(self.ctxt, self.instance)
        self.assertState(self.instance, vm_states.ACTIVE, host='compute1')
        self.assertEqual([live], self.machine_type_rows(self.instance))
        self.assertDomainMachineType(live, self.instance)
        self.assertEqual(live, self.persistent_machine_type(self.instance))


class LegacyInstanceTestCase(base.ComputeTestCase):
    """Instances without a record: resolved and recorded on redefinition.

    The domain the instance has (defined before recording existed) wins
    over the image and the configuration; without one, the resolution
    function decides on the host that defines the domain.
    """

    LIVE = 'pc-i440fx-2.11'

    def setUp(self):
        super().setUp()
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')

    def legacy(self, domain=True, **values):
        values.setdefault('host', 'compute1')
        values.setdefault('node', values['host'])
        values.setdefault('vm_state', vm_states.ACTIVE)
        instance = self.create_instance(**values)
        if domain:
            self.define_domain(instance, self.LIVE,
                               start=values['vm_state'] == vm_states.ACTIVE)
        return instance

    def assertRecorded(self, machine_type, instance, running=True):
        self.assertEqual([machine_type], self.machine_type_rows(instance))
        self.assertEqual(machine_type, instance.system_metadata[base.KEY])
        self.assertEqual(machine_type, self.persistent_machine_type(instance))
        self.assertEqual(running, self.domain_is_running(instance))

    def test_hard_reboot_records_the_live_domain(self):
        instance = self.legacy(system_metadata={
            'image_hw_machine_type': 'q35'})
        self.compute.reboot_instance(self.ctxt, instance, 'HARD')
        self.assertRecorded(self.LIVE, instance)

    def test_start_records_the_live_domain(self):
        instance = self.legacy(vm_state=vm_states.STOPPED)
        self.compute.start_instance(self.ctxt, instance)
        self.assertRecorded(self.LIVE, instance)

    def test_cold_migration_records_on_the_source(self):
        instance = self.legacy()
        self.compute.migrate_instance(self.ctxt, instance, self.compute2)
        self.assertRecorded(self.LIVE, instance)
        self.compute.revert_migration(self.ctxt, instance)
        self.assertRecorded(self.LIVE, instance)

    def test_live_migration_records_on_the_source(self):
        instance = self.legacy()
        self.compute.live_migrate_instance(self.ctxt, instance, self.compute2)
        self.assertRecorded(self.LIVE, instance)

    def test_shelve_offload_records_before_the_domain_goes(self):
        instance = self.legacy(vm_state=vm_states.SHELVED)
        self.compute.shelve_offload_instance(self.ctxt, instance)
        self.assertEqual([self.LIVE], self.machine_type_rows(instance))
        self.assertIsNone(self.libvirt.get_guest(instance.uuid))

    def test_unshelve_without_domain_resolves_image_property(self):
        instance = self.legacy(
            domain=False, host=None, node=None,
            vm_state=vm_states.SHELVED_OFFLOADED,
            system_metadata={'image_hw_machine_type': 'pc-q35-6.2'})
        self.compute2.unshelve_instance(self.ctxt, instance)
        self.assertRecorded('pc-q35-6.2', instance)

    def test_unshelve_without_domain_resolves_current_default(self):
        instance = self.legacy(domain=False, host=None, node=None,
                               vm_state=vm_states.SHELVED_OFFLOADED)
        self.compute2.unshelve_instance(self.ctxt, instance)
        self.assertRecorded('q35', instance)

    def test_evacuate_without_record_domain_or_image_type_is_refused(self):
        # What the guest ran on its host, down, is unknown: the default
        # here would be a guess, so nothing is done.
        instance = self.legacy(domain=False, vm_state=vm_states.STOPPED)
        err = self.assertRaises(
            exception.MachineTypeUnknownForEvacuation,
            self.compute2.rebuild_instance, self.ctxt, instance, None,
            recreate=True)
        self.assertIn('update_machine_type %s' % instance.uuid,
                      err.format_message())
        self.assertState(self.reload(instance), vm_states.STOPPED,
                         host='compute1')
        self.assertEqual([], self.machine_type_rows(instance))
        self.assertEqual([], self.migration_rows(instance))
        self.assertIsNone(self.domain_machine_type(instance))

    def test_evacuate_without_domain_takes_the_image_type(self):
        # The image's type is what the guest was spawned with.
        instance = self.legacy(
            domain=False, vm_state=vm_states.STOPPED,
            system_metadata={'image_hw_machine_type': 'pc-i440fx-2.11'})
        self.compute2.rebuild_instance(self.ctxt, instance, None,
                                       recreate=True)
        self.assertRecorded('pc-i440fx-2.11', instance, running=False)

    def migration_rows(self, instance):
        with transactions.using(
                self.ctxt, db.get_context_manager(self.ctxt).reader):
            return self.ctxt.session.execute(
                sa.select(db.MIGRATIONS.c.status).where(
                    db.MIGRATIONS.c.instance_uuid == instance.uuid)
            ).scalars().all()

    def test_record_written_meanwhile_wins_over_computed(self):
        instance = self.legacy(domain=False, host=None, node=None,
                               vm_state=vm_states.SHELVED_OFFLOADED)
        # Another recorder (the online data migration) got there first,
        # after this copy of the instance was loaded.
        instance.system_metadata
        db.instance_system_metadata_record(self.ctxt, base.KEY,
                                           {instance.uuid: 'pc-q35-5.2'})
        self.compute2.unshelve_instance(self.ctxt, instance)
        self.assertRecorded('pc-q35-5.2', instance)
