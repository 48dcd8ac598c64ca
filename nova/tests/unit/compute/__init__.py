"""What the compute manager tests share: hosts, instances, domains, SQL.

``ComputeTestCase`` runs ComputeManagers against the libvirt URI in
``[libvirt]connection_uri`` (libvirt's test driver in the unit tier, a real
libvirtd in the functional tier) and removes every domain of the
instances it created. All managers of one process share the test driver's
domains, as described in ``nova.virt.libvirt.driver``.
"""

import logging
import uuid as uuid_lib

import fixtures
import libvirt
import sqlalchemy as sa

from nova.compute import manager
from nova.compute import vm_states
import nova.conf
from nova.db.main import api as db
from nova.db import transactions
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.virt.libvirt import test_host
from nova.virt.libvirt import config as libvirt_config
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import host as libvirt_host

CONF = nova.conf.CONF
KEY = manager.MACHINE_TYPE_KEY


class SQLRecorder(fixtures.Fixture):
    """Every statement any engine sends, and every COMMIT, in order.

    ``events`` holds ``(statement, parameters)`` tuples and the string
    'COMMIT'. Listening on the Engine class catches the cell databases of
    both the test's and the managers' contexts.
    """

    def _setUp(self):
        self.events = []
        listeners = (('before_cursor_execute', self._on_statement),
                     ('commit', self._on_commit))
        for name, listener in listeners:
            sa.event.listen(sa.engine.Engine, name, listener)
            self.addCleanup(sa.event.remove, sa.engine.Engine, name, listener)

    def _on_statement(self, conn, cursor, statement, parameters, context,
                      executemany):
        self.events.append((statement, parameters))

    def _on_commit(self, conn):
        self.events.append('COMMIT')

    def statements(self):
        """The statements sent, without the COMMIT markers."""
        return [event[0] for event in self.events if event != 'COMMIT']

    def find(self, prefix, value):
        """Indexes in ``events`` of statements starting with ``prefix``
        that bind ``value`` as one of their parameters.
        """
        return [index for index, event in enumerate(self.events)
                if event != 'COMMIT' and event[0].startswith(prefix)
                and value in _bound_values(event[1])]


def _bound_values(parameters):
    """The values bound to a statement, flattened over executemany rows."""
    rows = parameters if isinstance(parameters, list) else [parameters]
    return [value for row in rows
            for value in (row.values() if isinstance(row, dict) else row)]


class QemuCapabilities(fixtures.Fixture):
    """Make a driver's host report the machine types of a QEMU 7.2 host.

    libvirt's test driver lists no machine types, so what depends on them
    (refusing an unsupported type, the host_machine_types rows) is unit
    tested with the capabilities of a real QEMU host while the domains are
    still defined on the test driver. The functional tier reads them from
    a real libvirtd.
    """

    def __init__(self, driver):
        super().__init__()
        self.driver = driver

    def _setUp(self):
        caps = libvirt_host.HostCapabilities.from_xml(
            test_host.QEMU_CAPABILITIES)
        self.useFixture(fixtures.MockPatchObject(
            self.driver._host, 'get_capabilities', return_value=caps))


class ComputeTestCase(nova_fixtures.TestCase):
    """Managers for hosts compute1 and compute2 and instance helpers."""

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.configure_libvirt()
        self.ctxt = self.cell_context()
        self.libvirt = libvirt_host.Host(CONF.libvirt.connection_uri)
        self.compute = manager.ComputeManager('compute1')
        self.compute2 = manager.ComputeManager('compute2')

    def configure_libvirt(self):
        """Set [libvirt] before the managers open it (test driver here)."""

    # -- instances ------------------------------------------------------------

    def create_instance(self, ctxt=None, **values):
        """An x86_64 instance, not yet built; its domain goes at cleanup."""
        values.setdefault('architecture', 'x86_64')
        values.setdefault('vm_state', vm_states.BUILDING)
        instance = super().create_instance(ctxt or self.ctxt, **values)
        self.addCleanup(self.undefine_domain, instance.uuid)
        return instance

    def legacy_instances(self, machine_type, count=1,
                         vm_state=vm_states.STOPPED):
        """Instances of compute1 with domains but no record, as before
        machine types were recorded; a list of ``count``.
        """
        instances = []
        for _ in range(count):
            instance = self.create_instance(host='compute1', node='compute1',
                                            vm_state=vm_state)
            self.define_domain(instance, machine_type)
            instances.append(instance)
        return instances

    def build(self, image_properties=None, compute=None, **values):
        """Create an instance and build it; return the instance object."""
        instance = self.create_instance(**values)
        (compute or self.compute).build_and_run_instance(
            self.ctxt, instance, self.image(**(image_properties or {})))
        return instance

    @staticmethod
    def image(**properties):
        """An image with these properties."""
        return objects.ImageMeta.from_dict(
            {'id': str(uuid_lib.uuid4()), 'properties': properties})

    def reload(self, instance):
        """The instance as the database has it now."""
        return objects.Instance.get_by_uuid(
            self.ctxt, instance.uuid, expected_attrs=['system_metadata'])

    def recorded(self, instance):
        """The live hw_machine_type value of an instance, or None."""
        return db.instance_system_metadata_get_many(
            self.ctxt, [instance.uuid])[instance.uuid].get(KEY)

    def machine_type_rows(self, instance):
        """Every live hw_machine_type row of an instance, as values."""
        with transactions.using(
                self.ctxt, db.get_context_manager(self.ctxt).reader):
            return self.ctxt.session.execute(
                sa.select(db.SYSMETA.c.value).where(
                    db.SYSMETA.c.instance_uuid == instance.uuid,
                    db.SYSMETA.c.key == KEY,
                    db.SYSMETA.c.deleted == 0)).scalars().all()

    # -- domains --------------------------------------------------------------

    def define_domain(self, instance, machine_type, start=False):
        """Define the instance's domain behind nova's back; return it.

        Stands for a domain nova defined before it recorded machine types
        (a legacy instance), or one changed by hand.
        """
        conf = libvirt_config.LibvirtConfigGuest(
            virt_type=CONF.libvirt.virt_type,
            name=libvirt_driver.domain_name(instance), uuid=instance.uuid,
            arch='x86_64', machine_type=machine_type)
        guest = self.libvirt.define_guest(conf.to_xml())
        if start:
            guest.launch()
        return guest

    def domain_machine_type(self, instance):
        """What libvirt reports for the instance's domain, or None."""
        guest = self.libvirt.get_guest(instance.uuid)
        return guest.get_machine_type() if guest is not None else None

    def persistent_machine_type(self, instance):
        """The machine type of the domain's stored definition, or None.

        Differs from domain_machine_type while a running domain has been
        redefined and not yet restarted.
        """
        domain = self.libvirt.get_connection().lookupByUUIDString(
            instance.uuid)
        return libvirt_guest.parse_machine_type(
            domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))

    def domain_is_running(self, instance):
        guest = self.libvirt.get_guest(instance.uuid)
        return guest is not None and guest.is_active()

    def undefine_domain(self, uuid):
        guest = self.libvirt.get_guest(uuid)
        if guest is not None:
            guest.delete_configuration()

    def assertDomainMachineType(self, expected, instance):
        self.assertEqual(expected, self.domain_machine_type(instance))

    def assertState(self, instance, vm_state, task_state=None, host=None):
        """Check the saved state, not only the object in memory."""
        saved = self.reload(instance)
        self.assertEqual((vm_state, task_state, host),
                         (saved.vm_state, saved.task_state, saved.host))
