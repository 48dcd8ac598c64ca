"""Every move of an instance on a real libvirtd with QEMU.

Each test spawns an instance, changes ``[libvirt]hw_machine_type`` to the
other chipset family, moves the instance, and then checks what an
operator would: the machine type recorded in the instance's system
metadata, and the ``machine`` attribute of ``/domain/os/type`` in the XML
libvirt returns for the domain (``virsh dumpxml``, live and ``--inactive``).
The instance must keep the versioned type QEMU gave it at the spawn.

Two scenarios run every move:

* ``VersionedRecordMovesTestCase``: spawned with nothing configured (``pc``,
  recorded as QEMU's versioned ``pc-i440fx-X.Y``), moved after the default
  became ``x86_64=q35``;
* ``AliasRecordMovesTestCase``: spawned with ``x86_64=q35``, then the alias
  ``q35`` is recorded instead of ``pc-q35-X.Y`` (an operator's
  ``update_machine_type --force``; the online data migration leaves aliases
  too), and moved after the default became ``x86_64=pc``: the move defines
  the domain from the alias and pins the record to the versioned type
  libvirt reports.

Both hosts share the one libvirtd, so a domain left untouched would look
like one redefined from the record: each move must also be reported by
libvirtd as a "defined" lifecycle event (none for a confirm, which defines
nothing), and the domain's metadata must name the host the instance is on.

The expected versioned type is the one libvirt's capabilities give for the
alias (``<machine canonical='pc-q35-7.2'>q35</machine>`` on QEMU 7.2).
compute1 and compute2 share the one libvirtd, so a move between them is
the source's half, then the destination's (see nova.virt.libvirt.driver).
Guests are diskless; their domains are removed after each test. SQLite
holds the databases: the point here is QEMU.
"""

import threading
import time
import xml.etree.ElementTree as ET

import fixtures
import libvirt

from nova.compute import vm_states
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.compute import test_qemu_machine_type as qemu
from nova.tests.unit import compute as base
from nova.virt.libvirt import machine_type_utils

ARCH = 'x86_64'
# How long a domain may take to reach the state a move left it in.
DOMAIN_STATE_TIMEOUT = 60
POLL_INTERVAL = 0.1
STATE_NAMES = {libvirt.VIR_DOMAIN_RUNNING: 'running',
               libvirt.VIR_DOMAIN_SHUTOFF: 'shut off'}


NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
_EVENT_LOOP = []


def _run_event_loop():
    """libvirt's default event loop, in a daemon thread: once a process.

    A connection opened afterwards delivers its domain events through
    it.
    """
    if not _EVENT_LOOP:
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()
        thread = threading.Thread(target=run, daemon=True,
                                  name='libvirt-events')
        thread.start()
        _EVENT_LOOP.append(thread)


class DefinedEvents(fixtures.Fixture):
    """Count libvirtd's "defined" lifecycle events, per domain uuid.

    What libvirtd itself reports each time a domain's definition is
    written (new or updated), however the test's code got there.
    """

    def __init__(self, uri):
        super().__init__()
        self.uri = uri

    def _setUp(self):
        self._counts = {}
        self._lock = threading.Lock()
        _run_event_loop()
        conn = libvirt.open(self.uri)
        self.addCleanup(conn.close)
        callback = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event,
            None)
        self.addCleanup(conn.domainEventDeregisterAny, callback)

    def _on_event(self, conn, domain, event, detail, opaque):
        if event == libvirt.VIR_DOMAIN_EVENT_DEFINED:
            with self._lock:
                uuid = domain.UUIDString()
                self._counts[uuid] = self._counts.get(uuid, 0) + 1

    def count(self, uuid):
        with self._lock:
            return self._counts.get(uuid, 0)


def xml_owner_host(xml):
    """The host nova's metadata says defined a domain, or None."""
    host = ET.fromstring(xml).find('./metadata/{%s}instance/{%s}host'
                                   % (NOVA_NS, NOVA_NS))
    return None if host is None else host.text


def xml_machine_type(xml):
    """The ``machine`` attribute of /domain/os/type in a domain XML."""
    type_elem = ET.fromstring(xml).find('./os/type')
    return None if type_elem is None else type_elem.get('machine')


class QemuMoveTestCase(qemu.QemuTestCase):
    """Spawn, change the default, and check the instance after a move.

    Subclasses say which family the instance is spawned with (FAMILY),
    under which ``[libvirt]hw_machine_type`` (SPAWN_DEFAULT, None: nothing
    configured), the default it is moved under (MOVE_DEFAULT, of
    OTHER_FAMILY) and whether the alias is recorded before the move.
    """

    FAMILY = None
    OTHER_FAMILY = None
    SPAWN_DEFAULT = None
    MOVE_DEFAULT = None
    RECORD_ALIAS = False

    def setUp(self):
        super().setUp()
        self.conn = self.libvirt.get_connection()
        self.defined = self.useFixture(DefinedEvents(qemu.URI))
        # The versioned type the instance gets at spawn and must keep.
        self.expected = self.canonical(self.FAMILY)

    def canonical(self, alias):
        """The versioned type libvirt's capabilities give for ``alias``."""
        caps = ET.fromstring(self.conn.getCapabilities())
        for machine in caps.iterfind(
                "./guest/arch[@name='%s']/machine" % ARCH):
            if machine.text == alias and machine.get('canonical'):
                return machine.get('canonical')
        self.fail('libvirt lists no versioned %s machine type for %s'
                  % (alias, ARCH))

    def spawn(self):
        """Build an instance on compute1, then change the default.

        Returns the instance, recorded with the alias when RECORD_ALIAS.
        """
        if self.SPAWN_DEFAULT:
            self.flags(hw_machine_type=[self.SPAWN_DEFAULT], group='libvirt')
        instance = self.build()
        self.assertKept(instance, vm_states.ACTIVE, 'compute1')
        if self.RECORD_ALIAS:
            machine_type_utils.update_machine_type(
                self.context, instance.uuid, self.FAMILY, force=True)
            instance = self.reload(instance)
            self.assertEqual(self.FAMILY, self.recorded(instance))
        self.flags(hw_machine_type=[self.MOVE_DEFAULT], group='libvirt')
        return instance

    # -- what libvirt says ----------------------------------------------------

    def domain(self, instance):
        """The instance's virDomain; fails the test if there is none."""
        try:
            return self.conn.lookupByUUIDString(instance.uuid)
        except libvirt.libvirtError as err:
            self.fail('libvirt has no domain for instance %s: %s'
                      % (instance.uuid, err))

    def assertNoDomain(self, instance):
        self.assertRaises(libvirt.libvirtError, self.conn.lookupByUUIDString,
                          instance.uuid)

    def wait_for_domain_state(self, instance, state):
        """Poll the domain until it is in ``state``; return the reason."""
        domain = self.domain(instance)
        deadline = time.monotonic() + DOMAIN_STATE_TIMEOUT
        current, reason = domain.state()
        while current != state:
            if time.monotonic() > deadline:
                self.fail('domain of instance %s is %s after %ds, not %s'
                          % (instance.uuid, STATE_NAMES.get(current, current),
                             DOMAIN_STATE_TIMEOUT, STATE_NAMES[state]))
            time.sleep(POLL_INTERVAL)
            current, reason = domain.state()
        return reason

    def assertDomainDefinitions(self, expected, instance):
        """Both the live and the persistent XML say ``expected``."""
        domain = self.domain(instance)
        self.assertEqual(
            (expected, expected),
            (xml_machine_type(domain.XMLDesc(0)),
             xml_machine_type(domain.XMLDesc(
                 libvirt.VIR_DOMAIN_XML_INACTIVE))))

    # -- what the instance says -----------------------------------------------

    def assertKept(self, instance, vm_state, host):
        """The move is over: the instance is on ``host`` in ``vm_state``,
        recorded with the versioned type of the spawn, its domain running
        and defined with that type.

        Returns the reason libvirt gives for the domain's state.
        """
        saved = self.reload(instance)
        self.assertEqual((vm_state, None, host, host),
                         (saved.vm_state, saved.task_state, saved.host,
                          saved.node))
        self.assertEqual(self.expected, saved.system_metadata[base.KEY])
        self.assertEqual([self.expected], self.machine_type_rows(instance))
        reason = self.wait_for_domain_state(instance,
                                            libvirt.VIR_DOMAIN_RUNNING)
        self.assertDomainDefinitions(self.expected, instance)
        # The domain is the one this host defined (nova's metadata).
        self.assertEqual(host, xml_owner_host(self.domain(instance).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE)))
        return reason

    def assertRecordUnchanged(self, instance):
        """Before the move: still what the spawn (or operator) left."""
        self.assertEqual(self.FAMILY if self.RECORD_ALIAS else self.expected,
                         self.recorded(instance))

    # -- steps ----------------------------------------------------------------

    def power_down(self, operation, instance):
        """Run ``operation`` (stop, suspend, shelve) on compute1; wait for
        the domain to be shut off. These do not redefine the domain, so the
        record is still what it was.
        """
        operation(self.ctxt, instance)
        self.wait_for_domain_state(instance, libvirt.VIR_DOMAIN_SHUTOFF)
        self.assertRecordUnchanged(instance)

    def move(self, operation, instance, *args, vm_state=vm_states.ACTIVE,
             host='compute1', defines=True, **kwargs):
        """Run ``operation`` on ``instance``, then check it with assertKept.

        ``defines``: the operation (re)defines the domain, which libvirtd
        must report with a "defined" event; else it must report none.
        Returns what assertKept returns.
        """
        before = self.defined.count(instance.uuid)
        operation(self.ctxt, instance, *args, **kwargs)
        reason = self.assertKept(instance, vm_state, host)
        if defines:
            self.assertTrue(nova_fixtures.poll(
                lambda: self.defined.count(instance.uuid) > before,
                timeout=DOMAIN_STATE_TIMEOUT),
                'libvirtd reported no definition of the domain of %s'
                % instance.uuid)
        else:
            self.assertEqual(before, self.defined.count(instance.uuid))
        return reason

    def down_and_up(self, down, up):
        """Spawn, power down with ``down``, bring back up on compute1 with
        ``up`` and check. Returns the reason libvirt gives for the state.
        """
        instance = self.spawn()
        self.power_down(down, instance)
        return self.move(up, instance)


class MovesTests:
    """The moves, each run by both scenarios (see the module docstring)."""

    def test_a_new_instance_takes_the_new_default(self):
        # The changed default is in effect: a new instance gets the other
        # family, which no move below may give the existing instance.
        self.spawn()
        new = self.build()
        other = self.canonical(self.OTHER_FAMILY)
        self.assertEqual(other, self.recorded(new))
        self.assertDomainDefinitions(other, new)

    def test_stop_and_start(self):
        self.down_and_up(self.compute.stop_instance,
                         self.compute.start_instance)

    def test_suspend_and_resume(self):
        reason = self.down_and_up(self.compute.suspend_instance,
                                  self.compute.resume_instance)
        # Restored from the memory saved at suspend, not booted afresh.
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING_RESTORED, reason)

    def test_rescue_and_unrescue(self):
        instance = self.spawn()
        self.move(self.compute.rescue_instance, instance,
                  vm_state=vm_states.RESCUED)
        self.move(self.compute.unrescue_instance, instance)

    def test_unshelve_on_the_same_host(self):
        self.down_and_up(self.compute.shelve_instance,
                         self.compute.unshelve_instance)

    def test_unshelve_on_another_host(self):
        instance = self.spawn()
        self.power_down(self.compute.shelve_instance, instance)
        self.compute.shelve_offload_instance(self.ctxt, instance)
        self.assertNoDomain(instance)
        self.assertRecordUnchanged(instance)
        self.move(self.compute2.unshelve_instance, instance, host='compute2')

    def test_cold_migration_confirmed(self):
        instance = self.spawn()
        self.move(self.compute.migrate_instance, instance, self.compute2,
                  vm_state=vm_states.RESIZED, host='compute2')
        self.move(self.compute2.confirm_migration, instance, host='compute2',
                  defines=False)

    def test_cold_migration_reverted(self):
        instance = self.spawn()
        self.move(self.compute.migrate_instance, instance, self.compute2,
                  vm_state=vm_states.RESIZED, host='compute2')
        self.move(self.compute2.revert_migration, instance)

    def test_evacuate(self):
        # compute1 counts as down; on a shared libvirtd its stale domain is
        # the one compute2 redefines. Evacuate uses the instance's image.
        instance = self.spawn()
        self.move(self.compute2.rebuild_instance, instance, recreate=True,
                  host='compute2')

    def test_live_migration(self):
        instance = self.spawn()
        self.move(self.compute.live_migrate_instance, instance,
                  self.compute2, host='compute2')


class VersionedRecordMovesTestCase(MovesTests, QemuMoveTestCase):
    """Recorded pc-i440fx-X.Y at spawn; the default is q35 at the move."""

    FAMILY = 'pc'
    OTHER_FAMILY = 'q35'
    MOVE_DEFAULT = ARCH + '=q35'


class AliasRecordMovesTestCase(MovesTests, QemuMoveTestCase):
    """Recorded the alias q35 before the move; the default is pc then.

    The move defines the domain from ``q35`` and the record becomes the
    versioned type libvirt reports for it.
    """

    FAMILY = 'q35'
    OTHER_FAMILY = 'pc'
    SPAWN_DEFAULT = ARCH + '=q35'
    MOVE_DEFAULT = ARCH + '=pc'
    RECORD_ALIAS = True
