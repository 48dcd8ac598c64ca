"""System metadata keys that differ only in case or trailing spaces.

Image properties come from users and keep their case, so one instance
may hold ``HW_machine_type`` and ``hw_machine_type `` beside (or instead
of) the real ``hw_machine_type``. Nova's objects keep them apart, as
Python compares strings; so must the database, whatever its collation:
no writer of the machine type may change, or be stopped by, a key that
is only similar. Runs on SQLite here and on MariaDB and PostgreSQL in
nova/tests/functional/compute/test_exact_keys.py.
"""

import sqlalchemy as sa

from nova.compute import vm_states
from nova.db.main import api as db
from nova.db import transactions
from nova import objects
from nova.tests.unit import compute as compute_test
from nova.virt.libvirt import machine_type_utils

KEY = compute_test.KEY
# The lookalikes of KEY a user's image could have left, with their values.
LOOKALIKES = {
    'HW_machine_type': 'upper',
    'hw_machine_type ': 'space',
    'hw_machine_typé': 'accent',
}


class ExactKeyTests(compute_test.ComputeTestCase):

    def live_rows(self, instance):
        """{key: value} of the instance's live rows, read with SQL."""
        with transactions.using(
                self.ctxt, db.get_context_manager(self.ctxt).reader):
            rows = self.ctxt.session.execute(
                sa.select(db.SYSMETA.c.key, db.SYSMETA.c.value).where(
                    db.SYSMETA.c.instance_uuid == instance.uuid,
                    db.SYSMETA.c.deleted == 0)).all()
        self.assertEqual(len(rows), len({key for key, _ in rows}), rows)
        return dict(rows)

    def with_lookalikes(self, **values):
        instance = self.create_instance(system_metadata=dict(LOOKALIKES),
                                        **values)
        self.assertEqual(LOOKALIKES, self.live_rows(instance))
        return instance

    def assertRecordedBeside(self, value, instance):
        self.assertEqual(dict(LOOKALIKES, **{KEY: value}),
                         self.live_rows(instance))

    def test_object_round_trip_keeps_every_key(self):
        instance = self.with_lookalikes()
        loaded = objects.Instance.get_by_uuid(
            self.ctxt, instance.uuid, expected_attrs=['system_metadata'])
        self.assertEqual(LOOKALIKES, loaded.system_metadata)
        loaded.system_metadata['hw_machine_type '] = 'space-changed'
        loaded.save()
        self.assertEqual(dict(LOOKALIKES, **{'hw_machine_type ':
                                             'space-changed'}),
                         self.live_rows(instance))

    def test_spawn_records_beside_lookalikes(self):
        instance = self.with_lookalikes()
        self.compute.build_and_run_instance(self.ctxt, instance,
                                            self.image())
        self.assertRecordedBeside(self.domain_machine_type(instance),
                                  instance)

    def test_start_up_records_beside_lookalikes(self):
        live = self.with_lookalikes(host='compute1', node='compute1',
                                    vm_state=vm_states.STOPPED)
        self.define_domain(live, 'pc-q35-7.2')
        computed = self.with_lookalikes(host='compute1', node='compute1',
                                        vm_state=vm_states.ERROR)
        self.compute.init_host()
        self.assertRecordedBeside('pc-q35-7.2', live)
        self.assertRecordedBeside('pc', computed)

    def test_online_migration_records_beside_lookalikes(self):
        instance = self.with_lookalikes(vm_state=vm_states.SHELVED_OFFLOADED)
        found, done = objects.instance.populate_missing_machine_types(
            self.ctxt, None)
        self.assertEqual((1, 1), (found, done))
        self.assertRecordedBeside('pc', instance)

    def test_update_machine_type_leaves_lookalikes(self):
        instance = self.with_lookalikes(vm_state=vm_states.STOPPED,
                                        host='compute1')
        machine_type_utils.update_machine_type(self.context, instance.uuid,
                                               'pc', force=True)
        self.assertRecordedBeside('pc', instance)
        machine_type_utils.update_machine_type(self.context, instance.uuid,
                                               'pc-i440fx-7.2', force=True)
        self.assertRecordedBeside('pc-i440fx-7.2', instance)

    def test_bulk_update_leaves_lookalikes(self):
        instance = self.with_lookalikes(vm_state=vm_states.STOPPED)
        # A lookalike holding the old value is not a record of it.
        lookalike_only = self.create_instance(
            vm_state=vm_states.STOPPED,
            system_metadata={'HW_MACHINE_TYPE': 'pc-i440fx-7.2'})
        machine_type_utils.update_machine_type(self.context, instance.uuid,
                                               'pc-i440fx-7.2', force=True)
        machine_type_utils.bulk_update_machine_type(
            self.context, 'pc-i440fx-7.2', 'pc-i440fx-8.2', force=True)
        self.assertRecordedBeside('pc-i440fx-8.2', instance)
        self.assertEqual({'HW_MACHINE_TYPE': 'pc-i440fx-7.2'},
                         self.live_rows(lookalike_only))
