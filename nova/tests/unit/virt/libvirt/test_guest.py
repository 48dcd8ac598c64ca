"""Guest and parse_machine_type against libvirt's test driver."""

import testtools

from nova.tests.unit.virt import libvirt as libvirt_fixtures
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import host as libvirt_host


class ParseMachineTypeTestCase(testtools.TestCase):

    def test_versioned(self):
        self.assertEqual('pc-i440fx-7.2', libvirt_guest.parse_machine_type(
            "<domain><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm"
            "</type></os></domain>"))

    def test_odd_input_gives_none(self):
        for xml in ('', 'not xml', '<domain><os>', '<domain/>',
                    '<domain><os><type>hvm</type></os></domain>',
                    "<domain><os><type machine=''>hvm</type></os></domain>",
                    "<domain><os><type machine='a b'>hvm</type></os>"
                    "</domain>",
                    "<network><os><type machine='pc'>hvm</type></os>"
                    "</network>"):
            self.assertIsNone(libvirt_guest.parse_machine_type(xml), xml)


class GuestTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = libvirt_host.Host(libvirt_fixtures.TEST_URI)

    def _define(self, machine_type='pc-q35-7.2'):
        return self.useFixture(libvirt_fixtures.GuestFixture(
            self.host, machine_type=machine_type))

    def test_identity(self):
        domain = self._define()
        self.assertEqual(domain.uuid, domain.guest.uuid)
        self.assertEqual('nova-test-' + domain.uuid, domain.guest.name)
        self.assertIn(domain.uuid, domain.guest.get_xml_desc())

    def test_get_machine_type_is_exactly_what_was_defined(self):
        for machine_type in ('q35', 'pc-q35-7.2', 'pc-i440fx-rhel7.6.0'):
            guest = self._define(machine_type).guest
            self.assertEqual(machine_type, guest.get_machine_type())

    def test_get_machine_type_none_when_not_set(self):
        self.assertIsNone(self._define(machine_type=None).guest
                          .get_machine_type())

    def test_lifecycle(self):
        guest = self._define().guest
        self.assertFalse(guest.is_active())
        guest.poweroff()  # not running: nothing to do
        guest.launch()
        self.assertTrue(guest.is_active())
        guest.launch()  # already running: nothing to do
        guest.pause()
        self.assertTrue(guest.is_active())
        guest.resume()
        guest.poweroff()
        self.assertFalse(guest.is_active())

    def test_delete_configuration_of_running_guest(self):
        domain = self._define()
        domain.guest.launch()
        domain.guest.delete_configuration()
        self.assertIsNone(self.host.get_guest(domain.uuid))
