"""Libvirt domain XML for a guest.

The XML is built with ElementTree, never by string formatting, so a name or
uuid is always escaped, and the machine type is checked against the machine
type syntax before it is written: nothing a user chose can alter the markup.
"""

import xml.etree.ElementTree as ET

from nova import exception
from nova.objects import fields

# libvirt's test driver (test:///default) only defines guests of
# architecture i686 with os type hvm and refuses any other arch, yet it
# keeps the machine attribute as given. Unit tests therefore use i686 in
# the XML while the machine type under test is written unchanged.
TEST_DRIVER_ARCH = fields.Architecture.I686

# Nova's namespace for its own data in a domain's <metadata>. The host
# that defined the domain is kept there, so that a host's start-up can tell
# a stale domain of its own (an instance evacuated or reverted away) from
# one another host defined (guest.parse_owner_host).
NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
ET.register_namespace('nova', NOVA_NS)


class LibvirtConfigGuest:
    """The configuration of one diskless guest domain."""

    def __init__(self, virt_type='kvm', name=None, uuid=None, arch=None,
                 machine_type=None, memory_mib=64, vcpus=1, os_type='hvm',
                 owner_host=None):
        self.virt_type = virt_type
        self.name = name
        self.uuid = uuid
        self.arch = arch
        self.machine_type = machine_type
        self.memory_mib = memory_mib
        self.vcpus = vcpus
        self.os_type = os_type
        self.owner_host = owner_host

    def _check_machine_type(self):
        """Refuse a machine type that is not syntactically one.

        Raises InvalidMachineType naming the value (as repr, so an empty or
        multi-line value stays visible on one line) and the guest's uuid.
        """
        if (self.machine_type is not None
                and not fields.is_valid_machine_type(self.machine_type)):
            raise exception.InvalidMachineType(
                mtype=repr(self.machine_type), instance_uuid=self.uuid,
                reason="a machine type is letters, digits, '.', '_' and '-', "
                       "at most %d characters" % fields.MACHINE_TYPE_MAX_LEN)

    def _xml_arch(self):
        """The arch to write: the test driver's only arch, or our own."""
        return TEST_DRIVER_ARCH if self.virt_type == 'test' else self.arch

    def _os_element(self):
        """Return ``<os><type arch=.. machine=..>hvm</type></os>``.

        An attribute whose value is None is omitted, so libvirt picks its
        default for it.
        """
        os_elem = ET.Element('os')
        type_elem = ET.SubElement(os_elem, 'type')
        type_elem.text = self.os_type
        for attr, value in (('arch', self._xml_arch()),
                            ('machine', self.machine_type)):
            if value is not None:
                type_elem.set(attr, value)
        return os_elem

    def _metadata_element(self):
        """Return ``<metadata><nova:instance><nova:host>``: who defined it."""
        metadata = ET.Element('metadata')
        instance = ET.SubElement(metadata, '{%s}instance' % NOVA_NS)
        ET.SubElement(instance, '{%s}host' % NOVA_NS).text = self.owner_host
        return metadata

    def to_element(self):
        """Return the ``<domain>`` element; raises InvalidMachineType."""
        self._check_machine_type()
        domain = ET.Element('domain', type=self.virt_type)
        ET.SubElement(domain, 'name').text = self.name
        ET.SubElement(domain, 'uuid').text = self.uuid
        ET.SubElement(domain, 'memory', unit='MiB').text = str(
            int(self.memory_mib))
        ET.SubElement(domain, 'vcpu').text = str(int(self.vcpus))
        if self.owner_host is not None:
            domain.append(self._metadata_element())
        domain.append(self._os_element())
        return domain

    def to_xml(self):
        """Return the domain XML as a string; raises InvalidMachineType."""
        return ET.tostring(self.to_element(), encoding='unicode')
