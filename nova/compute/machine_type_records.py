"""Recording the machine types of instances, conditioned on what was read.

The compute manager's recorders live here: the bulk one of compute
start-up (every unrecorded instance of a host, then the drift check of
every live domain), the one for a single legacy instance before its
domain is defined again, and the one that keeps what libvirt reports
after a definition (a spawn's first record, or the pin of an alias).

Every write is conditioned on what its recorder read, so that a value
another writer (an operator's ``nova-manage libvirt update_machine_type``,
a racing recorder) committed after that read is kept, never replaced:
a recorder that read nothing inserts if absent; one that read a value
updates only while the value is still the one it read.
"""

import collections
import logging

from nova.db.main import api as db
from nova import objects
from nova.objects import fields
from nova.objects import image_meta as image_meta_obj
from nova.virt.libvirt import machine_type_utils
from nova import machine_type as resolution

LOG = logging.getLogger(__name__)

# A machine type to record in an operation's final save: ``value``, if
# the record is still ``read`` (None: if there is still none).
Record = collections.namedtuple('Record', ['context', 'read', 'value'])

KEY = resolution.MACHINE_TYPE_SYSMETA_KEY
# The only system metadata the resolution function reads besides the
# record: the image properties hw_machine_type and hw_architecture, as
# build copied them. The start-up query loads just these.
RESOLUTION_SYSMETA_KEYS = tuple(
    image_meta_obj.SYSMETA_IMAGE_PREFIX + prop
    for prop in (resolution.MACHINE_TYPE_IMAGE_PROPERTY,
                 resolution.ARCH_IMAGE_PROPERTY))


# -- reads: what each recorder's write is conditioned on ---------------------

def read_record(instance):
    """The record of ``instance`` as this process read it, or None.

    What ensure_recorded and the recorders after a definition decide
    from; their writes are conditioned on it.
    """
    return instance.system_metadata.get(KEY)


def read_unrecorded(context, host):
    """The instances of ``host`` with no record (start-up's read)."""
    return db.instance_get_all_by_host_without_sysmeta(
        context, host, KEY, RESOLUTION_SYSMETA_KEYS)


def read_host_records(context, host):
    """{uuid: record} of the recorded instances of ``host`` (drift's read).
    """
    return db.instance_sysmeta_get_by_host(context, host, KEY)


# -- conditioned writes ------------------------------------------------------

def _write_conditioned(context, uuid, read, value):
    """Record ``value`` unless the record is no longer ``read``.

    ``read`` None: insert-if-absent; else UPDATE ... WHERE value = read.
    Returns the value recorded now, which is another writer's when that
    writer got there after ``read`` was taken.
    """
    if read is None:
        db.instance_system_metadata_record(context, KEY, {uuid: value})
    else:
        db.instance_sysmeta_replace_value(context, KEY, read, value,
                                          uuid=uuid)
    return db.instance_system_metadata_get_many(
        context, [uuid])[uuid].get(KEY)


def _reload_record(instance):
    """Make ``instance`` hold the record as the database has it now.

    Its unsaved column changes are kept, and the next save does not write
    the record again: only a conditioned write may change it. Called where
    no other system metadata change is pending.
    """
    pending = {name: getattr(instance, name)
               for name in instance.obj_what_changed()}
    instance.refresh()
    for name, value in pending.items():
        setattr(instance, name, value)


def _log_kept(instance, wanted, recorded):
    """Say that a later decision was kept instead of ``wanted``."""
    if recorded != wanted:
        LOG.warning('Instance %s: machine type %s was recorded by another '
                    'writer meanwhile and is kept (not %s)', instance.uuid,
                    recorded, wanted)


# -- start-up ----------------------------------------------------------------

def record_host_instances(context, host, driver):
    """Record every unrecorded non-deleted instance of ``host``.

    Whatever the number of instances: one query finds them (any
    vm_state), one libvirt listing reads their domains, and at most two
    insert-if-absent statements write the records. An instance whose
    domain cannot be read, or whose machine type cannot be resolved, is
    logged and left for the next start. A legacy instance is recorded
    from its domain whether it runs or not: a stopped domain still says
    what the guest ran. Returns (the numbers recorded from live domains
    and computed, {uuid: machine type} of the running domains).
    """
    unrecorded = read_unrecorded(context, host)
    # Listed after the query: a domain defined in between is seen, and a
    # spawn that records in between wins over our guess.
    unreadable = {}
    running = set()
    live_types = driver.get_instance_machine_types(unreadable, running)
    live, computed = {}, {}
    for row in unrecorded:
        if row['uuid'] in unreadable:
            LOG.error('Instance %s (%s) stays unrecorded: its domain could '
                      'not be read (%s)', row['uuid'], row['vm_state'],
                      unreadable[row['uuid']])
        elif live_types.get(row['uuid']):
            live[row['uuid']] = live_types[row['uuid']]
        elif row['uuid'] in live_types:
            # A domain whose XML names no machine type: what the guest
            # runs is unknown, and a default would be a guess.
            LOG.error('Instance %s (%s) stays unrecorded: its domain names '
                      'no machine type; set one with nova-manage libvirt '
                      'update_machine_type', row['uuid'], row['vm_state'])
        else:
            machine_type = _resolve_without_domain(context, row)
            if machine_type is not None:
                computed[row['uuid']] = machine_type
    db.instance_system_metadata_record(context, KEY, live)
    db.instance_system_metadata_record(context, KEY, computed)
    return len(live), len(computed), {
        uuid: live_types[uuid] for uuid in running}


def _resolve_without_domain(context, row):
    """Resolve the machine type of an instance that has no domain.

    ``row`` is one result of the unrecorded-instances query. Returns the
    machine type, or None after logging why there is none usable.
    """
    instance = objects.Instance(
        context, uuid=row['uuid'], architecture=row['architecture'],
        image_ref=row['image_ref'], system_metadata=row['system_metadata'])
    try:
        machine_type = resolution.get_machine_type(instance.image_meta,
                                                   instance)
    except Exception:
        LOG.exception('Cannot resolve the machine type of instance %s; it '
                      'stays unrecorded', row['uuid'])
        return None
    if not fields.is_valid_machine_type(machine_type):
        LOG.warning('Instance %s (%s) has no domain and no usable machine '
                    'type (resolved: %r); it stays unrecorded',
                    row['uuid'], row['vm_state'], machine_type)
        return None
    return machine_type


def check_host_drift(context, host, live_types):
    """Compare every running domain of ``host`` with its instance's record.

    ``live_types`` is {uuid: machine type} of the running domains, as
    libvirt reported it. A record that is the alias of what runs is
    pinned (see pin_target); any other difference is drift: logged with
    both values and stored for the host, replacing what its last start
    found, for nova-status. A stopped domain is neither: its definition
    is replaced from the record at the next start, and an operator's
    change of a stopped instance's record (update_machine_type) must
    outlive a restart of nova-compute. Returns {uuid: (recorded,
    running)} of the drifting instances.
    """
    records = read_host_records(context, host)
    drifts = {}
    for uuid, recorded in sorted(records.items()):
        running = live_types.get(uuid)
        if running is None or running == recorded:
            continue
        if _is_pin(recorded, running):
            _pin_on_start(context, uuid, recorded, running)
            continue
        LOG.warning('Instance %s on host %s runs machine type %s but %s is '
                    'recorded', uuid, host, running, recorded)
        drifts[uuid] = (recorded, running)
    db.machine_type_drift_replace(context, host, drifts)
    return drifts


def _pin_on_start(context, uuid, recorded, running):
    """Pin an alias record to the versioned type its live domain runs."""
    now = _write_conditioned(context, uuid, recorded, running)
    if now == running:
        LOG.info('Pinned machine type %s of instance %s to %s, which its '
                 'domain runs', recorded, uuid, running)


# -- one instance ------------------------------------------------------------

def ensure_recorded(context, instance, driver):
    """Record a machine type for a legacy instance that has none.

    Called before an operation defines the instance's domain, so that it
    is defined from a record. The instance's domain on ``driver``'s host
    wins; without one the resolution function decides. Written only if
    still absent, and read back, so a writer that got there first is the
    one obeyed. Returns the record (None if no machine type could be
    resolved, or resolution gave something that is no machine type);
    ``instance.system_metadata`` holds it.
    """
    read = read_record(instance)
    if read:
        return read
    live = driver.get_instance_machine_type(instance)
    machine_type = live or resolution.get_machine_type(instance.image_meta,
                                                       instance)
    if not fields.is_valid_machine_type(machine_type):
        # None, or a user's image property that is no machine type:
        # nothing is recorded, and defining the domain will say why.
        return None
    recorded = _write_conditioned(context, instance.uuid, None, machine_type)
    _reload_record(instance)
    _log_kept(instance, machine_type, recorded)
    LOG.info('Recorded machine type %s for legacy instance %s (%s)',
             recorded, instance.uuid,
             'from its domain' if live else 'computed')
    return recorded


def _is_pin(recorded, reported):
    """True if ``reported`` is the versioned form of the alias recorded."""
    old = machine_type_utils.parse_machine_type(recorded)
    new = machine_type_utils.parse_machine_type(reported)
    return (old is not None and new is not None and old.stream is None
            and new.stream is not None and old.family == new.family)


def pin_target(instance, recorded, reported):
    """The record that ``reported`` should replace ``recorded`` with, or None.

    Only an alias is replaced, by a versioned type of its family: the
    exact chipset version libvirt chose for it. A versioned record is
    never changed here; a report of another family changes nothing and
    is logged as an error, since the guest does not run what is recorded.
    """
    if reported is None or reported == recorded:
        return None
    if _is_pin(recorded, reported):
        return reported
    old = machine_type_utils.parse_machine_type(recorded)
    new = machine_type_utils.parse_machine_type(reported)
    if old is None or new is None or old.family != new.family:
        LOG.error('Instance %s: libvirt reports machine type %s for a '
                  'domain defined from the record %s, of another family; '
                  'the record is kept', instance.uuid, reported, recorded)
    return None


def record_to_write(context, instance, read, reported):
    """What the final save of an operation records, as a Record, or None.

    ``read`` is the record the domain was defined from (None for a spawn,
    which has none). With nothing read, the reported type is recorded,
    or, when libvirt reports none, the resolved value with a warning, so
    that a spawned instance is never left unrecorded. With an alias read,
    a versioned report of its family pins it (see pin_target).
    """
    if read is not None:
        value = pin_target(instance, read, reported)
        return Record(context, read, value) if value else None
    value = reported
    if value is None:
        value = resolution.get_machine_type(instance.image_meta, instance)
        LOG.warning('libvirt reports no machine type for the domain of '
                    'instance %s; recording the resolved %s', instance.uuid,
                    value)
    return Record(context, None, value) if value else None


def save_with_record(instance, record, expected_task_state=None):
    """Save ``instance``'s changed columns and ``record`` in one transaction.

    The record is written conditioned on what was read (insert-if-absent
    when nothing was, else only while the value is still the one read),
    so that a decision another writer committed meanwhile is kept; with
    ``expected_task_state`` the whole save is conditioned on it, as
    Instance.save's is. The instance is then reloaded: it holds the
    record the database has.
    """
    values = {name: getattr(instance, name)
              for name in instance.obj_what_changed()
              if name not in instance.READ_ONLY}
    recorded = db.instance_update_recording(
        record.context, instance.uuid, values, KEY, record.read,
        record.value, expected_task_state=expected_task_state)
    instance.refresh()
    _log_kept(instance, record.value, recorded)
