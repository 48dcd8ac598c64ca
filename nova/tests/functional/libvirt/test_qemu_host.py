"""The libvirt driver's Host and Guest against a real libvirtd with QEMU.

Needs libvirtd at qemu:///system (tools/test-setup.sh starts it). Without
it the tests skip, except in CI (CI=true), where a missing service fails.
"""

import os
import re

import testtools

from nova import exception
from nova.tests.unit.virt import libvirt as libvirt_fixtures
from nova.virt.libvirt import host as libvirt_host

URI = 'qemu:///system'
VIRT_TYPE = 'kvm' if os.path.exists('/dev/kvm') else 'qemu'
VERSIONED_Q35 = re.compile(r'^pc-q35-\d+\.\d+$')
VERSIONED_I440FX = re.compile(r'^pc-i440fx-\d+\.\d+$')


class QemuHostTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = libvirt_host.Host(URI)
        try:
            self.host.get_connection()
        except exception.HypervisorUnavailable as err:
            if os.environ.get('CI') == 'true':
                self.fail(str(err))
            self.skipTest('libvirtd not available: %s' % err)

    def _define(self, machine_type):
        return self.useFixture(libvirt_fixtures.GuestFixture(
            self.host, virt_type=VIRT_TYPE, machine_type=machine_type,
            arch='x86_64')).guest

    def test_q35_alias_resolves_to_versioned(self):
        self.assertRegex(self._define('q35').get_machine_type(),
                         VERSIONED_Q35)

    def test_pc_alias_resolves_to_versioned(self):
        self.assertRegex(self._define('pc').get_machine_type(),
                         VERSIONED_I440FX)

    def test_versioned_type_kept(self):
        versioned = self._define('q35').get_machine_type()
        self.assertEqual(versioned, self._define(versioned).get_machine_type())

    def test_launch_and_poweroff(self):
        guest = self._define('q35')
        guest.launch()
        self.assertTrue(guest.is_active())
        guest.poweroff()
        self.assertFalse(guest.is_active())

    def test_machine_types_by_uuid(self):
        guest = self._define('pc')
        self.assertRegex(self.host.get_machine_types_by_uuid()[guest.uuid],
                         VERSIONED_I440FX)

    def test_capabilities(self):
        caps = self.host.get_capabilities()
        by_name = {mt.name: mt for mt in caps.machine_types('x86_64')}
        self.assertRegex(by_name['q35'].canonical, VERSIONED_Q35)
        supported = caps.supported_machine_types('x86_64')
        self.assertIn('q35', supported)
        self.assertIn(by_name['q35'].canonical, supported)
        self.assertTrue(any(VERSIONED_Q35.match(name) for name in supported))
