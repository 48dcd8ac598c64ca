"""Instance and InstanceList: an instance row and its system metadata."""

import copy
import logging

from nova.db.main import api as db
from nova import machine_type as resolution
from nova.objects import base
from nova.objects import fields
from nova.objects import image_meta as image_meta_obj

LOG = logging.getLogger(__name__)

SYSTEM_METADATA = 'system_metadata'


class Instance(base.ChangeTracking):
    """One instance of a cell database.

    ``system_metadata`` is loaded on demand (or up front with
    ``expected_attrs=['system_metadata']``); ``save`` writes the changed
    columns and the keys added, changed or removed since the last load.
    """

    FIELDS = ('id', 'uuid', 'user_id', 'project_id', 'image_ref',
              'display_name', 'host', 'node', 'architecture', 'vm_state',
              'task_state', 'power_state', 'launched_at', 'terminated_at',
              'created_at', 'updated_at', 'deleted_at', 'deleted')

    # Set by the database, never written by save().
    READ_ONLY = ('id', 'created_at', 'updated_at', 'deleted_at', 'deleted')

    def __init__(self, context=None, system_metadata=None, **values):
        super().__init__(context, **values)
        object.__setattr__(self, '_sysmeta', None)
        object.__setattr__(self, '_orig_sysmeta', {})
        if system_metadata is not None:
            self.system_metadata = system_metadata

    # -- system metadata ------------------------------------------------------

    @property
    def system_metadata(self):
        if self._sysmeta is None:
            loaded = db.instance_system_metadata_get_many(
                self._context, [self.uuid])[self.uuid]
            self._set_loaded_sysmeta(loaded)
        return self._sysmeta

    @system_metadata.setter
    def system_metadata(self, value):
        object.__setattr__(self, '_sysmeta', dict(value))

    def _set_loaded_sysmeta(self, loaded):
        object.__setattr__(self, '_sysmeta', dict(loaded))
        object.__setattr__(self, '_orig_sysmeta', dict(loaded))

    def _sysmeta_delta(self):
        """(updates, deletes) of system metadata since it was loaded."""
        if self._sysmeta is None:
            return {}, []
        updates = {key: value for key, value in self._sysmeta.items()
                   if key not in self._orig_sysmeta
                   or self._orig_sysmeta[key] != value}
        deletes = [key for key in self._orig_sysmeta
                   if key not in self._sysmeta]
        return updates, deletes

    @property
    def image_meta(self):
        """The image as recorded on this instance (its ``image_*`` keys)."""
        return image_meta_obj.ImageMeta.from_instance(self)

    # -- persistence ----------------------------------------------------------

    @classmethod
    def _from_row(cls, context, row, sysmeta=None):
        instance = cls(context)
        instance._load_row(row)
        if sysmeta is not None:
            instance._set_loaded_sysmeta(sysmeta)
        return instance

    @classmethod
    def get_by_uuid(cls, context, uuid, expected_attrs=None):
        """Load a non-deleted instance; InstanceNotFound otherwise."""
        row = db.instance_get_by_uuid(context, uuid)
        sysmeta = None
        if SYSTEM_METADATA in (expected_attrs or ()):
            sysmeta = db.instance_system_metadata_get_many(
                context, [uuid])[uuid]
        return cls._from_row(context, row, sysmeta)

    def create(self):
        """Insert this instance and its system metadata."""
        values = {name: getattr(self, name) for name in self.obj_what_changed()
                  if name not in self.READ_ONLY}
        sysmeta = dict(self._sysmeta or {})
        row = db.instance_create(self._context, values, sysmeta)
        self._load_row(row)
        self._set_loaded_sysmeta(sysmeta)

    def save(self, expected_task_state=None, expected_vm_state=None):
        """Write changed columns and the system metadata delta, atomically.

        ``expected_task_state`` (a task state, or a list of them in which
        None means "no task": ``[None]``) makes the write conditional, as
        in Nova: it happens only if the instance's task state in the
        database is still one of them, else UnexpectedTaskStateError is
        raised and nothing is written. Without it nothing is checked.
        ``expected_vm_state`` (a list) conditions the write on the
        vm_state the same way (InstanceInvalidState).
        """
        values = {name: getattr(self, name) for name in self.obj_what_changed()
                  if name not in self.READ_ONLY}
        updates, deletes = self._sysmeta_delta()
        if expected_task_state is not None and not isinstance(
                expected_task_state, (list, tuple)):
            expected_task_state = [expected_task_state]
        if not (values or updates or deletes or expected_task_state):
            return
        row = db.instance_update(self._context, self.uuid, values,
                                 updates, deletes,
                                 expected_task_state=expected_task_state,
                                 expected_vm_state=expected_vm_state)
        self._load_row(row)
        if self._sysmeta is not None:
            object.__setattr__(self, '_orig_sysmeta', dict(self._sysmeta))

    def refresh(self):
        """Reload columns and system metadata from the database."""
        self._load_row(db.instance_get_by_uuid(self._context, self.uuid))
        object.__setattr__(self, '_sysmeta', None)

    def destroy(self):
        """Soft-delete this instance and its system metadata."""
        db.instance_destroy(self._context, self.uuid)
        self._load_row(db.instance_get_by_uuid(self._context, self.uuid,
                                               read_deleted=True))

    def __repr__(self):
        return 'Instance(uuid=%s, host=%s, vm_state=%s)' % (
            self.uuid, self.host, self.vm_state)

    def __copy__(self):
        clone = Instance._from_row(self._context, {
            name: getattr(self, name) for name in self.FIELDS})
        if self._sysmeta is not None:
            object.__setattr__(clone, '_sysmeta', copy.copy(self._sysmeta))
            object.__setattr__(clone, '_orig_sysmeta',
                               copy.copy(self._orig_sysmeta))
        return clone


class InstanceList:
    """Queries that return several instances."""

    @staticmethod
    def _build(context, rows, expected_attrs):
        sysmeta = {}
        if SYSTEM_METADATA in (expected_attrs or ()):
            # One query for the whole page, not one per instance.
            sysmeta = db.instance_system_metadata_get_many(
                context, [row['uuid'] for row in rows])
        return [Instance._from_row(context, row, sysmeta.get(row['uuid']))
                for row in rows]

    @classmethod
    def get_by_host(cls, context, host, expected_attrs=None):
        """Every non-deleted instance whose ``host`` is ``host``."""
        rows = db.instance_get_all_by_host(context, host)
        return cls._build(context, rows, expected_attrs)

    @classmethod
    def iter_by_filters(cls, context, filters, expected_attrs=None,
                        page_size=1000):
        """Yield the non-deleted instances matching ``filters``, page by page.

        Memory holds one page at a time whatever the number of instances.
        """
        marker = None
        while True:
            rows = db.instance_get_page(context, filters, page_size, marker)
            if not rows:
                return
            yield from cls._build(context, rows, expected_attrs)
            marker = rows[-1]['id']


# -- online data migrations (nova-manage db online_data_migrations) -----------

def _resolve_machine_types(context, rows):
    """{machine type: [instance uuid]} of the rows resolution can decide.

    Each row goes through the one resolution function, as a spawn would:
    image property, then configuration, then the built-in default for
    the guest arch. Rows with the same architecture and image properties
    resolve alike, so each such combination is resolved once (a batch
    holds a handful of them), and the rows are grouped by the value they
    get: one insert statement per value. A row it cannot decide (an arch
    with no default, an image property that is no machine type) is left
    out and logged.
    """
    resolved = {}
    by_inputs = {}
    for row in rows:
        inputs = (row['architecture'],
                  tuple(sorted(row['system_metadata'].items())))
        if inputs not in by_inputs:
            by_inputs[inputs] = _resolve_machine_type(context, row)
        machine_type, guest_arch = by_inputs[inputs]
        if machine_type and not fields.is_valid_machine_type(machine_type):
            # From a user's image ('pc i440fx'): never recorded.
            LOG.warning('Instance %s asks for machine type %r, which is '
                        'not one; it stays unrecorded. Set one with '
                        'nova-manage libvirt update_machine_type.',
                        row['uuid'], machine_type)
        elif machine_type:
            resolved.setdefault(machine_type, []).append(row['uuid'])
        else:
            LOG.warning('No machine type can be resolved for instance %s '
                        '(architecture %s); set one with nova-manage '
                        'libvirt update_machine_type.', row['uuid'],
                        guest_arch)
    return resolved


def _resolve_machine_type(context, row):
    """(machine type or None, guest arch) that resolution gives ``row``."""
    instance = Instance(context, uuid=row['uuid'],
                        architecture=row['architecture'],
                        system_metadata=row['system_metadata'])
    return (resolution.get_machine_type(instance.image_meta, instance),
            resolution.get_guest_arch(instance.image_meta, instance))


# Rows per page of an online data migration: one keyset read, then
# write transactions of insert-if-absent statements (one per machine
# type) of RECORD_CHUNK rows each.
MIGRATION_BATCH = 1000
# Rows per write transaction. A client saving one of them waits until
# that transaction ends: at 1M on MariaDB a whole page's took 0.6-1.1 s
# (the benchmark's writer beside the migration), against the one second
# any client may wait (contributor guide, "Changing the cell
# database").
RECORD_CHUNK = 250


def _walk(start):
    """The (after id, below id) ranges a migration reads, in order.

    From ``start`` (instance_get_hostless_start_without_sysmeta's hint)
    to the end, then from the first instance up to ``start``, so that
    nothing before the hint is missed; from the first instance to the
    end when there is no hint.
    """
    if start is None:
        return [(0, None)]
    return [(start - 1, None), (0, start)]


def _record_page(context, key, rows):
    """Resolve and record one page of rows, RECORD_CHUNK rows a
    transaction; return how many resolved."""
    resolved = 0
    for start in range(0, len(rows), RECORD_CHUNK):
        by_value = _resolve_machine_types(
            context, rows[start:start + RECORD_CHUNK])
        db.instance_system_metadata_record_hostless(context, key, by_value)
        resolved += sum(len(uuids) for uuids in by_value.values())
    return resolved


def populate_missing_machine_types(context, max_count, progress=None):
    """Record the machine type of instances without a host.

    Instances on a host are recorded by that host's nova-compute; live
    instances with no host (shelved offloaded, never scheduled) and no
    record, except BUILDING ones, are recorded here by resolution, up to
    ``max_count`` of them (None: all of them). The work is read a page
    of MIGRATION_BATCH at a time (a keyset page of the host index, with
    the image properties resolution needs), and each page recorded
    straight away, in transactions of RECORD_CHUNK rows, by one
    insert-if-absent ... SELECT per machine type, which checks again that
    each instance is still host-less, live and not being built; a value
    recorded meanwhile wins. A page reads one row more than it records,
    to know whether the walk has ended. With a ``max_count`` the walk
    starts where a bisection says the unrecorded instances begin, so that
    each call of a ``--max-count`` loop costs what it records, not the
    instances earlier calls recorded; without one it reads every range
    anyway, and starts at the first instance. Rows that cannot be
    resolved are skipped (found, not done) so they never block the rows
    after them.
    ``progress(found, done, remaining)`` is called after each page;
    ``remaining`` is 0 after a page that ends the walk, None otherwise
    (unknown: counting would cost as much as the migration). Returns
    (found, done); raises DBSchemaBehind on a cell that needs db sync.
    """
    # Before anything is written: code ahead of its schema refuses.
    db.check_schema(context)
    key = resolution.MACHINE_TYPE_SYSMETA_KEY
    # What resolution reads of an instance without a host: its image's.
    image_keys = [image_meta_obj.SYSMETA_IMAGE_PREFIX + prop for prop in (
        resolution.MACHINE_TYPE_IMAGE_PROPERTY,
        resolution.ARCH_IMAGE_PROPERTY)]
    walk = _walk(None if max_count is None else
                 db.instance_get_hostless_start_without_sysmeta(context, key))
    found = done = 0
    for number, (after, below) in enumerate(walk, 1):
        more = True
        while more and (max_count is None or done < max_count):
            size = MIGRATION_BATCH if max_count is None else \
                min(max_count - done, MIGRATION_BATCH)
            rows = db.instance_get_hostless_without_sysmeta(
                context, key, after, size + 1, below_id=below,
                with_keys=image_keys)
            more = len(rows) > size
            rows = rows[:size]
            if not rows:
                break
            recorded = _record_page(context, key, rows)
            found += len(rows)
            done += recorded
            after = rows[-1]['id']
            if progress is not None:
                ended = not more and number == len(walk)
                progress(len(rows), recorded, 0 if ended else None)
    return found, done
