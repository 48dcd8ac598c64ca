"""machine_type_utils: names, change rules, and the set-based queries.

The DB-backed classes run on SQLite here and on MariaDB and PostgreSQL in
nova/tests/functional/cmd/. ``MachineTypeTestMixin`` is shared by the
nova-manage, nova-status and online migration tests.
"""

import collections
import contextlib
import threading
import uuid as uuid_lib

import fixtures
import sqlalchemy as sa
import testtools

from nova import context
from nova.db.main import api as db
from nova.db import transactions
from nova import exception
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.virt.libvirt import machine_type_utils as mtu

# What a QEMU 8.2 x86_64 host reports (trimmed): (name, canonical,
# deprecated).
X86_TYPES = (
    ('pc', 'pc-i440fx-8.2', False),
    ('pc-i440fx-8.2', None, False),
    ('pc-i440fx-8.1', None, False),
    ('pc-i440fx-2.0', None, True),
    ('q35', 'pc-q35-8.2', False),
    ('pc-q35-8.2', None, False),
    ('pc-q35-8.1', None, False),
)


class MachineTypeTestMixin:
    """Instances, hosts and services in two cells, and DB snapshots."""

    CELLS = 2

    def make(self, cell=0, machine_type=None, vm_state='stopped',
             host='compute1', system_metadata=None, **values):
        """Create (and map) an instance in cell ``cell``."""
        sysmeta = dict(system_metadata or {})
        if machine_type is not None:
            sysmeta[mtu.SYSMETA_KEY] = machine_type
        return self.create_instance(
            self.cell_context(cell), vm_state=vm_state, host=host,
            architecture=values.pop('architecture', 'x86_64'),
            system_metadata=sysmeta, **values)

    def report(self, host, cell=0, types=X86_TYPES, arch='x86_64'):
        """Record what ``host``'s libvirt reports, as nova-compute does."""
        db.host_machine_types_replace(self.cell_context(cell), host, [
            {'arch': arch, 'name': name, 'canonical': canonical,
             'deprecated': deprecated}
            for name, canonical, deprecated in types])

    def register(self, host, cell=0, version=None):
        """A nova-compute service row for ``host`` (current version)."""
        ctxt = self.cell_context(cell)
        objects.Service.register(ctxt, host, 'nova-compute')
        if version is not None:
            db.service_create_or_update(ctxt, host, 'nova-compute',
                                        {'version': version})

    def recorded(self, inst):
        """The machine type recorded for ``inst``, read from its cell."""
        cell = next(i for i, c in enumerate(self.cells)
                    if c.uuid == inst._context.cell_uuid)
        return db.instance_system_metadata_get_many(
            self.cell_context(cell), [inst.uuid])[inst.uuid].get(
                mtu.SYSMETA_KEY)

    def snapshot(self):
        """Every row of the instance and sysmeta tables of every cell."""
        rows = []
        for index in range(len(self.cells)):
            ctxt = self.cell_context(index)
            with transactions.using(ctxt, db.get_context_manager(ctxt).reader):
                for table in (db.INSTANCES, db.SYSMETA):
                    rows.append([tuple(r) for r in ctxt.session.execute(
                        sa.select(table).order_by(table.c.id))])
        return rows

    def add_broken_cell(self):
        """Map a cell whose database is not a database: it never answers."""
        path = self.useFixture(fixtures.TempDir()).join('broken.sqlite')
        with open(path, 'w') as f:
            f.write('this is not a database\n')
        cell = objects.CellMapping(
            self.context, uuid=str(uuid_lib.uuid4()), name='broken',
            database_connection='sqlite:///' + path, transport_url='none:///')
        cell.create()
        return cell


class ParseTests(testtools.TestCase):

    def test_aliases(self):
        for name in mtu.FAMILIES:
            self.assertEqual((name, None, None),
                             mtu.parse_machine_type(name))

    def test_versioned_forms(self):
        for name, expected in (
                ('pc-i440fx-8.2', ('pc', 'upstream', (8, 2))),
                ('pc-q35-2.10', ('q35', 'upstream', (2, 10))),
                ('pc-q35-4.0.1', ('q35', 'upstream', (4, 0, 1))),
                ('virt-9.0', ('virt', 'upstream', (9, 0))),
                ('s390-ccw-virtio-8.2', ('s390-ccw-virtio', 'upstream',
                                         (8, 2))),
                ('pseries-7.1', ('pseries', 'upstream', (7, 1))),
                ('pc-i440fx-rhel7.6.0', ('pc', 'rhel', (7, 6, 0))),
                ('pc-q35-rhel9.2.0', ('q35', 'rhel', (9, 2, 0)))):
            self.assertEqual(expected, tuple(mtu.parse_machine_type(name)),
                             name)

    def test_unsupported_names(self):
        for name in ('microvm', 'pc-i440fx', 'pc-q35-8', 'pc-q35-8.2.1.0',
                     'virt-rhel9.2.0', 'pc-q35-rhel9.2', 'pseries-2.12-sxxm',
                     'PC', 'q35 ', '', None, 'isapc'):
            self.assertIsNone(mtu.parse_machine_type(name), name)

    def test_versions_compare_numerically(self):
        self.assertGreater(mtu.parse_machine_type('pc-q35-2.10').version,
                           mtu.parse_machine_type('pc-q35-2.9').version)


class ChangeRefusalTests(testtools.TestCase):

    def test_allowed(self):
        for existing, new in ((None, 'microvm'), (None, 'q35'),
                              ('q35', 'q35'),
                              ('pc-q35-8.1', 'pc-q35-8.2'),
                              ('pc-q35-2.9', 'pc-q35-2.10'),
                              ('pc-q35-4.0', 'pc-q35-4.0.1'),
                              ('pc-q35-4.0.1', 'pc-q35-4.1'),
                              ('pc-q35-8.2', 'pc-q35-8.2'),
                              ('pc-q35-rhel9.2.0', 'pc-q35-rhel9.4.0'),
                              ('virt-8.0', 'virt-9.0')):
            self.assertIsNone(mtu.change_refusal(existing, new),
                              (existing, new))

    def test_refused_with_reason(self):
        for existing, new, reason in (
                ('pc', 'q35', 'chipset family from pc to q35'),
                ('pc-i440fx-8.2', 'pc-q35-8.2',
                 'chipset family from pc to q35'),
                ('virt-9.0', 'pseries-9.0', 'family from virt to pseries'),
                ('q35', 'pc-q35-8.2', 'an alias to a versioned'),
                ('pc-q35-8.2', 'q35', 'a versioned machine type to an alias'),
                ('pc-q35-rhel9.2.0', 'pc-q35-8.2', 'RHEL and upstream'),
                ('pc-q35-8.2', 'pc-q35-8.1', 'pc-q35-8.1 is older than '
                                             'pc-q35-8.2'),
                ('pc-q35-2.10', 'pc-q35-2.9', 'older'),
                ('pc-q35-4.0.1', 'pc-q35-4.0', 'older'),
                ('pc-q35-rhel9.4.0', 'pc-q35-rhel9.2.0', 'older'),
                ('microvm', 'pc', 'microvm is not of a supported family'),
                ('pc', 'microvm', 'microvm is not of a supported family')):
            self.assertIn(reason, mtu.change_refusal(existing, new),
                          (existing, new))

    def test_syntax(self):
        for bad in ('', ' pc', 'pc q35', '-pc', 'pc;reboot', 'p\u00e7',
                    'a' * 256, None, 42, '<pc/>'):
            self.assertRaises(exception.MachineTypeSyntaxError,
                              mtu.check_syntax, bad)
        mtu.check_syntax('a' * 255)
        mtu.check_syntax('pc-q35_8.2')

    def test_syntax_message_is_short_for_long_values(self):
        exc = self.assertRaises(exception.MachineTypeSyntaxError,
                                mtu.check_syntax, 'x' * 10000 + ' ')
        self.assertLess(len(exc.format_message()), 300)


class MachineTypeQueryTests(MachineTypeTestMixin, nova_fixtures.TestCase):
    """The queries behind the commands, including how many statements."""

    @contextlib.contextmanager
    def statements(self, cell=0):
        """Collect the verbs of the statements on a cell's tables.

        Transaction control and connection pings are left out.
        """
        engine = db.get_engine(self.cell_context(cell))
        tables = ('instances', 'instance_system_metadata',
                  'host_machine_types')
        seen = []

        def record(conn, cursor, statement, *args):
            if any(table in statement for table in tables):
                seen.append(statement.split()[0].upper())
        sa.event.listen(engine, 'before_cursor_execute', record)
        try:
            yield seen
        finally:
            sa.event.remove(engine, 'before_cursor_execute', record)

    def test_get_machine_type_through_mapping_in_second_cell(self):
        inst = self.make(cell=1, machine_type='pc-q35-8.2')
        self.assertEqual('pc-q35-8.2',
                         mtu.get_machine_type(self.context, inst.uuid))
        self.assertIsNone(mtu.get_machine_type(
            self.context, self.make(cell=1).uuid))

    def after_the_read(self, action):
        """Run ``action(cell context, uuid)`` right after update's read.

        A deterministic interleaving: another writer's change, committed
        on the real database between update_machine_type's read of the
        instance (and its checks) and its write.
        """
        real_get = objects.Instance.get_by_uuid

        def get_then_act(cctxt, uuid, expected_attrs=None):
            got = real_get(cctxt, uuid, expected_attrs=expected_attrs)
            action(cctxt, uuid)
            return got
        self.useFixture(fixtures.MockPatchObject(
            objects.Instance, 'get_by_uuid', side_effect=get_then_act))

    @staticmethod
    def start(cctxt, uuid):
        """What a start does to the instance row: vm_state active."""
        db.instance_update(cctxt, uuid, {'vm_state': 'active'}, {}, [])

    def test_update_write_is_conditioned_on_what_was_read(self):
        inst = self.make(cell=1, machine_type='pc-q35-8.1')
        # Another operator changes it between our read and our write.
        self.after_the_read(lambda cctxt, uuid: (
            db.instance_sysmeta_replace_value(cctxt, mtu.SYSMETA_KEY,
                                              'pc-q35-8.1', 'pc-q35-8.2')))
        self.assertRaises(exception.MachineTypeUpdateConflict,
                          mtu.update_machine_type, self.context, inst.uuid,
                          'pc-q35-8.2')
        self.assertEqual('pc-q35-8.2', self.recorded(inst))

    def test_update_refuses_when_state_changes_before_the_write(self):
        inst = self.make(machine_type='pc-q35-8.1')
        self.after_the_read(self.start)
        self.assertRaises(exception.MachineTypeUpdateConflict,
                          mtu.update_machine_type, self.context, inst.uuid,
                          'pc-q35-8.2')
        self.assertEqual('pc-q35-8.1', self.recorded(inst))

    def test_update_first_record_loses_to_a_concurrent_recorder(self):
        inst = self.make(vm_state='shelved_offloaded', host=None)
        self.after_the_read(lambda cctxt, uuid: (
            db.instance_system_metadata_record(cctxt, mtu.SYSMETA_KEY,
                                               {uuid: 'pc-i440fx-8.2'})))
        self.assertRaises(exception.MachineTypeUpdateConflict,
                          mtu.update_machine_type, self.context, inst.uuid,
                          'pc')
        self.assertEqual('pc-i440fx-8.2', self.recorded(inst))

    def test_update_first_record_refused_when_started_before_the_write(self):
        """The vm_state condition holds at write time with no record too.

        A start committed between update_machine_type's read (stopped,
        nothing recorded) and its write: nothing is recorded.
        """
        inst = self.make(host=None)
        self.after_the_read(self.start)
        self.assertRaises(exception.MachineTypeUpdateConflict,
                          mtu.update_machine_type, self.context, inst.uuid,
                          'pc')
        self.assertIsNone(self.recorded(inst))

    def test_update_first_record_with_force_ignores_the_state(self):
        inst = self.make(vm_state='active')
        self.assertEqual((('q35', None)), mtu.update_machine_type(
            self.context, inst.uuid, 'q35', force=True))
        self.assertEqual('q35', self.recorded(inst))

    def test_update_of_an_instance_its_host_has_not_recorded(self):
        """Its nova-compute has not recorded what the guest runs: the
        controller's configuration cannot stand in for it. Refused with
        the remedy (exit 3), unless --force."""
        inst = self.make(host='compute1')
        error = self.assertRaises(exception.MachineTypeNotYetRecorded,
                                  mtu.update_machine_type, self.context,
                                  inst.uuid, 'pc')
        self.assertIn('Restart (or upgrade) nova-compute there',
                      error.format_message())
        self.assertIn('compute1', error.format_message())
        self.assertIsNone(self.recorded(inst))
        self.assertEqual(('pc', None), mtu.update_machine_type(
            self.context, inst.uuid, 'pc', force=True))

    def test_update_without_record_compares_with_resolution(self):
        """pc -> q35 is refused whether or not pc is recorded, for an
        instance without a host, whose next definition resolution
        decides."""
        plain = self.make(host=None)
        error = self.assertRaises(exception.InvalidMachineTypeUpdate,
                                  mtu.update_machine_type, self.context,
                                  plain.uuid, 'q35')
        self.assertIn('from none recorded (pc from image, configuration or '
                      'default) to q35: that changes the chipset family '
                      'from pc to q35', error.format_message())
        self.assertRaises(exception.InvalidMachineTypeUpdate,
                          mtu.update_machine_type, self.context,
                          plain.uuid, 'pc-i440fx-8.2')
        self.assertIsNone(self.recorded(plain))
        # The image's property, then the configuration, decide.
        image_q35 = self.make(
            host=None, system_metadata={'image_hw_machine_type': 'q35'})
        self.assertEqual(('q35', None), mtu.update_machine_type(
            self.context, image_q35.uuid, 'q35'))
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        self.assertEqual(('q35', None), mtu.update_machine_type(
            self.context, plain.uuid, 'q35'))
        arm = self.make(host=None, architecture='aarch64')
        self.assertRaises(exception.InvalidMachineTypeUpdate,
                          mtu.update_machine_type, self.context, arm.uuid,
                          'q35')

    def test_current_machine_type(self):
        self.assertEqual(('pc-q35-8.2', 'recorded'), mtu.current_machine_type(
            self.make(machine_type='pc-q35-8.2')))
        self.assertEqual(('pc', 'from image, configuration or default'),
                         mtu.current_machine_type(self.make()))

    def test_host_check_uses_the_guest_arch(self):
        # compute1 reports x86_64 types only: an aarch64 guest there cannot
        # be checked, an x86_64 one can.
        self.report('compute1')
        arm = self.make(machine_type='virt-8.0', architecture='aarch64')
        self.assertEqual(('virt-9.0', 'virt-8.0'), mtu.update_machine_type(
            self.context, arm.uuid, 'virt-9.0'))
        x86 = self.make(machine_type='pc-q35-8.1')
        self.assertRaises(exception.MachineTypeUnsupportedByHost,
                          mtu.update_machine_type, self.context, x86.uuid,
                          'pc-q35-9.0')
        # The image's hw_architecture decides before the column.
        image_arm = self.make(
            machine_type='pc-q35-8.1',
            system_metadata={'image_hw_architecture': 'aarch64'})
        self.assertEqual(
            ('pc-q35-9.0', 'pc-q35-8.1'),
            mtu.update_machine_type(self.context, image_arm.uuid,
                                    'pc-q35-9.0'))

    def test_host_accepts_an_alias_canonical(self):
        self.report('compute1', types=(('q35', 'pc-q35-8.2', False),))
        inst = self.make(machine_type='pc-q35-8.1')
        mtu.update_machine_type(self.context, inst.uuid, 'pc-q35-8.2')
        self.assertEqual('pc-q35-8.2', self.recorded(inst))

    def test_list_holds_no_connection_while_the_consumer_reads(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils.LIST_CHUNK_SIZE', 2))
        # Pages of 4 instance ids: the 6 instances below span two pages.
        self.useFixture(fixtures.MockPatch(
            'nova.db.main.api.LIST_ID_RANGE', 4))
        unset = [self.make(cell=0).uuid for _ in range(5)]
        self.make(cell=0, machine_type='pc')
        with context.target_cell(self.context, self.cells[0]) as cctxt:
            engine = db.get_engine(cctxt)
        held = []
        sa.event.listen(engine, 'checkout', lambda *a: held.append(1))
        sa.event.listen(engine, 'checkin', lambda *a: held.pop())
        listed = mtu.list_unset_machine_type(self.context,
                                             self.cells[0].uuid)
        chunks = []
        for chunk in listed:
            # Between two chunks the consumer may take its time: the
            # listing's reader (a thread reading ahead) soon holds no
            # connection (so no transaction, no cursor) while it waits.
            self.assertTrue(nova_fixtures.poll(lambda: not held),
                            'the listing kept a connection checked out')
            chunks.append(chunk)
        self.assertEqual([2, 2, 1], [len(c) for c in chunks])
        self.assertEqual(unset, sum(chunks, []))

    def test_list_reads_the_next_cell_ahead_in_cell_order(self):
        first = [self.make(cell=0).uuid for _ in range(3)]
        second = [self.make(cell=1).uuid for _ in range(2)]
        self.assertEqual(first + second, sum(
            mtu.list_unset_machine_type(self.context), []))
        with context.target_cell(self.context, self.cells[1]) as cctxt:
            second_engine = db.get_engine(cctxt)
        read = []
        sa.event.listen(second_engine, 'checkout', lambda *a: read.append(1))
        listed = mtu.list_unset_machine_type(self.context)
        self.assertEqual(first, next(listed))
        # The second cell is read while the first one's chunk is consumed.
        self.assertTrue(nova_fixtures.poll(lambda: read, timeout=10))
        self.assertEqual([second], list(listed))

    def test_a_consumer_that_stops_leaves_no_reader_behind(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils.LIST_CHUNK_SIZE', 1))
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils._LISTING_QUEUE', 1))
        for _ in range(4):
            self.make(cell=0)

        def readers():
            return [t.name for t in threading.enumerate()
                    if t.name.startswith('list-')]
        listed = mtu.list_unset_machine_type(self.context)
        next(listed)
        # Its reader is blocked on the full queue until told to stop.
        self.assertIn('list-%s' % self.cells[0].uuid, readers())
        listed.close()
        self.assertTrue(nova_fixtures.poll(lambda: not readers(), timeout=10),
                        'listing threads left behind: %s' % readers())

    def test_bulk_update_writes_in_bounded_batches(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils.BULK_BATCH', 8))
        for _ in range(20):
            self.make(machine_type='pc-q35-8.1')
        self.make(machine_type='pc-q35-8.1', vm_state='active')
        engine = db.get_engine(self.cell_context(0))
        commits = []
        sa.event.listen(engine, 'commit', lambda conn: commits.append(1))
        with self.statements(cell=0) as seen:
            results = mtu.bulk_update_machine_type(
                self.context, 'pc-q35-8.1', 'pc-q35-8.2')
        # 20 instances, 8 a batch: three UPDATEs, each committed alone.
        self.assertEqual(3, seen.count('UPDATE'))
        self.assertGreaterEqual(len(commits), 3)
        outcome = dict((c.uuid, r) for c, r in results)[self.cells[0].uuid]
        self.assertEqual(20, outcome.updated)
        self.assertEqual([1], list(outcome.refused.values()))
        self.assertEqual({'pc-q35-8.2': 20}, self.recorded_counts(
            'pc-q35-8.2'))

    def test_interrupted_bulk_update_is_finished_by_a_rerun(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.machine_type_utils.BULK_BATCH', 8))
        for _ in range(20):
            self.make(machine_type='pc-q35-8.1')

        def interrupt(cctxt, updated):
            raise KeyboardInterrupt()
        self.assertRaises(KeyboardInterrupt, mtu._bulk_update_cell,
                          self.cell_context(0), 'pc-q35-8.1', 'pc-q35-8.2',
                          False, False, interrupt)
        # The first batch is committed, the rest left as it was.
        self.assertEqual({'pc-q35-8.1': 12, 'pc-q35-8.2': 8},
                         self.recorded_counts('pc-q35-8.1', 'pc-q35-8.2'))
        results = mtu.bulk_update_machine_type(
            self.context, 'pc-q35-8.1', 'pc-q35-8.2')
        outcome = dict((c.uuid, r) for c, r in results)[self.cells[0].uuid]
        self.assertEqual((12, {}), (outcome.updated, outcome.refused))
        self.assertEqual({'pc-q35-8.2': 20}, self.recorded_counts(
            'pc-q35-8.1', 'pc-q35-8.2'))

    def recorded_counts(self, *machine_types):
        """{machine type: live records} of cell 0, for ``machine_types``."""
        counts = collections.Counter()
        for value, _, count in db.instance_sysmeta_value_counts(
                self.cell_context(0), mtu.SYSMETA_KEY):
            if value in machine_types:
                counts[value] += count
        return dict(counts)

    def test_no_update_lands_inside_an_operation(self):
        """A STOPPED instance being started (task powering-on) keeps its
        record, with or without --force, and so does the bulk update,
        which counts it apart and changes the idle one."""
        busy = self.make(machine_type='pc-q35-8.1',
                         task_state='powering-on')
        idle = self.make(machine_type='pc-q35-8.1')
        before = self.snapshot()
        for force in (False, True):
            err = self.assertRaises(
                exception.MachineTypeUpdateInstanceBusy,
                mtu.update_machine_type, self.context, busy.uuid,
                'pc-q35-8.2', force=force)
            self.assertIn('powering-on', err.format_message())
        self.assertEqual(before, self.snapshot())
        for force in (False, True):
            results = mtu.bulk_update_machine_type(
                self.context, 'pc-q35-8.1', 'pc-q35-8.2', force=force)
            outcome = dict((c.uuid, r) for c, r in results)[
                self.cells[0].uuid]
            self.assertEqual({mtu.BUSY: 1}, outcome.refused)
        self.assertEqual('pc-q35-8.1', self.recorded(busy))
        self.assertEqual('pc-q35-8.2', self.recorded(idle))

    def test_conditional_write_includes_the_task_state(self):
        """An operation that claims the instance between the command's
        read and its write makes the write change nothing."""
        instance = self.make(machine_type='pc-q35-8.1')
        ctxt = self.cell_context(0)
        self.claim(instance)
        self.assertEqual(0, db.instance_sysmeta_replace_value(
            ctxt, mtu.SYSMETA_KEY, 'pc-q35-8.1', 'pc-q35-8.2',
            uuid=instance.uuid))
        self.assertEqual('pc-q35-8.1', self.recorded(instance))
        unrecorded = self.make()
        self.claim(unrecorded)
        self.assertFalse(mtu._record_first(ctxt, unrecorded.uuid, 'pc'))
        self.assertIsNone(self.recorded(unrecorded))

    def claim(self, instance):
        """Start an operation on ``instance``, as a compute manager does."""
        fresh = objects.Instance.get_by_uuid(instance._context,
                                             instance.uuid)
        fresh.task_state = 'powering-on'
        fresh.save(expected_task_state=[None])

    def test_bulk_update_judges_hosts_by_what_they_report(self):
        self.report('compute1')
        self.report('compute2', types=(('pc-q35-9.0', None, False),))
        on_1 = self.make(machine_type='pc-q35-8.1', host='compute1')
        on_2 = self.make(machine_type='pc-q35-8.1', host='compute2')
        silent = self.make(machine_type='pc-q35-8.1', host='compute3')
        hostless = self.make(machine_type='pc-q35-8.1', host=None,
                             vm_state='shelved_offloaded')
        [(_, outcome), _] = mtu.bulk_update_machine_type(
            self.context, 'pc-q35-8.1', 'pc-q35-9.0')
        self.assertEqual(
            mtu.BulkUpdate(3, {'host compute1 does not support pc-q35-9.0':
                               1}), outcome)
        self.assertEqual(['pc-q35-8.1', 'pc-q35-9.0', 'pc-q35-9.0',
                          'pc-q35-9.0'],
                         [self.recorded(i) for i in (on_1, on_2, silent,
                                                     hostless)])

    def test_summary_counts_by_type_and_state(self):
        self.make(machine_type='pc', vm_state='active')
        self.make(machine_type='pc', vm_state='active')
        self.make(machine_type='q35', vm_state='stopped')
        self.make(vm_state='building')
        self.make(machine_type='pc', vm_state='active').destroy()
        self.make(cell=1, vm_state='error', host=None)
        results = dict((c.uuid, r) for c, r in mtu.machine_type_summary(
            self.context))
        self.assertEqual({('pc', 'active'): 2, ('q35', 'stopped'): 1,
                          (None, 'building'): 1},
                         results[self.cells[0].uuid])
        self.assertEqual({(None, 'error'): 1}, results[self.cells[1].uuid])

    def test_a_cell_that_does_not_answer_is_named(self):
        # The hanging cell never answers while the test runs (released
        # at cleanup). The healthy one answers in milliseconds at rest;
        # should a loaded machine make it miss the time-out too, the
        # gather is asked again with a longer one: what is tested is the
        # report, not the machine's speed.
        real = db.instance_sysmeta_value_counts
        slow = self.cells[1].uuid

        def hang_in_cell_2(cctxt, key):
            if cctxt.cell_uuid == slow:
                release.wait()
            return real(cctxt, key)
        release = threading.Event()
        self.addCleanup(release.set)
        self.useFixture(fixtures.MockPatchObject(
            db, 'instance_sysmeta_value_counts', side_effect=hang_in_cell_2))
        self.make(machine_type='pc')
        for timeout in (2, 8, 32):
            self.flags(cell_timeout=timeout)
            [(_, first), (_, second)] = mtu.machine_type_summary(
                self.context)
            if not isinstance(first, exception.CellUnavailable):
                break
        self.assertEqual({('pc', 'stopped'): 1}, first)
        self.assertIsInstance(second, exception.CellUnavailable)
        self.assertIn('cell2 (%s) did not answer: no answer within %d '
                      'seconds' % (slow, timeout), second.format_message())

    def test_unset_report_groups_by_remedy(self):
        self.register('current')
        self.register('old', version=0)
        self.make(host='current')
        self.make(host='old')
        self.make(host='old')
        self.make(host='nowhere')
        self.make(host=None, vm_state='shelved_offloaded')
        self.make(host=None, vm_state='building')
        self.make(host='current', machine_type='pc')
        [(_, report), (_, empty)] = [
            (cell, reports['unset']) for cell, reports in
            mtu.upgrade_check_reports(self.context, ['unset'])]
        self.assertEqual(mtu.UnsetReport(5, 1, {'current': 1}, {'old': 2},
                                         {'nowhere': 1}), report)
        self.assertEqual(mtu.UnsetReport(0, 0, {}, {}, {}), empty)

    def test_refused_report(self):
        self.report('compute1')
        self.make(machine_type='pc-i440fx-2.0')
        self.make(machine_type='pc-i440fx-2.0')
        self.make(machine_type='pc-q35-7.0')
        self.make(machine_type='pc')
        self.make(machine_type='pc-q35-7.0', host='silent')
        self.make(machine_type='pc-q35-7.0', host='compute1').destroy()
        [(_, findings), (_, none)] = [
            (cell, reports['refused']) for cell, reports in
            mtu.upgrade_check_reports(self.context, ['refused'])]
        self.assertEqual(
            [{'host': 'compute1', 'machine_type': 'pc-i440fx-2.0',
              'problem': 'deprecated', 'count': 2},
             {'host': 'compute1', 'machine_type': 'pc-q35-7.0',
              'problem': 'unsupported', 'count': 1}], findings)
        self.assertEqual([], none)

    def test_cells_of_an_unknown_or_malformed_uuid(self):
        self.assertRaises(exception.CellMappingNotFound, list,
                          mtu.list_unset_machine_type(
                              self.context, str(uuid_lib.uuid4())))
        self.assertRaises(exception.InvalidUUID, list,
                          mtu.list_unset_machine_type(self.context, 'x'))
        self.assertEqual([], list(mtu.list_unset_machine_type(
            context.get_admin_context(), self.cells[1].uuid)))


class SQLitePlanTests(MachineTypeTestMixin, nova_fixtures.TestCase):
    """SQLite's plans of the online migration's page and record statements.

    Not run on the other backends (nova/tests/functional/cmd/ does not
    import this class).
    """

    def _plan_of(self, verb, query, *args, **kwargs):
        """EXPLAIN QUERY PLAN of the one ``verb`` statement ``query(ctxt,
        SYSMETA_KEY, *args, **kwargs)`` runs."""
        ctxt = self.cell_context()
        engine = db.get_engine(ctxt)
        statement, parameters = nova_fixtures.statement_of(
            engine, verb, lambda: query(ctxt, mtu.SYSMETA_KEY, *args,
                                        **kwargs))
        with engine.connect() as conn:
            return ' / '.join(row[-1] for row in conn.exec_driver_sql(
                'EXPLAIN QUERY PLAN ' + statement, parameters))

    def test_a_page_comes_from_the_host_index_in_order(self):
        plan = self._plan_of('SELECT',
                             db.instance_get_hostless_without_sysmeta, 7,
                             1000, with_keys=['image_hw_machine_type'])
        self.assertIn('instances_host_deleted_id_idx', plan)
        self.assertNotIn('TEMP B-TREE', plan)

    def test_a_page_is_recorded_through_the_uuid_index(self):
        plan = self._plan_of('INSERT',
                             db.instance_system_metadata_record_hostless,
                             {'pc': [str(uuid_lib.uuid4())
                                     for _ in range(3)]})
        # SQLite names the unique key's index sqlite_autoindex_...
        self.assertRegex(plan, r'SEARCH instances USING INDEX \S+ '
                               r'\(uuid=\?\)')
        self.assertNotIn('SCAN', plan.replace('SCAN CONSTANT', ''))
