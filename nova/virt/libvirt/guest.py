"""Guest: one libvirt domain, seen the way the driver needs it."""

import xml.etree.ElementTree as ET

import libvirt

from nova.compute import power_state
from nova.objects import fields
from nova.virt.libvirt import config as libvirt_config


def parse_os_type(xml_string):
    """Return (arch, machine type) of a domain XML; either may be None.

    The values are the ``arch`` and ``machine`` attributes of
    ``/domain/os/type``. None is given, never an exception, when the XML
    is malformed, is not a domain or lacks the attribute; a machine type
    that is not syntactically one (empty, or anything we would refuse to
    write ourselves) is None too: callers record it, so only a usable
    value gets out.
    """
    try:
        root = ET.fromstring(xml_string)
    except ET.ParseError:
        return None, None
    type_elem = root.find('./os/type') if root.tag == 'domain' else None
    if type_elem is None:
        return None, None
    machine_type = type_elem.get('machine')
    return (type_elem.get('arch'),
            machine_type if fields.is_valid_machine_type(machine_type)
            else None)


def parse_machine_type(xml_string):
    """Return the machine type of a domain XML, or None (see parse_os_type).
    """
    return parse_os_type(xml_string)[1]


# libvirt's domain states as Nova's power states.
_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: power_state.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: power_state.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: power_state.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: power_state.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: power_state.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: power_state.SUSPENDED,
}


def parse_owner_host(xml_string):
    """Return the host that defined a domain, from its XML, or None.

    None for a domain without nova's metadata: one defined before nova
    wrote it, or by something else than nova.
    """
    try:
        root = ET.fromstring(xml_string)
    except ET.ParseError:
        return None
    host = root.find('./metadata/{%s}instance/{%s}host'
                     % (libvirt_config.NOVA_NS, libvirt_config.NOVA_NS))
    return host.text if host is not None else None


class Guest:
    """Wraps a ``virDomain``; libvirt errors propagate as libvirtError."""

    def __init__(self, domain):
        self._domain = domain

    @property
    def uuid(self):
        """The domain's uuid as a string (the instance uuid)."""
        return self._domain.UUIDString()

    @property
    def name(self):
        """The domain's name."""
        return self._domain.name()

    def get_xml_desc(self):
        """Return the domain XML as libvirt currently describes it."""
        return self._domain.XMLDesc(0)

    def get_machine_type(self):
        """Return the machine type libvirt reports (versioned on QEMU) or None.

        QEMU/KVM resolve an alias such as ``q35`` to the versioned type
        (``pc-q35-7.2``) when the domain is defined, so this is the value
        that pins the guest's chipset version.
        """
        return parse_machine_type(self.get_xml_desc())

    def get_os_type(self):
        """Return (arch, machine type) of the domain, from one XML read."""
        return parse_os_type(self.get_xml_desc())

    def get_owner_host(self):
        """Return the host that defined the domain (nova's metadata), or
        None."""
        return parse_owner_host(self.get_xml_desc())

    def get_power_state(self):
        """The domain's state as one of nova's power states."""
        return _POWER_STATES.get(self._domain.state()[0], power_state.NOSTATE)

    def is_active(self):
        """True if the domain is running (or paused), False if shut off."""
        return bool(self._domain.isActive())

    def launch(self):
        """Start the domain unless it already runs."""
        if not self.is_active():
            self._domain.create()

    def poweroff(self):
        """Stop the domain at once (no guest shutdown) if it runs."""
        if self.is_active():
            self._domain.destroy()

    def pause(self):
        """Suspend the running domain's vCPUs."""
        self._domain.suspend()

    def resume(self):
        """Resume a paused domain."""
        self._domain.resume()

    def save_memory_state(self):
        """Save the running domain's memory to disk and stop it (suspend).

        The next ``launch`` restores the saved state (libvirt's managed
        save), so the guest continues where it was.
        """
        self._domain.managedSave(0)

    def delete_configuration(self):
        """Remove the domain from libvirt, stopping it first if it runs.

        A suspended domain's saved memory goes with it: libvirt refuses to
        undefine a domain that still has a managed save image.
        """
        self.poweroff()
        self._domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
