"""Start-up recovery: nova-compute killed between any two steps.

A step is one write to the cell database or one change of a domain. Each
operation is first run whole, and the state after each of its steps is
read from the database and libvirt. Then, for every step, a new instance
goes through the same operation and the process "dies" right after that
step: ``Killed`` is a BaseException, which no handler of the code under
test catches, so nothing more is written, as with kill -9. The state read
at the kill must be the one the whole run had after that step: the kill
landed where it is named. Every nova-compute then restarts (new managers,
none of the old ones reachable) and the instance must be left in a state
a user can act on (shown by acting on it), with no task, exactly one
domain, defined by the host the instance is on, from its record.
"""

import xml.etree.ElementTree as ET

import fixtures
import libvirt
import sqlalchemy as sa

from nova.compute import manager
from nova.compute import services
from nova.compute import vm_states
from nova.db.main import api as db
from nova.db import transactions
from nova import objects
from nova.tests.unit import compute as base
from nova.virt.libvirt import driver as libvirt_driver

NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'

# The steps: every write an operation makes, every change to a domain.
WRITES = ('instance_update', 'instance_update_recording',
          'instance_system_metadata_record_first', 'instance_fault_create',
          'migration_create', 'migration_update')
DOMAIN_CHANGES = ('spawn', 'reboot', 'power_on', 'power_off', 'destroy',
                  'destroy_own', 'migrate_disk_and_power_off',
                  'finish_migration', 'finish_revert_migration')


class Killed(BaseException):
    """The process dies here: Exception handlers do not see it."""


class Steps(fixtures.Fixture):
    """Number the steps of whatever runs inside it.

    ``observe`` (a callable) is called after each step and its results
    kept in ``states``; with ``kill_after`` N, Killed is raised right
    after step N. ``names`` lists the steps made.
    """

    def __init__(self, observe=None, kill_after=None):
        super().__init__()
        self.observe = observe
        self.kill_after = kill_after

    def _setUp(self):
        self.names = []
        self.states = []
        for name in WRITES:
            self.useFixture(fixtures.MonkeyPatch(
                'nova.db.main.api.' + name,
                self._step(name, getattr(db, name))))
        for name in DOMAIN_CHANGES:
            self.useFixture(fixtures.MonkeyPatch(
                'nova.virt.libvirt.driver.LibvirtDriver.' + name,
                self._step(name, getattr(libvirt_driver.LibvirtDriver,
                                         name))))

    def _step(self, name, func):
        def step(*args, **kwargs):
            result = func(*args, **kwargs)
            self.names.append(name)
            if self.observe is not None:
                self.states.append(self.observe())
            if len(self.names) == self.kill_after:
                raise Killed(name)
            return result
        return step


def use_separate_hypervisors(test):
    """Give each host of ``test`` a hypervisor of its own.

    Every connection to a test driver URI naming a file is a new, private
    hypervisor. The drivers are kept in ``test.drivers``, so that a
    restarted host finds its domains.
    """
    node = test.useFixture(fixtures.TempDir()).join('node.xml')
    with open(node, 'w') as f:
        f.write('<node/>')
    test.drivers = {host: libvirt_driver.LibvirtDriver(
        host, uri='test://' + node) for host in ('compute1', 'compute2')}
    test.compute = manager.ComputeManager('compute1',
                                          test.drivers['compute1'])
    test.compute2 = manager.ComputeManager('compute2',
                                           test.drivers['compute2'])


class RecoveryTestCase(base.ComputeTestCase):
    """Kill at every step of an operation; restart; act on the instance.

    The hosts share one libvirt (see nova.virt.libvirt.driver).
    """

    SEPARATE_HOSTS = False

    def setUp(self):
        super().setUp()
        self.instance = None
        self.drivers = {}
        if self.SEPARATE_HOSTS:
            use_separate_hypervisors(self)

    # -- what is read ---------------------------------------------------------

    def migration_statuses(self):
        with transactions.using(
                self.ctxt, db.get_context_manager(self.ctxt).reader):
            return tuple(self.ctxt.session.execute(
                sa.select(db.MIGRATIONS.c.status).where(
                    db.MIGRATIONS.c.instance_uuid == self.instance.uuid)
                .order_by(db.MIGRATIONS.c.id)).scalars())

    def hypervisors(self):
        """{name: libvirt connection} of what the hosts run on."""
        if not self.SEPARATE_HOSTS:
            return {'shared': self.libvirt.get_connection()}
        return {host: driver._host.get_connection()
                for host, driver in self.drivers.items()}

    def domains(self):
        """{hypervisor: (machine type stored, machine type running or None,
        owner host)} of the instance's domains, read with ElementTree."""
        found = {}
        for name, conn in self.hypervisors().items():
            try:
                dom = conn.lookupByUUIDString(self.instance.uuid)
            except libvirt.libvirtError:
                continue
            stored = ET.fromstring(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            owner = stored.find('./metadata/{%s}instance/{%s}host'
                                % (NOVA_NS, NOVA_NS))
            running = (ET.fromstring(dom.XMLDesc(0)).find('./os/type')
                       .get('machine') if dom.isActive() else None)
            found[name] = (stored.find('./os/type').get('machine'), running,
                           owner.text if owner is not None else None)
        return found

    def state(self):
        """What the database and libvirt say of the instance now."""
        saved = self.reload(self.instance)
        return {'vm_state': saved.vm_state, 'task_state': saved.task_state,
                'host': saved.host, 'migrations': self.migration_statuses(),
                'domains': self.domains()}

    # -- kill and restart -----------------------------------------------------

    def restart(self, order):
        """Every nova-compute starts again, in ``order``; the dead ones
        are unreachable from the first moment."""
        self.useFixture(fixtures.MockPatchObject(services, '_SERVICES', {}))
        for host in order:
            compute = manager.ComputeManager(host, self.drivers.get(host))
            compute.init_host()
            setattr(self, 'compute' if host == 'compute1' else 'compute2',
                    compute)
        self.instance = self.reload(self.instance)

    def check_every_kill(self, prepare, operation, ends,
                         orders=(('compute1', 'compute2'),), rebuilt=False):
        """Run ``operation`` whole, then killed after each of its steps.

        ``prepare``: brings a new instance to where the operation starts.
        ``ends``: the (vm_state, host) pairs a recovered instance may be
        left in.
        ``rebuilt``: the operation records anew (else the record stays).
        """
        self.instance = prepare()
        with Steps(observe=self.state) as whole:
            operation()
        trace = list(zip(whole.names, whole.states))
        self.assertGreater(len(trace), 1)
        for order in orders:
            for kill_after, (name, expected) in enumerate(trace[:-1], 1):
                where = 'killed after step %d (%s), restarted %s' % (
                    kill_after, name, ' then '.join(order))
                self.instance = prepare()
                record = self.recorded(self.instance)
                with Steps(kill_after=kill_after):
                    self.assertRaises(Killed, operation)
                self.assertEqual(expected, self.state(), where)
                self.restart(order)
                self.assertRecovered(ends, where)
                if not rebuilt:
                    self.assertEqual(record, self.recorded(self.instance),
                                     where)
                self.act_on(where)

    # -- what must hold -------------------------------------------------------

    def assertOneDomainFromRecord(self, where):
        """One domain, the instance's host's, defined from the record."""
        domains = self.domains()
        self.assertEqual(1, len(domains), '%s: %s' % (where, domains))
        (hypervisor, (stored, running, owner)), = domains.items()
        self.assertEqual(self.instance.host, owner, where)
        if self.SEPARATE_HOSTS:
            self.assertEqual(self.instance.host, hypervisor, where)
        self.assertEqual(self.recorded(self.instance), stored, where)
        self.assertIn(running, (None, stored), where)

    def assertRecovered(self, ends, where):
        saved = self.reload(self.instance)
        self.assertIsNone(saved.task_state, where)
        self.assertIn((saved.vm_state, saved.host), ends, where)
        if saved.vm_state == vm_states.SHELVED_OFFLOADED:
            self.assertEqual({}, self.domains(), where)
        elif saved.vm_state != vm_states.ERROR or self.domains():
            self.assertOneDomainFromRecord(where)
        self.assertEqual(
            set(), set(self.migration_statuses()) & {
                'accepted', 'migrating', 'post-migrating', 'reverting'},
            where)

    def act_on(self, where):
        """What a user would do next; it must work and leave one domain."""
        instance = self.instance
        compute = (self.compute2 if instance.host == 'compute2'
                   else self.compute)
        actions = {
            vm_states.ACTIVE: lambda: compute.stop_instance(
                self.ctxt, instance),
            vm_states.STOPPED: lambda: compute.start_instance(
                self.ctxt, instance),
            vm_states.RESIZED: lambda: compute.revert_migration(
                self.ctxt, instance),
            vm_states.SHELVED: lambda: compute.unshelve_instance(
                self.ctxt, instance),
            vm_states.SHELVED_OFFLOADED: lambda: compute.unshelve_instance(
                self.ctxt, instance),
            vm_states.ERROR: lambda: compute.rebuild_instance(
                self.ctxt, instance),
        }
        before = instance.vm_state
        actions[before]()
        self.instance = self.reload(instance)
        self.assertIsNone(self.instance.task_state, where)
        self.assertNotEqual(vm_states.ERROR, self.instance.vm_state,
                            '%s: %s then failed' % (where, before))
        self.assertOneDomainFromRecord(where)

    # -- the operations -------------------------------------------------------

    def active(self):
        return self.build()

    def stopped(self):
        instance = self.build()
        self.compute.stop_instance(self.ctxt, instance)
        return self.reload(instance)

    def migrated(self):
        instance = self.build()
        self.compute.migrate_instance(self.ctxt, instance, self.compute2)
        return self.reload(instance)

    def migrated_stopped(self):
        instance = self.stopped()
        self.compute.migrate_instance(self.ctxt, instance, self.compute2)
        return self.reload(instance)

    def offloaded(self):
        instance = self.build()
        self.compute.shelve_instance(self.ctxt, instance)
        self.compute.shelve_offload_instance(self.ctxt, instance)
        return self.reload(instance)

    def migrate(self):
        self.compute.migrate_instance(self.ctxt, self.instance, self.compute2)

    def revert(self):
        self.compute2.revert_migration(self.ctxt, self.instance)

    def evacuate(self):
        self.compute2.rebuild_instance(self.ctxt, self.instance,
                                       recreate=True)

    def test_cold_migration(self):
        self.check_every_kill(self.active, self.migrate, {
            (vm_states.ACTIVE, 'compute1'), (vm_states.RESIZED, 'compute2')})

    def test_cold_migration_of_a_stopped_instance(self):
        self.check_every_kill(self.stopped, self.migrate, {
            (vm_states.STOPPED, 'compute1'),
            (vm_states.RESIZED, 'compute2')})

    def test_confirm(self):
        self.check_every_kill(self.migrated, lambda: (
            self.compute2.confirm_migration(self.ctxt, self.instance)), {
            (vm_states.RESIZED, 'compute2'), (vm_states.ACTIVE, 'compute2')})

    def test_revert(self):
        # compute2 first: the source is not running yet when the
        # destination recovers, so the source finishes at its start-up.
        self.check_every_kill(self.migrated, self.revert, {
            (vm_states.RESIZED, 'compute2'), (vm_states.ACTIVE, 'compute1')},
            orders=(('compute1', 'compute2'), ('compute2', 'compute1')))

    def test_revert_of_a_stopped_instance(self):
        self.check_every_kill(self.migrated_stopped, self.revert, {
            (vm_states.RESIZED, 'compute2'), (vm_states.STOPPED, 'compute1')},
            orders=(('compute1', 'compute2'), ('compute2', 'compute1')))

    def test_rebuild(self):
        self.check_every_kill(self.active, lambda: (
            self.compute.rebuild_instance(self.ctxt, self.instance)),
            {(vm_states.ERROR, 'compute1')}, rebuilt=True)

    def test_unshelve(self):
        self.check_every_kill(self.offloaded, lambda: (
            self.compute2.unshelve_instance(self.ctxt, self.instance)),
            {(vm_states.SHELVED_OFFLOADED, None)})

    def test_evacuate(self):
        # Killed before its claim: not evacuated, it can be asked again.
        self.check_every_kill(self.active, self.evacuate, {
            (vm_states.ACTIVE, 'compute2'), (vm_states.ACTIVE, 'compute1')},
            orders=(('compute1', 'compute2'), ('compute2', 'compute1')))

    def test_hard_reboot(self):
        self.check_every_kill(self.active, lambda: (
            self.compute.reboot_instance(self.ctxt, self.instance, 'HARD')),
            {(vm_states.ACTIVE, 'compute1')})

    def test_stop(self):
        self.check_every_kill(self.active, lambda: (
            self.compute.stop_instance(self.ctxt, self.instance)),
            {(vm_states.STOPPED, 'compute1')})

    def test_start(self):
        self.check_every_kill(self.stopped, lambda: (
            self.compute.start_instance(self.ctxt, self.instance)),
            {(vm_states.ACTIVE, 'compute1')})


class SeparateHostsRecoveryTestCase(RecoveryTestCase):
    """The same, each host on its own hypervisor: a domain left behind on
    the other host shows, so "exactly one domain" is checked across
    hosts."""

    SEPARATE_HOSTS = True


class StaleDomainTestCase(base.ComputeTestCase):
    """What start-up removes from its own hypervisor, and what it keeps."""

    def setUp(self):
        super().setUp()
        use_separate_hypervisors(self)

    def domain_uuids(self, host):
        conn = self.drivers[host]._host.get_connection()
        return {dom.UUIDString() for dom in conn.listAllDomains(0)}

    def restart_compute1(self):
        manager.ComputeManager('compute1', self.drivers['compute1']
                               ).init_host()

    def define_without_metadata(self, host, instance):
        """A domain as nova defined them before it wrote its metadata."""
        xml = ET.fromstring(self.drivers[host]._guest_config(
            instance, instance.image_meta).to_xml())
        xml.remove(xml.find('./metadata'))
        self.drivers[host]._host.define_guest(ET.tostring(xml, 'unicode'))

    def test_evacuated_instance_domain_goes_when_the_source_starts(self):
        evacuated = self.build()
        stays = self.build()
        self.compute2.rebuild_instance(self.ctxt, evacuated, recreate=True)
        self.assertEqual({evacuated.uuid, stays.uuid},
                         self.domain_uuids('compute1'))
        self.restart_compute1()
        self.assertEqual({stays.uuid}, self.domain_uuids('compute1'))
        self.assertEqual({evacuated.uuid}, self.domain_uuids('compute2'))
        self.assertEqual(
            ['done'], [m.status for m in objects.Migration.get_all_to_host(
                self.ctxt, 'compute2', 'done')])

    def test_domain_without_nova_metadata_is_kept(self):
        instance = self.build(compute=self.compute2)
        self.define_without_metadata('compute1', instance)
        self.restart_compute1()
        self.assertEqual({instance.uuid}, self.domain_uuids('compute1'))

    def test_domain_of_an_instance_the_cell_does_not_know_is_kept(self):
        instance = self.build()
        self.compute.terminate_instance(self.ctxt, instance)
        unknown = self.create_instance(host='compute2')
        self.drivers['compute1']._host.define_guest(
            self.drivers['compute1']._guest_config(
                unknown, unknown.image_meta).to_xml())
        unknown.destroy()
        self.restart_compute1()
        self.assertEqual({unknown.uuid}, self.domain_uuids('compute1'))

    def test_a_domain_another_host_redefined_is_not_removed(self):
        # Hosts sharing one libvirt: compute2 redefined the domain.
        instance = self.build()
        self.drivers['compute2']._host = self.drivers['compute1']._host
        self.compute2.rebuild_instance(self.ctxt, instance, recreate=True)
        self.assertFalse(self.drivers['compute1'].destroy_own(instance))
        self.assertEqual({instance.uuid}, self.domain_uuids('compute1'))
