"""Unit tests of the libvirt driver against libvirt's test driver."""

import uuid

import fixtures

from nova.virt.libvirt import config

TEST_URI = 'test:///default'


class GuestFixture(fixtures.Fixture):
    """Define a uniquely named diskless domain; undefine it on cleanup.

    Connections to one libvirt URI share their domains within a process
    (test:///default) or across processes (libvirtd), so each test uses
    its own uuid and name and removes what it defined. ``guest`` is the
    defined Guest and ``uuid`` its uuid.
    """

    def __init__(self, host, virt_type='test', machine_type=None,
                 arch='x86_64'):
        super().__init__()
        self.host = host
        self.uuid = str(uuid.uuid4())
        self.conf = config.LibvirtConfigGuest(
            virt_type=virt_type, name='nova-test-' + self.uuid,
            uuid=self.uuid, arch=arch, machine_type=machine_type)

    def _setUp(self):
        self.guest = self.host.define_guest(self.conf.to_xml())
        self.addCleanup(self._undefine)

    def _undefine(self):
        guest = self.host.get_guest(self.uuid)
        if guest is not None:
            guest.delete_configuration()
