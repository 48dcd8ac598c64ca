"""Build and delete: what spawn records, how a failed build is left."""

from nova.compute import power_state
from nova.compute import vm_states
from nova.db.main import api as db
from nova import exception
from nova import objects
from nova.tests.unit import compute as base

KEY = base.KEY


class BuildTestCase(base.ComputeTestCase):

    def test_records_machine_type_of_image(self):
        instance = self.build({'hw_machine_type': 'q35'})
        saved = self.reload(instance)
        # The test driver reports the machine type as it was defined;
        # QEMU would report the versioned type (functional tier).
        self.assertEqual('q35', saved.system_metadata[KEY])
        self.assertEqual('q35', saved.system_metadata['image_hw_machine_type'])
        self.assertDomainMachineType('q35', instance)
        self.assertTrue(self.domain_is_running(instance))

    def test_ends_active_on_this_host(self):
        instance = self.build()
        saved = self.reload(instance)
        self.assertEqual(
            (vm_states.ACTIVE, None, power_state.RUNNING, 'compute1',
             'compute1'),
            (saved.vm_state, saved.task_state, saved.power_state, saved.host,
             saved.node))
        self.assertIsNotNone(saved.launched_at)

    def test_records_configured_default(self):
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        instance = self.build()
        self.assertEqual('q35', self.recorded(instance))
        self.assertDomainMachineType('q35', instance)

    def test_records_built_in_default(self):
        self.assertEqual('pc', self.recorded(self.build()))

    def test_image_architecture_picks_the_default(self):
        instance = self.build({'hw_architecture': 'aarch64'})
        self.assertEqual('virt', self.recorded(instance))

    def test_image_properties_copied_to_system_metadata(self):
        instance = self.build({'hw_machine_type': 'q35',
                               'hw_architecture': 'x86_64',
                               'hw_disk_bus': 'virtio'})
        sysmeta = self.reload(instance).system_metadata
        self.assertEqual(
            {'image_hw_machine_type': 'q35', 'image_hw_architecture': 'x86_64',
             'image_hw_disk_bus': 'virtio', KEY: 'q35'}, sysmeta)

    def test_recorded_in_the_save_that_makes_it_active(self):
        instance = self.create_instance()
        sql = self.useFixture(base.SQLRecorder())
        self.compute.build_and_run_instance(self.ctxt, instance,
                                            self.image(hw_machine_type='q35'))
        records = sql.find('INSERT INTO instance_system_metadata', KEY)
        activations = sql.find('UPDATE instances', vm_states.ACTIVE)
        self.assertEqual(1, len(records), sql.events)
        self.assertEqual(1, len(activations), sql.events)
        first, last = sorted(records + activations)
        self.assertNotIn('COMMIT', sql.events[first:last])


class FailedBuildTestCase(base.ComputeTestCase):

    def assertFailedWithoutRecord(self, instance, *fault_words):
        saved = self.reload(instance)
        self.assertEqual((vm_states.ERROR, None, None, None),
                         (saved.vm_state, saved.task_state, saved.host,
                          saved.node))
        self.assertNotIn(KEY, saved.system_metadata)
        self.assertEqual([], self.machine_type_rows(instance))
        self.assertIsNone(self.libvirt.get_guest(instance.uuid))
        fault = db.instance_fault_get_latest(self.ctxt, instance.uuid)
        self.assertEqual('compute1', fault['host'])
        for word in fault_words:
            self.assertIn(word, fault['message'])
        return saved

    def test_unsupported_machine_type(self):
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        instance = self.build({'hw_machine_type': 'pc-q35-1.0'})
        saved = self.assertFailedWithoutRecord(instance, 'pc-q35-1.0',
                                               'compute1')
        # The image's wish is kept: it says what was asked for.
        self.assertEqual('pc-q35-1.0',
                         saved.system_metadata['image_hw_machine_type'])

    def test_unsupported_configured_default(self):
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        self.flags(hw_machine_type=['x86_64=bogus-machine'], group='libvirt')
        self.assertFailedWithoutRecord(self.build(), 'bogus-machine',
                                       'compute1')

    def test_supported_alias_and_versioned_types_build(self):
        # On a QEMU 7.2 host the alias runs, and is recorded, as its
        # versioned type; a versioned type is recorded as it is.
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        for machine_type, recorded in (('q35', 'pc-q35-7.2'),
                                       ('pc-q35-7.2', 'pc-q35-7.2'),
                                       ('pc-q35-6.2', 'pc-q35-6.2')):
            instance = self.build({'hw_machine_type': machine_type})
            self.assertEqual(recorded, self.recorded(instance))

    def test_invalid_machine_type(self):
        instance = self.build({'hw_machine_type': 'pc q35'})
        self.assertFailedWithoutRecord(instance, "'pc q35'", instance.uuid)

    def test_failure_is_not_raised_to_the_caller(self):
        # Nova's build is an RPC cast: the outcome is the instance state.
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        instance = self.create_instance()
        self.assertIsNone(self.compute.build_and_run_instance(
            self.ctxt, instance, self.image(hw_machine_type='bogus')))
        self.assertEqual(vm_states.ERROR, instance.vm_state)


class DeleteTestCase(base.ComputeTestCase):

    def test_record_soft_deleted_with_the_instance(self):
        instance = self.build({'hw_machine_type': 'q35'})
        self.compute.terminate_instance(self.ctxt, instance)
        self.assertIsNone(self.libvirt.get_guest(instance.uuid))
        self.assertRaises(exception.InstanceNotFound,
                          objects.Instance.get_by_uuid, self.ctxt,
                          instance.uuid)
        self.assertEqual([], self.machine_type_rows(instance))
        self.assertEqual(vm_states.DELETED, instance.vm_state)
        self.assertEqual(instance.id, instance.deleted)
