"""The machine type lifecycle on a real libvirtd with QEMU.

Needs libvirtd at qemu:///system (tools/test-setup.sh starts it); domain
type kvm where /dev/kvm exists, else qemu. Without libvirtd the tests
skip, except in CI (CI=true), where they fail. The guests are diskless:
defining, starting and reading back their XML is all that is needed.
SQLite holds the databases here (MariaDB and PostgreSQL are covered by
the db tests), except for the spawn and init_host variants at the end.
"""

import os
import re

from nova.compute import vm_states
from nova.db.main import api as db
from nova import exception
from nova import objects
from nova.objects import instance as objects_instance
from nova.objects import service as service_obj
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit import compute as base
from nova.virt.libvirt import host as libvirt_host

URI = 'qemu:///system'
VIRT_TYPE = 'kvm' if os.path.exists('/dev/kvm') else 'qemu'
VERSIONED_Q35 = re.compile(r'^pc-q35-\d+\.\d+$')
VERSIONED_I440FX = re.compile(r'^pc-i440fx-\d+\.\d+$')


class QemuTestCase(base.ComputeTestCase):

    DATABASE = 'sqlite'

    def configure_libvirt(self):
        self.flags(connection_uri=URI, virt_type=VIRT_TYPE, group='libvirt')
        try:
            libvirt_host.Host(URI).get_connection()
        except exception.HypervisorUnavailable as err:
            nova_fixtures.unavailable(self, 'libvirtd (%s)' % err)


class QemuSpawnInitHostTestCase(QemuTestCase):
    """Where records come from; also run on MariaDB and PostgreSQL."""

    def test_spawn_records_the_versioned_type_qemu_reports(self):
        instance = self.build({'hw_machine_type': 'q35'})
        saved = self.reload(instance)
        self.assertEqual(vm_states.ACTIVE, saved.vm_state)
        self.assertRegex(saved.system_metadata[base.KEY], VERSIONED_Q35)
        self.assertEqual('q35', saved.system_metadata['image_hw_machine_type'])
        self.assertDomainMachineType(saved.system_metadata[base.KEY],
                                     instance)
        self.assertTrue(self.domain_is_running(instance))

    def test_init_host_records_legacy_domains_with_versioned_type(self):
        running = self.create_instance(host='compute1', node='compute1',
                                       vm_state=vm_states.ACTIVE)
        stopped = self.create_instance(host='compute1', node='compute1',
                                       vm_state=vm_states.STOPPED)
        self.define_domain(running, 'pc', start=True)
        self.define_domain(stopped, 'pc')
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        self.compute.init_host()
        for instance in (running, stopped):
            recorded = self.recorded(instance)
            self.assertRegex(recorded, VERSIONED_I440FX)
            self.assertEqual(self.domain_machine_type(instance), recorded)
            self.assertEqual([recorded], self.machine_type_rows(instance))

    def test_init_host_records_the_host_machine_types(self):
        self.compute.init_host()
        rows = {(r['arch'], r['name']): r
                for r in db.host_machine_types_get(self.ctxt, 'compute1')}
        self.assertRegex(rows[('x86_64', 'q35')]['canonical'], VERSIONED_Q35)
        self.assertIn(('x86_64', rows[('x86_64', 'q35')]['canonical']), rows)


class QemuRedefineTestCase(QemuTestCase):
    """After the spawn: the record, not the configuration, decides."""

    def test_hard_reboot_after_default_change_keeps_versioned_q35(self):
        instance = self.build({'hw_machine_type': 'q35'})
        versioned = self.recorded(instance)
        self.flags(hw_machine_type=['x86_64=pc'], group='libvirt')
        self.compute.reboot_instance(self.ctxt, instance, 'HARD')
        self.assertTrue(self.domain_is_running(instance))
        # The live domain's XML, as QEMU runs it now.
        self.assertDomainMachineType(versioned, instance)
        self.assertEqual([versioned], self.machine_type_rows(instance))

    def test_rebuild_takes_the_new_default(self):
        instance = self.build({'hw_machine_type': 'q35'})
        self.flags(hw_machine_type=['x86_64=pc'], group='libvirt')
        self.compute.rebuild_instance(self.ctxt, instance, self.image())
        self.assertRegex(self.recorded(instance), VERSIONED_I440FX)
        self.assertDomainMachineType(self.recorded(instance), instance)


class QemuUnsupportedMachineTypeTestCase(QemuTestCase):

    def test_unsupported_machine_type_fails_the_build(self):
        for machine_type in ('pc-q35-1.0', 'bogus-machine'):
            instance = self.build({'hw_machine_type': machine_type})
            saved = self.reload(instance)
            self.assertEqual((vm_states.ERROR, None),
                             (saved.vm_state, saved.host), machine_type)
            self.assertNotIn(base.KEY, saved.system_metadata)
            self.assertEqual([], self.machine_type_rows(instance))
            self.assertIsNone(self.libvirt.get_guest(instance.uuid))
            fault = db.instance_fault_get_latest(self.ctxt, instance.uuid)
            self.assertIn(machine_type, fault['message'])
            self.assertIn('compute1', fault['message'])


globals().update(nova_fixtures.backend_variants(QemuSpawnInitHostTestCase))


class QemuPinningTestCase(QemuTestCase):
    """An alias recorded without a domain is pinned at its first definition.
    """

    def test_offloaded_q35_unshelved_then_hard_rebooted(self):
        instance = self.create_instance(
            vm_state=vm_states.SHELVED_OFFLOADED,
            system_metadata={'image_hw_machine_type': 'q35'})
        found, done = objects_instance.populate_missing_machine_types(
            self.ctxt, 50)
        self.assertEqual((1, 1), (found, done))
        self.assertEqual(['q35'], self.machine_type_rows(instance))
        instance = self.reload(instance)
        self.compute.unshelve_instance(self.ctxt, instance)
        pinned = self.recorded(instance)
        self.assertRegex(pinned, VERSIONED_Q35)
        self.assertDomainMachineType(pinned, instance)
        self.flags(hw_machine_type=['x86_64=pc'], group='libvirt')
        self.compute.reboot_instance(self.ctxt, instance, 'HARD')
        self.assertEqual([pinned], self.machine_type_rows(instance))
        self.assertDomainMachineType(pinned, instance)


class QemuStartUpTestCase(QemuTestCase):
    """Start-up on a real libvirtd: a vanishing domain, drift."""

    def test_domain_undefined_between_listing_and_read(self):
        gone, kept = self.legacy_instances('pc', count=2)
        host = self.compute.driver._host
        list_guests = host.list_guests

        def list_then_undefine():
            guests = list_guests()
            self.undefine_domain(gone.uuid)
            return guests

        host.list_guests = list_then_undefine
        self.compute.init_host()
        self.assertRegex(self.recorded(kept), VERSIONED_I440FX)
        # Without a domain, it is recorded by resolution.
        self.assertEqual(['pc'], self.machine_type_rows(gone))
        # nova-compute started: it registered at the recording version.
        self.assertEqual(
            [('compute1', service_obj.SERVICE_VERSION)],
            [(s.host, s.version) for s in objects.ServiceList.get_by_binary(
                self.ctxt, 'nova-compute')])

    def test_domain_redefined_behind_our_back_is_drift(self):
        instance = self.build({'hw_machine_type': 'q35'})
        recorded = self.recorded(instance)
        self.compute.stop_instance(self.ctxt, instance)
        # Redefined by hand and started: the guest runs pc.
        self.define_domain(instance, 'pc', start=True)
        restarted = self.compute.__class__('compute1')
        restarted.init_host()
        [drift] = db.machine_type_drift_get_all(self.ctxt)
        self.assertEqual(('compute1', instance.uuid, recorded),
                         (drift['host'], drift['instance_uuid'],
                          drift['recorded']))
        self.assertRegex(drift['running'], VERSIONED_I440FX)
        self.assertEqual(drift['running'],
                         self.domain_machine_type(instance))
        self.assertEqual([recorded], self.machine_type_rows(instance))
