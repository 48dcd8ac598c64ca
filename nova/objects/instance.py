"""Instance and InstanceList: an instance row and its system metadata."""

import copy
import logging

from nova.db.main import api as db
from nova import machine_type as resolution
from nova.objects import base
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

    def save(self, expected_task_state=None):
        """Write changed columns and the system metadata delta, atomically.

        ``expected_task_state`` (a task state, or a list of them in which
        None means "no task": ``[None]``) makes the write conditional, as
        in Nova: it happens only if the instance's task state in the
        database is still one of them, else UnexpectedTaskStateError is
        raised and nothing is written. Without it nothing is checked.
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
                                 expected_task_state=expected_task_state)
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
    """{uuid: machine type} for the rows resolution can decide.

    Each row goes through the one resolution function, as a spawn would:
    image property, then configuration, then the built-in default for
    the guest arch. Rows with the same architecture and image properties
    resolve alike, so each such combination is resolved once (a batch
    holds a handful of them). A row it cannot decide (an arch with no
    default) is left out and logged.
    """
    resolved = {}
    by_inputs = {}
    for row in rows:
        inputs = (row['architecture'],
                  tuple(sorted(row['system_metadata'].items())))
        if inputs not in by_inputs:
            by_inputs[inputs] = _resolve_machine_type(context, row)
        machine_type, guest_arch = by_inputs[inputs]
        if machine_type:
            resolved[row['uuid']] = machine_type
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


# Rows per SELECT and bulk INSERT of an online data migration: each
# batch is its own short transaction.
MIGRATION_BATCH = 1000


def populate_missing_machine_types(context, max_count, progress=None):
    """Record the machine type of instances without a host.

    Instances on a host are recorded by that host's nova-compute; live
    instances with no host (shelved offloaded, never scheduled) and no
    record, except BUILDING ones, are recorded here by resolution, up to
    ``max_count`` of them. One anti-join reads the ids of all of them
    (which also says how many are left after each batch); then, in
    batches of MIGRATION_BATCH, one SELECT by id checks each is still
    host-less and unrecorded and brings its image properties, and one bulk
    insert-if-absent records them, so a value recorded meanwhile wins.
    Rows that cannot be resolved are skipped (found, not done) so they
    never block the rows after them. ``progress(found, done, remaining)``
    is called after each batch. Returns (found, done).
    """
    key = resolution.MACHINE_TYPE_SYSMETA_KEY
    # What resolution reads of an instance without a host: its image's.
    image_keys = [image_meta_obj.SYSMETA_IMAGE_PREFIX + prop for prop in (
        resolution.MACHINE_TYPE_IMAGE_PROPERTY,
        resolution.ARCH_IMAGE_PROPERTY)]
    ids = db.instance_get_hostless_ids_without_sysmeta(context, key)
    found = done = read = 0
    while done < max_count and read < len(ids):
        batch = ids[read:read + min(max_count - done, MIGRATION_BATCH)]
        read += len(batch)
        rows = db.instance_get_hostless_without_sysmeta(
            context, key, batch, with_keys=image_keys)
        resolved = _resolve_machine_types(context, rows)
        db.instance_system_metadata_record(context, key, resolved)
        found += len(rows)
        done += len(resolved)
        if progress is not None:
            progress(len(rows), len(resolved), len(ids) - read)
    return found, done
