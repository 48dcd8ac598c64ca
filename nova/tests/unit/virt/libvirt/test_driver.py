"""LibvirtDriver against libvirt's test driver, without a database."""

import uuid

from nova import exception
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit import compute as compute_fixtures
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host


class DriverTestBase(nova_fixtures.TestCase):

    DATABASE = None

    def setUp(self):
        super().setUp()
        self.driver = libvirt_driver.LibvirtDriver('compute1')
        self.host = libvirt_host.Host('test:///default')

    def instance(self, **sysmeta):
        """An instance object (never saved) whose domain goes at cleanup."""
        instance = objects.Instance(None, uuid=str(uuid.uuid4()),
                                    architecture='x86_64',
                                    system_metadata=sysmeta)
        self.addCleanup(self.driver.destroy, instance)
        return instance


class LibvirtDriverTestCase(DriverTestBase):

    def test_spawn_defines_named_domain_and_reports_machine_type(self):
        instance = self.instance()
        image = objects.ImageMeta.from_dict(
            {'properties': {'hw_machine_type': 'q35'}})
        self.assertEqual('q35', self.driver.spawn(None, instance, image))
        guest = self.host.get_guest(instance.uuid)
        self.assertEqual('instance-' + instance.uuid, guest.name)
        self.assertTrue(guest.is_active())
        self.assertIn("type='test'", guest.get_xml_desc())

    def test_record_wins_over_image_on_spawn(self):
        instance = self.instance(hw_machine_type='pc-i440fx-2.11')
        image = objects.ImageMeta.from_dict(
            {'properties': {'hw_machine_type': 'q35'}})
        self.assertEqual('pc-i440fx-2.11',
                         self.driver.spawn(None, instance, image))

    def test_machine_types_by_uuid_from_one_listing(self):
        first, second = self.instance(), self.instance(hw_machine_type='q35')
        self.driver.spawn(None, first, first.image_meta)
        self.driver.power_on(second)
        machine_types = self.driver.get_instance_machine_types()
        self.assertEqual('pc', machine_types[first.uuid])
        self.assertEqual('q35', machine_types[second.uuid])
        self.assertEqual('q35', self.driver.get_instance_machine_type(second))

    def test_no_domain(self):
        instance = self.instance()
        self.assertIsNone(self.driver.get_instance_machine_type(instance))
        self.driver.power_off(instance)
        self.driver.destroy(instance)
        self.assertRaises(exception.InstanceDomainNotFound,
                          self.driver.pause, instance)

    def test_destroy_suspended_domain(self):
        instance = self.instance()
        self.driver.spawn(None, instance, instance.image_meta)
        self.driver.suspend(instance)
        self.driver.destroy(instance)
        self.assertIsNone(self.host.get_guest(instance.uuid))

    def test_test_driver_host_checks_nothing(self):
        self.assertEqual([], self.driver.get_host_machine_types())
        self.driver.check_machine_type_supported(
            self.instance(hw_machine_type='anything-goes'))


class MachineTypeSupportTestCase(DriverTestBase):
    """With the capabilities of a QEMU 7.2 host."""

    def setUp(self):
        super().setUp()
        self.useFixture(compute_fixtures.QemuCapabilities(self.driver))

    def test_host_machine_types(self):
        machine_types = self.driver.get_host_machine_types()
        self.assertIn({'arch': 'x86_64', 'name': 'q35',
                       'canonical': 'pc-q35-7.2', 'deprecated': False},
                      machine_types)
        self.assertIn({'arch': 'i686', 'name': 'pc-i440fx-7.2',
                       'canonical': None, 'deprecated': False},
                      machine_types)

    def test_supported(self):
        for machine_type in ('q35', 'pc-q35-7.2', 'pc', 'pc-i440fx-1.5'):
            self.driver.check_machine_type_supported(
                self.instance(hw_machine_type=machine_type))

    def test_unsupported_names_type_host_and_arch(self):
        err = self.assertRaises(
            exception.UnsupportedMachineType,
            self.driver.check_machine_type_supported,
            self.instance(hw_machine_type='pc-q35-1.0'))
        self.assertEqual('Machine type pc-q35-1.0 is not supported by host '
                         'compute1 (architecture x86_64).', str(err))

    def test_arch_the_host_does_not_list_is_not_checked(self):
        instance = self.instance(hw_machine_type='virt-7.2')
        instance.architecture = 'aarch64'
        self.driver.check_machine_type_supported(instance)

    def test_refused_before_the_domain_is_touched(self):
        instance = self.instance(hw_machine_type='q35')
        self.driver.power_on(instance)
        instance.system_metadata['hw_machine_type'] = 'pc-q35-1.0'
        self.assertRaises(exception.UnsupportedMachineType,
                          self.driver.power_on, instance)
        guest = self.host.get_guest(instance.uuid)
        self.assertTrue(guest.is_active())
        self.assertEqual('q35', guest.get_machine_type())
