"""The machine type queries on MariaDB and PostgreSQL: the unit tests."""

import threading

import sqlalchemy as sa

from nova.tests import fixtures
from nova.tests.unit.virt.libvirt import test_machine_type_utils as unit
from nova.virt.libvirt import machine_type_utils as mtu

globals().update(fixtures.backend_variants(unit.MachineTypeQueryTests))


class UpdateLocksOneRowTests(unit.MachineTypeTestMixin, fixtures.TestCase):
    """update_machine_type writes one instance's record and no other's."""

    DATABASE = None

    def test_update_does_not_wait_for_other_instances_of_its_type(self):
        target = self.make(machine_type='pc-q35-7.1')
        other = self.make(machine_type='pc-q35-7.1')
        # Another client holds the other instance's record, as a write
        # in progress would. An UPDATE that went through every row
        # recorded as pc-q35-7.1 (InnoDB locks what it reads) would wait
        # for it until the lock wait time-out.
        engine = sa.create_engine(self.db.cell_urls[0])
        self.addCleanup(engine.dispose)
        holder = engine.connect()
        self.addCleanup(holder.close)
        holder.begin()
        holder.execute(sa.text(
            'SELECT id FROM instance_system_metadata '
            'WHERE instance_uuid = :uuid FOR UPDATE'), {'uuid': other.uuid})
        outcome = []
        updater = threading.Thread(target=lambda: outcome.append(
            mtu.update_machine_type(self.context, target.uuid,
                                    'pc-q35-7.2')))
        updater.start()
        # No bound of ours: an update that waited for the held row would
        # end with the cell's lock wait time-out ([DEFAULT]cell_timeout)
        # and no outcome, while the holder still holds it.
        updater.join()
        self.assertEqual([('pc-q35-7.2', 'pc-q35-7.1')], outcome)
        holder.rollback()
        self.assertEqual('pc-q35-7.1',
                         mtu.get_machine_type(self.context, other.uuid))


globals().update(fixtures.backend_variants(UpdateLocksOneRowTests))
del UpdateLocksOneRowTests
