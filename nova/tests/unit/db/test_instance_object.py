"""Instance, InstanceList and the system metadata delta, on SQLite."""

import sqlalchemy as sa

from nova.db.main import api as db
from nova.db import transactions
from nova import exception
from nova import objects
from nova.tests import fixtures


class InstanceObjectTests(fixtures.TestCase):

    def _live_sysmeta_rows(self, ctxt, uuid):
        with transactions.using(ctxt, db.get_context_manager(ctxt).reader):
            return ctxt.session.execute(
                sa.select(db.SYSMETA.c.key, db.SYSMETA.c.value)
                .where(db.SYSMETA.c.instance_uuid == uuid,
                       db.SYSMETA.c.deleted == 0)
                .order_by(db.SYSMETA.c.key)).all()

    def test_create_and_get_with_system_metadata(self):
        ctxt = self.cell_context()
        inst = self.create_instance(
            ctxt, host='compute1', system_metadata={'image_hw_machine_type':
                                                    'q35'})
        got = objects.Instance.get_by_uuid(ctxt, inst.uuid,
                                           expected_attrs=['system_metadata'])
        self.assertEqual('compute1', got.host)
        self.assertEqual({'image_hw_machine_type': 'q35'},
                         got.system_metadata)
        self.assertEqual('q35',
                         got.image_meta.properties.get('hw_machine_type'))

    def test_system_metadata_lazy_loaded(self):
        ctxt = self.cell_context()
        inst = self.create_instance(ctxt, system_metadata={'a': '1'})
        got = objects.Instance.get_by_uuid(ctxt, inst.uuid)
        self.assertEqual({'a': '1'}, got.system_metadata)

    def test_save_writes_only_delta_in_one_transaction(self):
        ctxt = self.cell_context()
        inst = self.create_instance(
            ctxt, system_metadata={'keep': '1', 'change': 'old', 'drop': 'x'})
        inst = objects.Instance.get_by_uuid(ctxt, inst.uuid,
                                            expected_attrs=['system_metadata'])
        inst.system_metadata['change'] = 'new'
        inst.system_metadata['add'] = 'a'
        del inst.system_metadata['drop']
        inst.vm_state = 'stopped'
        self.assertEqual({'vm_state'}, inst.obj_what_changed())
        inst.save()
        self.assertEqual(
            [('add', 'a'), ('change', 'new'), ('keep', '1')],
            [tuple(r) for r in self._live_sysmeta_rows(ctxt, inst.uuid)])
        got = objects.Instance.get_by_uuid(ctxt, inst.uuid)
        self.assertEqual('stopped', got.vm_state)
        self.assertEqual(set(), inst.obj_what_changed())

    def test_save_of_unknown_instance_changes_nothing(self):
        ctxt = self.cell_context()
        inst = objects.Instance(
            ctxt, uuid='00000000-0000-0000-0000-00000000dead')
        inst.vm_state = 'stopped'
        self.assertRaises(exception.InstanceNotFound, inst.save)

    def test_save_with_expected_task_state_refuses_a_late_action(self):
        ctxt = self.cell_context()
        uuid = self.create_instance(ctxt).uuid
        first = objects.Instance.get_by_uuid(ctxt, uuid)
        second = objects.Instance.get_by_uuid(ctxt, uuid)
        first.task_state = 'rebooting_hard'
        first.save(expected_task_state=[None])
        second.task_state = 'powering-off'
        second.vm_state = 'stopped'
        err = self.assertRaises(exception.UnexpectedTaskStateError,
                                second.save, expected_task_state=[None])
        self.assertEqual(
            'Instance %s: another action got there first (task state '
            "rebooting_hard, expected [None])." % uuid, err.format_message())
        got = objects.Instance.get_by_uuid(ctxt, uuid)
        self.assertEqual(('rebooting_hard', 'active'),
                         (got.task_state, got.vm_state))
        # The winner ends its action, expecting its own task state.
        first.task_state = None
        first.save(expected_task_state='rebooting_hard')
        self.assertIsNone(objects.Instance.get_by_uuid(ctxt,
                                                       uuid).task_state)

    def test_save_with_expected_task_state_and_no_change_still_checks(self):
        ctxt = self.cell_context()
        inst = self.create_instance(ctxt, task_state='spawning')
        self.assertRaises(exception.UnexpectedTaskStateError, inst.save,
                          expected_task_state=[None])
        inst.save(expected_task_state=['spawning', None])

    def test_overwritten_system_metadata_is_stamped(self):
        ctxt = self.cell_context()
        inst = self.create_instance(ctxt, system_metadata={'k': 'old'})
        inst = objects.Instance.get_by_uuid(ctxt, inst.uuid,
                                            expected_attrs=['system_metadata'])
        inst.system_metadata['k'] = 'new'
        inst.save()
        with transactions.using(ctxt, db.get_context_manager(ctxt).reader):
            row = ctxt.session.execute(
                sa.select(db.SYSMETA).where(
                    db.SYSMETA.c.instance_uuid == inst.uuid)).one()
        self.assertEqual('new', row.value)
        self.assertIsNotNone(row.updated_at)
        self.assertGreaterEqual(row.updated_at, row.created_at)

    def test_a_writer_inside_another_transaction_is_refused(self):
        ctxt = self.cell_context()
        uuid = self.create_instance(ctxt).uuid
        with transactions.using(ctxt, db.get_context_manager(ctxt).writer):
            err = self.assertRaises(
                exception.WriterInTransaction, db.instance_update, ctxt,
                uuid, {'vm_state': 'stopped'}, {}, [])
        self.assertIn('instance_update', err.format_message())
        self.assertEqual('active',
                         objects.Instance.get_by_uuid(ctxt, uuid).vm_state)

    def test_destroy_soft_deletes_instance_and_sysmeta(self):
        ctxt = self.cell_context()
        inst = self.create_instance(ctxt, system_metadata={'a': '1'})
        inst.destroy()
        self.assertEqual(inst.id, inst.deleted)
        self.assertRaises(exception.InstanceNotFound,
                          objects.Instance.get_by_uuid, ctxt, inst.uuid)
        self.assertEqual([], self._live_sysmeta_rows(ctxt, inst.uuid))
        # The rows are kept, soft-deleted with deleted = id.
        with transactions.using(ctxt, db.get_context_manager(ctxt).reader):
            rows = ctxt.session.execute(
                sa.select(db.SYSMETA.c.id, db.SYSMETA.c.deleted).where(
                    db.SYSMETA.c.instance_uuid == inst.uuid)).all()
        self.assertEqual([(r.id, r.id) for r in rows],
                         [(r.id, r.deleted) for r in rows])

    def test_get_by_host_loads_sysmeta_of_its_instances_only(self):
        ctxt = self.cell_context()
        a = self.create_instance(ctxt, host='h1', system_metadata={'k': 'a'})
        self.create_instance(ctxt, host='h2', system_metadata={'k': 'b'})
        deleted = self.create_instance(ctxt, host='h1')
        deleted.destroy()
        got = objects.InstanceList.get_by_host(
            ctxt, 'h1', expected_attrs=['system_metadata'])
        self.assertEqual([(a.uuid, {'k': 'a'})],
                         [(i.uuid, i.system_metadata) for i in got])

    def test_iter_by_filters_pages(self):
        ctxt = self.cell_context()
        made = [self.create_instance(ctxt, host=None,
                                     vm_state='shelved_offloaded')
                for _ in range(7)]
        self.create_instance(ctxt, host='h1')
        got = list(objects.InstanceList.iter_by_filters(
            ctxt, {'host': None, 'vm_state': ['shelved_offloaded']},
            page_size=3))
        self.assertEqual([i.uuid for i in made], [i.uuid for i in got])
