"""Host: the libvirt connection of one compute host and what it reports."""

import collections
import logging
import threading
import xml.etree.ElementTree as ET

import libvirt

from nova import exception
from nova.objects import fields
from nova.virt.libvirt import guest as libvirt_guest

LOG = logging.getLogger(__name__)

MachineType = collections.namedtuple(
    'MachineType', ['name', 'canonical', 'deprecated'])
MachineType.__doc__ = """A machine type the host offers for a guest arch.

``canonical`` is the versioned type an alias resolves to (None for a
versioned name); ``deprecated`` is True when QEMU marks it deprecated.
"""


def _canonical_arch(name):
    """Nova's name for a libvirt arch name, or the name itself if unknown."""
    return fields.Architecture.canonicalize(name) or name


def _one_line(text):
    """Collapse whitespace so that an error message stays on one line."""
    return ' '.join(str(text).split())


class HostCapabilities:
    """The parts of libvirt's capabilities XML the driver uses."""

    def __init__(self, arch, machine_types_by_arch):
        self.arch = arch
        self._machine_types = machine_types_by_arch

    @classmethod
    def from_xml(cls, xml_string):
        """Parse ``virConnectGetCapabilities()`` output.

        Machine types are gathered per guest arch from ``<arch>`` and its
        ``<domain>`` children (kvm may list its own), in document order; a
        name listed twice keeps its first entry.
        """
        root = ET.fromstring(xml_string)
        machine_types = {}
        for arch_elem in root.iterfind('./guest/arch'):
            arch = _canonical_arch(arch_elem.get('name'))
            by_name = machine_types.setdefault(arch, {})
            for elem in arch_elem.iterfind('.//machine'):
                name = (elem.text or '').strip()
                if name:
                    by_name.setdefault(name, MachineType(
                        name, elem.get('canonical'),
                        elem.get('deprecated') == 'yes'))
        host_arch = root.findtext('./host/cpu/arch')
        return cls(_canonical_arch(host_arch),
                   {arch: list(by_name.values())
                    for arch, by_name in machine_types.items()})

    def arches(self):
        """Return the guest arches the host lists machine types for."""
        return sorted(self._machine_types)

    def machine_types(self, arch):
        """Return the list of MachineType for a guest arch ([] if none)."""
        return list(self._machine_types.get(_canonical_arch(arch), []))

    def supported_machine_types(self, arch):
        """Return every name usable for a guest arch, or None if unknown.

        The set holds versioned names and aliases. None means the host
        lists no machine types for the arch (libvirt's test driver lists
        none), so support cannot and should not be enforced.
        """
        machine_types = self.machine_types(arch)
        if not machine_types:
            return None
        names = {mt.name for mt in machine_types}
        return names | {mt.canonical for mt in machine_types if mt.canonical}

    def canonical_machine_type(self, name, arch=None):
        """The versioned type QEMU runs for the alias ``name``, or None.

        Looked up for ``arch``, then for the host's own arch (libvirt's
        test driver writes every domain as i686). None for a versioned
        name, or one the host does not list.
        """
        for candidate in (arch, self.arch):
            for machine_type in self.machine_types(candidate or ''):
                if machine_type.name == name:
                    return machine_type.canonical
        return None


class Host:
    """One libvirt connection, opened on first use and then reused."""

    def __init__(self, uri):
        self.uri = uri
        self._conn = None
        self._caps = None
        self._lock = threading.Lock()

    def _open_connection(self):
        """Open the URI; raises HypervisorUnavailable on failure.

        libvirt prints every error to stderr unless a handler is set; the
        handler silences that, since errors reach us as exceptions anyway.
        """
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            return libvirt.open(self.uri)
        except libvirt.libvirtError as err:
            raise exception.HypervisorUnavailable(
                uri=self.uri, reason=_one_line(err.get_error_message() or err))

    def get_connection(self):
        """Return the cached ``virConnect``, (re)opening it when needed.

        A connection that libvirt reports dead (libvirtd restarted) is
        replaced. Raises HypervisorUnavailable when libvirt is unreachable.
        """
        with self._lock:
            if self._conn is None or not self._conn.isAlive():
                self._conn = self._open_connection()
            return self._conn

    def get_capabilities(self):
        """Return the host's HostCapabilities, read once per Host."""
        if self._caps is None:
            self._caps = HostCapabilities.from_xml(
                self.get_connection().getCapabilities())
        return self._caps

    def get_guest(self, instance_uuid):
        """Return the Guest whose uuid is instance_uuid, or None if none."""
        try:
            domain = self.get_connection().lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        return libvirt_guest.Guest(domain)

    def list_guests(self):
        """Return a Guest for every domain, active or not, from one listing."""
        return [libvirt_guest.Guest(domain)
                for domain in self.get_connection().listAllDomains(0)]

    def define_guest(self, xml):
        """Define (or redefine) a domain from its XML; return its Guest."""
        return libvirt_guest.Guest(self.get_connection().defineXML(xml))

    def get_machine_type(self, guest, arch=None):
        """The machine type ``guest`` runs, as QEMU names it, or None.

        What its XML says; QEMU/KVM already write the versioned type there
        for an alias. A libvirt that keeps the alias (the test driver) is
        answered with the versioned type the host's capabilities give for
        it, which is what QEMU runs, so callers always see one kind.
        ``arch``: the guest's, when the caller knows it better than the
        XML (see canonical_machine_type).
        """
        xml_arch, machine_type = guest.get_os_type()
        return (self.get_capabilities().canonical_machine_type(
            machine_type, arch or xml_arch) or machine_type)

    def get_machine_types_by_uuid(self, unreadable=None, running=None):
        """Return {uuid: machine type or None} for every domain on the host.

        One listing, then one XML description per domain. A domain removed
        between the two is left out rather than failing the whole scan;
        so is one whose read fails for another reason, which is logged
        with the instance and the error, and added to ``unreadable``
        ({uuid: error}) when given: one bad domain must not stop
        nova-compute from starting. The uuids of the running domains are
        added to ``running`` (a set) when given.
        """
        machine_types = {}
        for guest in self.list_guests():
            uuid = guest.uuid
            try:
                machine_types[uuid] = self.get_machine_type(guest)
                if running is not None and guest.is_active():
                    running.add(uuid)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                LOG.error('Cannot read the domain of instance %s: %s', uuid,
                          _one_line(err.get_error_message() or err))
                if unreadable is not None:
                    unreadable[uuid] = _one_line(err)
        return machine_types
