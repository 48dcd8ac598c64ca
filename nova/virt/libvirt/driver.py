"""LibvirtDriver: what the compute manager asks of libvirt for an instance.

The driver decides which domain to define, start or remove, and when. It
builds no XML (``config.py`` does), opens no connection (``host.py`` does)
and never writes to the database (the compute manager records). Which
machine type a domain gets is decided by ``utils.get_machine_type`` alone,
which puts the recorded value first: every (re)definition goes through
``_create_domain``, so once an instance has a record its domains always use
it, whatever the configuration says now.

Several hosts in one process
----------------------------
Every connection of a process to libvirt's test driver (``test:///default``)
sees the same domains, so ComputeManagers for several hosts in one test
process share them. Moves are written to be right both there and on real,
separate hosts: the source undefines its domain before the destination
defines one (cold and live migration, revert), and defining a domain whose
uuid already exists redefines it in place (evacuate, whose source host is
down and keeps its stale domain until it comes back).
"""

import logging

import libvirt

from nova.compute import power_state
import nova.conf
from nova import exception
from nova.virt.libvirt import config as libvirt_config
from nova.virt.libvirt import host as libvirt_host
from nova import machine_type as resolution

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

DOMAIN_NAME_PREFIX = 'instance-'


def domain_name(instance):
    """The libvirt domain name of an instance: ``instance-<uuid>``."""
    return DOMAIN_NAME_PREFIX + instance.uuid


class LibvirtDriver:
    """The libvirt side of one compute host named ``host_name``."""

    def __init__(self, host_name, uri=None):
        self.host_name = host_name
        self._host = libvirt_host.Host(uri or CONF.libvirt.connection_uri)

    @property
    def uri(self):
        """The libvirt URI this driver talks to."""
        return self._host.uri

    # -- start-up -------------------------------------------------------------

    def init_host(self):
        """Open the libvirt connection.

        Raises HypervisorUnavailable naming the URI when libvirt cannot be
        reached, so that nothing is decided from guesses in that case.
        """
        self._host.get_connection()

    def get_instance_machine_types(self, unreadable=None, running=None):
        """Return {uuid: machine type or None} of every domain on the host.

        One listing of all domains, running or not; the values are what
        libvirt reports (versioned on QEMU). A domain that cannot be read
        is logged and left out, and put in ``unreadable`` ({uuid: error})
        when given, so that the caller does not take it for absent. The
        uuids of the running ones go in ``running`` (a set) when given.
        """
        return self._host.get_machine_types_by_uuid(unreadable, running)

    def get_instance_machine_type(self, instance):
        """Return the machine type of the instance's domain here, or None.

        None when this host has no domain for the instance.
        """
        guest = self._host.get_guest(instance.uuid)
        return (self._reported_machine_type(guest, instance)
                if guest is not None else None)

    def _reported_machine_type(self, guest, instance):
        """What libvirt reports ``guest`` runs (versioned), or None."""
        return self._host.get_machine_type(
            guest, resolution.get_guest_arch(instance.image_meta, instance))

    def get_power_state(self, instance):
        """The power state of the instance's domain here; NOSTATE if this
        host has none."""
        guest = self._host.get_guest(instance.uuid)
        return (guest.get_power_state() if guest is not None
                else power_state.NOSTATE)

    def get_host_machine_types(self):
        """Return the machine types the host supports, as a list of dicts.

        One dict (arch, name, canonical, deprecated) per machine type and
        guest arch, as ``db.host_machine_types_replace`` takes them.
        """
        caps = self._host.get_capabilities()
        return [{'arch': arch, 'name': mt.name, 'canonical': mt.canonical,
                 'deprecated': mt.deprecated}
                for arch in caps.arches() for mt in caps.machine_types(arch)]

    # -- machine type ---------------------------------------------------------

    def check_machine_type_supported(self, instance):
        """Raise UnsupportedMachineType if this host cannot run the instance.

        Checks the machine type its domain would get here (the recorded
        one, if any), so a move can be refused before the source is
        touched. Returns nothing.
        """
        self._guest_config(instance, instance.image_meta)

    def _check_supported(self, machine_type, arch):
        """Refuse a machine type the host does not list for ``arch``.

        A host that lists no machine types for the arch (libvirt's test
        driver lists none) gives nothing to check against: libvirt itself
        then has the last word when the domain is defined.
        """
        supported = self._host.get_capabilities().supported_machine_types(
            arch)
        if (machine_type is not None and supported is not None
                and machine_type not in supported):
            raise exception.UnsupportedMachineType(
                mtype=machine_type, host=self.host_name, arch=arch)

    def _guest_config(self, instance, image_meta):
        """Return the LibvirtConfigGuest of the instance's domain.

        Raises UnsupportedMachineType (see _check_supported) and, for a
        syntactically invalid machine type, InvalidMachineType when the XML
        is built.
        """
        arch = resolution.get_guest_arch(image_meta, instance)
        machine_type = resolution.get_machine_type(image_meta, instance)
        self._check_supported(machine_type, arch)
        return libvirt_config.LibvirtConfigGuest(
            virt_type=CONF.libvirt.virt_type, name=domain_name(instance),
            uuid=instance.uuid, arch=arch, machine_type=machine_type,
            owner_host=self.host_name)

    # -- defining domains -----------------------------------------------------

    def _get_guest(self, instance):
        """The instance's Guest; InstanceDomainNotFound if it has none."""
        guest = self._host.get_guest(instance.uuid)
        if guest is None:
            raise exception.InstanceDomainNotFound(instance_uuid=instance.uuid)
        return guest

    def _create_domain(self, instance, image_meta, launch=True):
        """(Re)define the instance's domain, start it if asked.

        Returns (its Guest, the machine type libvirt reports for it: QEMU
        reports the versioned type for an alias; None if it reports
        none). The compute manager records or pins that machine type.

        The configuration is built and checked before anything changes, so
        a refused machine type leaves an existing domain as it was. A
        running domain is stopped before it is redefined: libvirt applies
        a new definition only at the next start.
        """
        xml = self._guest_config(instance, image_meta).to_xml()
        self.power_off(instance)
        guest = self._host.define_guest(xml)
        if launch:
            guest.launch()
        return guest, self._reported_machine_type(guest, instance)

    def spawn(self, context, instance, image_meta):
        """Define and start the instance's domain from ``image_meta``.

        Also used by unshelve and evacuate, where the recorded machine type
        wins over the image's. Returns the machine type libvirt reports for
        the defined domain (QEMU reports the versioned type for an alias),
        which is what the instance must keep for life.
        """
        return self._create_domain(instance, image_meta)[1]

    def reboot(self, instance, reboot_type):
        """Reboot the instance: 'SOFT' keeps the domain, 'HARD' redefines it.

        Nova's soft reboot asks the guest OS to shut down and starts the
        same definition again. These guests have no OS to ask, so it stops
        them at once; what matters here is that nothing is redefined.

        Returns the machine type libvirt reports after a 'HARD' reboot,
        None after a 'SOFT' one.
        """
        if reboot_type == 'SOFT':
            guest = self._get_guest(instance)
            guest.poweroff()
            guest.launch()
            return None
        return self._create_domain(instance, instance.image_meta)[1]

    def power_on(self, instance):
        """Redefine the domain from the record and start it.

        Returns the machine type libvirt reports for it.
        """
        return self._create_domain(instance, instance.image_meta)[1]

    def power_off(self, instance):
        """Stop the instance's domain at once, if it has one that runs.

        There is no guest OS to shut down cleanly, so it is not asked to.
        """
        guest = self._host.get_guest(instance.uuid)
        if guest is not None:
            guest.poweroff()

    def pause(self, instance):
        """Freeze the domain's vCPUs; the domain is not redefined."""
        self._get_guest(instance).pause()

    def unpause(self, instance):
        """Let the paused domain run again; it is not redefined."""
        self._get_guest(instance).resume()

    def suspend(self, instance):
        """Save the domain's memory to disk and stop it."""
        self._get_guest(instance).save_memory_state()

    def resume(self, instance):
        """Redefine the suspended domain from the record and restore it.

        Starting a domain with saved memory restores that memory, as Nova's
        resume does after writing the domain's definition again. Returns
        the machine type libvirt reports for it.
        """
        return self._create_domain(instance, instance.image_meta)[1]

    def rescue(self, instance):
        """Redefine the domain from the record and start it in rescue.

        Nova boots a rescue disk here; these guests are diskless, so only
        the definition matters: the rescued guest keeps its own chipset.
        Returns the machine type libvirt reports for it.
        """
        return self._create_domain(instance, instance.image_meta)[1]

    def unrescue(self, instance):
        """Redefine the domain from the record and start it normally.

        Returns the machine type libvirt reports for it.
        """
        return self._create_domain(instance, instance.image_meta)[1]

    def destroy(self, instance):
        """Stop and undefine the instance's domain if this host has one."""
        guest = self._host.get_guest(instance.uuid)
        if guest is not None:
            guest.delete_configuration()

    def list_own_domains(self):
        """Return the uuids of the domains this host defined.

        Only domains whose metadata names this host (see config.NOVA_NS):
        where hosts share one libvirt (module docstring) the domain a move
        redefined elsewhere is not this host's, and a domain defined
        before nova wrote the metadata, or by something else, is never
        taken for one of its own. A domain that cannot be read is logged
        and left out: it is not removed on a guess.
        """
        own = set()
        for guest in self._host.list_guests():
            try:
                if guest.get_owner_host() == self.host_name:
                    own.add(guest.uuid)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    LOG.error('Cannot read the domain of instance %s: %s',
                              guest.uuid, err)
        return own

    def destroy_own(self, instance):
        """Remove the instance's domain if this host defined it.

        For start-up's clean-up of domains left behind by moves: checked
        again just before, so a domain another host has since redefined is
        kept. Returns True if a domain was removed.
        """
        guest = self._host.get_guest(instance.uuid)
        if guest is None or guest.get_owner_host() != self.host_name:
            return False
        guest.delete_configuration()
        return True

    # -- moves ----------------------------------------------------------------

    def migrate_disk_and_power_off(self, instance):
        """Source side of a cold migration: stop and undefine the domain.

        Undefined now rather than at confirm, so that the destination can
        define its own even when both hosts share one libvirt (see the
        module docstring); a revert defines it again from the record.
        """
        self.destroy(instance)

    def finish_migration(self, instance, power_on=True):
        """Destination side of a cold migration: define from the record.

        Returns the machine type libvirt reports for the new domain.
        """
        return self._create_domain(instance, instance.image_meta,
                                   launch=power_on)[1]

    def finish_revert_migration(self, instance, power_on=True):
        """Source side of a revert: define the domain again from the record.

        Returns the machine type libvirt reports for it.
        """
        return self._create_domain(instance, instance.image_meta,
                                   launch=power_on)[1]

    def live_migration(self, instance):
        """Source side of a live migration: hand the guest over.

        The guests here have no memory worth copying, so the hand-over is
        stopping and undefining the source domain; the destination defines
        its own from the record (post_live_migration_at_destination), as
        Nova's destination writes the migrated domain's definition.
        """
        self.destroy(instance)

    def post_live_migration_at_destination(self, instance, paused=False):
        """Define and start the migrated domain here, from the record.

        ``paused``: the guest was paused on the source and stays paused.
        Returns the machine type libvirt reports for the new domain.
        """
        guest, machine_type = self._create_domain(instance,
                                                  instance.image_meta)
        if paused:
            guest.pause()
        return machine_type
