"""Host: connection, capabilities and domains, against test:///default."""

import testtools

from nova import exception
from nova.tests.unit.virt import libvirt as libvirt_fixtures
from nova.virt.libvirt import host as libvirt_host

# Trimmed from a QEMU 7.2 host: aliases with a canonical target, deprecated
# versions, an i686 guest, and a kvm <domain> repeating an arch-level name.
QEMU_CAPABILITIES = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <machine maxCpus='255' deprecated='yes'>pc-i440fx-1.5</machine>
      <machine maxCpus='1'>isapc</machine>
      <domain type='qemu'/>
      <domain type='kvm'>
        <machine maxCpus='288'>pc-q35-7.2</machine>
        <machine maxCpus='288'>pc-q35-6.2</machine>
      </domain>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
    </arch>
  </guest>
</capabilities>"""


class HostCapabilitiesTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.caps = libvirt_host.HostCapabilities.from_xml(QEMU_CAPABILITIES)

    def test_host_arch(self):
        self.assertEqual('x86_64', self.caps.arch)

    def test_machine_types(self):
        MT = libvirt_host.MachineType
        self.assertEqual(
            [MT('pc-i440fx-7.2', None, False),
             MT('pc', 'pc-i440fx-7.2', False),
             MT('pc-q35-7.2', None, False),
             MT('q35', 'pc-q35-7.2', False),
             MT('pc-i440fx-1.5', None, True),
             MT('isapc', None, False),
             MT('pc-q35-6.2', None, False)],
            self.caps.machine_types('x86_64'))

    def test_arches(self):
        self.assertEqual(['i686', 'x86_64'], self.caps.arches())

    def test_arch_aliases(self):
        self.assertEqual(self.caps.machine_types('x86_64'),
                         self.caps.machine_types('amd64'))

    def test_supported_machine_types(self):
        self.assertEqual({'pc', 'pc-i440fx-7.2'},
                         self.caps.supported_machine_types('i686'))
        supported = self.caps.supported_machine_types('x86_64')
        self.assertTrue({'q35', 'pc-q35-7.2', 'pc-q35-6.2',
                         'pc-i440fx-1.5'} <= supported)

    def test_unknown_arch(self):
        self.assertEqual([], self.caps.machine_types('aarch64'))
        self.assertIsNone(self.caps.supported_machine_types('aarch64'))


class HostTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = libvirt_host.Host(libvirt_fixtures.TEST_URI)

    def _define(self, machine_type):
        return self.useFixture(libvirt_fixtures.GuestFixture(
            self.host, machine_type=machine_type))

    def test_connection_is_cached(self):
        self.assertIs(self.host.get_connection(), self.host.get_connection())

    def test_unreachable_uri(self):
        uri = 'qemu+unix:///system?socket=/nonexistent'
        err = self.assertRaises(exception.HypervisorUnavailable,
                                libvirt_host.Host(uri).get_connection)
        self.assertIn(uri, str(err))
        self.assertIn('/nonexistent', str(err).replace(uri, ''))
        self.assertNotIn('\n', str(err))

    def test_test_driver_capabilities(self):
        caps = self.host.get_capabilities()
        self.assertEqual('i686', caps.arch)
        self.assertEqual([], caps.machine_types('i686'))
        self.assertIsNone(caps.supported_machine_types('i686'))
        self.assertIs(caps, self.host.get_capabilities())

    def test_define_and_get_guest(self):
        domain = self._define('pc-q35-7.2')
        guest = self.host.get_guest(domain.uuid)
        self.assertEqual(domain.uuid, guest.uuid)
        self.assertEqual('pc-q35-7.2', guest.get_machine_type())

    def test_redefine_changes_machine_type(self):
        domain = self._define('pc')
        domain.conf.machine_type = 'q35'
        self.host.define_guest(domain.conf.to_xml())
        self.assertEqual('q35',
                         self.host.get_guest(domain.uuid).get_machine_type())

    def test_get_guest_unknown_uuid(self):
        self.assertIsNone(
            self.host.get_guest('00000000-0000-0000-0000-00000000dead'))

    def test_list_guests(self):
        uuids = {self._define('pc').uuid, self._define('q35').uuid}
        listed = {guest.uuid for guest in self.host.list_guests()}
        self.assertTrue(uuids <= listed)

    def test_get_machine_types_by_uuid(self):
        with_type, without = self._define('pc-i440fx-7.2'), self._define(None)
        with_type.guest.launch()
        machine_types = self.host.get_machine_types_by_uuid()
        self.assertEqual('pc-i440fx-7.2', machine_types[with_type.uuid])
        self.assertIn(without.uuid, machine_types)
        self.assertIsNone(machine_types[without.uuid])
