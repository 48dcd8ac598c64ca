"""Recorded machine types for operators: get, change, list and report.

``nova-manage libvirt`` and ``nova-status upgrade check`` only parse,
call these and print. Refusals are named exceptions (nova.exception),
one per exit code of ``nova-manage libvirt``. Commands that span cells
ask every cell in parallel; a cell that fails or does not answer is
reported as a CellUnavailable result and never hides the others.
"""

import collections
import queue
import re
import threading

from oslo_db import exception as db_exc
from oslo_utils import uuidutils

from nova.compute import vm_states
from nova import context as nova_context
from nova.db.main import api as db
from nova.db import utils as db_utils
from nova import exception
from nova import objects
from nova.objects import fields
from nova.objects import service as service_obj
from nova import machine_type as resolution

SYSMETA_KEY = resolution.MACHINE_TYPE_SYSMETA_KEY

# A guest that is not running can get another chipset at its next boot;
# changing the machine type of a running guest would surprise it later.
UPDATE_VM_STATES = (vm_states.STOPPED, vm_states.SHELVED,
                    vm_states.SHELVED_OFFLOADED)

# Rows fetched at a time from the listing's streamed query, so memory
# stays flat.
LIST_CHUNK_SIZE = 1000
# Cells list_unset_machine_type reads ahead of the one it prints, and how
# many chunks each may hold in its queue (one keyset page of the listing:
# db.LIST_ID_RANGE ids, of which at most that many unrecorded).
LIST_READ_AHEAD = 2
_LISTING_QUEUE = 50
# Instances a bulk update changes per transaction.
BULK_BATCH = 1000

# -- machine type names -------------------------------------------------------

ParsedMachineType = collections.namedtuple(
    'ParsedMachineType', ['family', 'stream', 'version'])
ParsedMachineType.__doc__ = """A machine type of a supported family.

``family`` is the alias (pc, q35, virt, s390-ccw-virtio, pseries);
``stream`` is None for the alias itself, 'upstream' for QEMU's versions
(pc-q35-8.2) and 'rhel' for RHEL's (pc-q35-rhel9.2.0); ``version`` is the
version as a tuple of ints, so that 2.10 sorts after 2.9.
"""

FAMILIES = ('pc', 'q35', 'virt', 's390-ccw-virtio', 'pseries')
# The prefix of each family's versioned names.
_PREFIX_FAMILY = {'pc-i440fx': 'pc', 'pc-q35': 'q35', 'virt': 'virt',
                  's390-ccw-virtio': 's390-ccw-virtio', 'pseries': 'pseries'}
# QEMU's versions are X.Y, a few X.Y.Z (pc-q35-4.0.1); RHEL's are X.Y.Z.
_UPSTREAM_RE = re.compile(
    r'(pc-i440fx|pc-q35|virt|s390-ccw-virtio|pseries)-(\d+\.\d+(?:\.\d+)?)')
_RHEL_RE = re.compile(r'(pc-i440fx|pc-q35)-rhel(\d+\.\d+\.\d+)')


def parse_machine_type(name):
    """Return the ParsedMachineType of ``name``, or None if unsupported."""
    if name in FAMILIES:
        return ParsedMachineType(name, None, None)
    for stream, regex in (('upstream', _UPSTREAM_RE), ('rhel', _RHEL_RE)):
        match = regex.fullmatch(name or '')
        if match:
            prefix, version = match.groups()
            return ParsedMachineType(
                _PREFIX_FAMILY[prefix], stream,
                tuple(int(part) for part in version.split('.')))
    return None


def _shorten(value, limit=80):
    """``repr(value)``, cut to ``limit`` characters, for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def check_syntax(machine_type):
    """Raise MachineTypeSyntaxError unless ``machine_type`` could be one.

    Applied whatever the flags: nothing else may reach the database (and
    then domain XML).
    """
    if not fields.is_valid_machine_type(machine_type):
        raise exception.MachineTypeSyntaxError(
            mtype=_shorten(machine_type),
            max_len=fields.MACHINE_TYPE_MAX_LEN)


def check_supported(machine_type, target):
    """Raise MachineTypeUnsupported unless ``machine_type`` is of a family.

    ``target`` names what the type is for, in the message.
    """
    if parse_machine_type(machine_type) is None:
        raise exception.MachineTypeUnsupported(
            mtype=machine_type, target=target,
            reason='it is not %s or a versioned form of those (such as '
                   'pc-i440fx-8.2, pc-q35-8.2 or pc-q35-rhel9.2.0); use '
                   '--force to record it anyway' % ', '.join(FAMILIES))


def change_refusal(existing, new):
    """Why changing a recorded ``existing`` type to ``new`` would be unsafe.

    Returns a reason, or None when the change is allowed: nothing is
    recorded yet, or ``new`` is the same family and form (alias or
    versioned, upstream or RHEL) with a version no older.
    """
    if existing is None or existing == new:
        return None
    old, target = parse_machine_type(existing), parse_machine_type(new)
    if old is None or target is None:
        return ('%s is not of a supported family, so the change cannot be '
                'checked' % (existing if old is None else new))
    if old.family != target.family:
        return 'that changes the chipset family from %s to %s' % (
            old.family, target.family)
    if (old.stream is None) != (target.stream is None):
        return ('that changes an alias to a versioned machine type'
                if old.stream is None else
                'that changes a versioned machine type to an alias')
    if old.stream != target.stream:
        return 'that changes between RHEL and upstream versions'
    if target.version < old.version:
        return '%s is older than %s' % (new, existing)
    return None


# -- cells --------------------------------------------------------------------

def _check_uuid(value):
    if not uuidutils.is_uuid_like(value):
        raise exception.InvalidUUID(uuid=_shorten(value))


def _cells(ctxt, cell_uuid=None):
    """The cells a command looks at: the one named, or every cell.

    NoCellsMapped when there is none: an answer from no cell would read
    as "nothing to do" while [database] may hold every instance.
    """
    if cell_uuid is None:
        cells = objects.CellMappingList.get_all(ctxt)
        if not cells:
            raise exception.NoCellsMapped()
        return cells
    _check_uuid(cell_uuid)
    return [objects.CellMapping.get_by_uuid(ctxt, cell_uuid)]


def _gather(ctxt, cells, fn, *args, wait=False):
    """Run ``fn(cell_context, *args)`` on ``cells`` in parallel.

    Returns [(cell, result)] in the order of ``cells``; the result of a
    cell that raised or did not answer in time is a CellUnavailable.
    With ``wait``, every cell is waited for, however long it takes: a
    writer that commits batch after batch is working, not unanswering.
    A cell that is down, or whose statement waits for a lock, still
    fails in bounded time (nova.db.main.api._with_cell_limits).
    """
    timeout = None if wait else nova_context.cell_timeout()
    results = nova_context.scatter_gather_cells(ctxt, cells, timeout, fn,
                                                *args)
    gathered = []
    for cell in cells:
        result = results[cell.uuid]
        if result is nova_context.did_not_respond_sentinel:
            result = exception.CellUnavailable(
                cell=cell.identity,
                reason='no answer within %s seconds' % timeout)
        elif isinstance(result, Exception):
            result = exception.CellUnavailable(
                cell=cell.identity, reason=db_utils.describe_error(
                    result).rstrip('.'))
        gathered.append((cell, result))
    return gathered


# -- one instance -------------------------------------------------------------

def _get_instance(ctxt, instance_uuid):
    """Find an instance through its mapping; load it with system metadata.

    Returns (context targeted at its cell, instance). Raises InvalidUUID,
    InstanceMappingNotFound or InstanceNotFound.
    """
    _, cctxt, instance = _find_instance(ctxt, instance_uuid)
    return cctxt, instance


def _find_instance(ctxt, instance_uuid):
    """(cell mapping, cell context, instance) of _get_instance."""
    _check_uuid(instance_uuid)
    mapping = objects.InstanceMapping.get_by_instance_uuid(ctxt,
                                                           instance_uuid)
    if mapping.cell_mapping is None:
        raise exception.InstanceMappingNotFound(
            message='Instance %s is not in a cell yet: its instance mapping '
                    'has no cell.' % instance_uuid)
    with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
        return mapping.cell_mapping, cctxt, objects.Instance.get_by_uuid(
            cctxt, instance_uuid, expected_attrs=['system_metadata'])


def get_machine_type(ctxt, instance_uuid):
    """Return the machine type recorded for an instance, or None."""
    _, instance = _get_instance(ctxt, instance_uuid)
    return instance.system_metadata.get(SYSMETA_KEY)


def machine_type_record(ctxt, instance_uuid):
    """What get_machine_type reads, with where the instance is.

    A dict of instance_uuid, machine_type (None when nothing is
    recorded), cell_uuid, cell_name, host and vm_state; the refusals of
    get_machine_type.
    """
    cell, _, instance = _find_instance(ctxt, instance_uuid)
    return {'instance_uuid': instance.uuid,
            'machine_type': instance.system_metadata.get(SYSMETA_KEY),
            'cell_uuid': cell.uuid, 'cell_name': cell.name,
            'host': instance.host, 'vm_state': instance.vm_state}


def current_machine_type(instance):
    """(machine type the instance has now, how that is known).

    The record when there is one. Without one, what its next definition
    would use: resolution (image property, configuration, built-in
    default). There is no fresher per-instance source: nova-compute
    records every unrecorded instance of its host from the live domain
    when it starts, so an instance still unrecorded has had no live
    domain read by an upgraded host, and the drift rows its host stores
    concern recorded instances only.
    """
    recorded = instance.system_metadata.get(SYSMETA_KEY)
    if recorded is not None:
        return recorded, 'recorded'
    return (resolution.get_machine_type(instance.image_meta, instance),
            'from image, configuration or default')


def _shown(instance):
    """The instance's machine type as a refusal names it."""
    current, source = current_machine_type(instance)
    if source == 'recorded':
        return current
    if current is None:
        return 'none recorded'
    return 'none recorded (%s %s)' % (current, source)


def _update_refusal(cctxt, instance, existing, new):
    """The exception refusing ``existing`` -> ``new`` for ``instance``.

    None when the change is allowed. With nothing recorded the change
    rules compare ``new`` with what the instance has now
    (current_machine_type), so that ``pc`` -> ``q35`` is refused for an
    unrecorded guest that runs ``pc`` as for a recorded one.

    Checked in the order of their exit codes' documentation: vm_state
    (and an instance on a host whose nova-compute has not recorded it
    yet), family, change, then what the instance's host reported it
    supports
    (for the instance's guest architecture; a host that reported nothing
    for it cannot be checked).
    """
    shown = _shown(instance)
    if instance.vm_state not in UPDATE_VM_STATES:
        return exception.MachineTypeUpdateInvalidState(
            instance_uuid=instance.uuid, state=instance.vm_state,
            existing=shown, new=new)
    if existing is None and instance.host:
        # Its nova-compute has not recorded it from its domain: judging
        # by this controller's configuration could let pc -> q35 pass.
        return exception.MachineTypeNotYetRecorded(
            instance_uuid=instance.uuid, host=instance.host, new=new)
    target = 'instance %s (vm_state %s, machine type %s)' % (
        instance.uuid, instance.vm_state, shown)
    try:
        check_supported(new, target)
    except exception.MachineTypeUnsupported as exc:
        return exc
    reason = change_refusal(current_machine_type(instance)[0], new)
    if reason:
        return exception.InvalidMachineTypeUpdate(
            target='instance %s (vm_state %s)' % (
                instance.uuid, instance.vm_state),
            existing=shown, new=new, reason=reason)
    if instance.host:
        arch = resolution.get_guest_arch(instance.image_meta, instance)
        if db.host_machine_types_refusing(cctxt, new, hosts=[instance.host],
                                          arch=arch):
            return exception.MachineTypeUnsupportedByHost(
                mtype=new, host=instance.host, arch=arch,
                instance_uuid=instance.uuid, state=instance.vm_state,
                existing=shown)
    return None


def update_machine_type(ctxt, instance_uuid, machine_type, force=False):
    """Record ``machine_type`` for an instance; return (new, previous).

    ``previous`` is None when nothing was recorded. Setting the value
    already recorded changes nothing. Without ``force``, refuses (see
    _update_refusal) with MachineTypeUpdateInvalidState,
    MachineTypeUnsupported(ByHost) or InvalidMachineTypeUpdate; the
    syntax check (MachineTypeSyntaxError) applies even with ``force``.
    The write is conditioned on what was read, so a concurrent change
    raises MachineTypeUpdateConflict instead of being overwritten.
    """
    check_syntax(machine_type)
    cctxt, instance = _get_instance(ctxt, instance_uuid)
    db.check_schema(cctxt)
    if instance.task_state is not None:
        # Even with --force: the operation may define the domain from
        # the value it read, and the guest would run another type than
        # recorded.
        raise exception.MachineTypeUpdateInstanceBusy(
            instance_uuid=instance.uuid, task_state=instance.task_state)
    existing = instance.system_metadata.get(SYSMETA_KEY)
    if existing == machine_type:
        return machine_type, existing
    if not force:
        refusal = _update_refusal(cctxt, instance, existing, machine_type)
        if refusal is not None:
            raise refusal
    if existing is None:
        updated = _record_first(
            cctxt, instance.uuid, machine_type,
            only_states=None if force else UPDATE_VM_STATES)
    else:
        updated = db.instance_sysmeta_replace_value(
            cctxt, SYSMETA_KEY, existing, machine_type,
            only_states=None if force else UPDATE_VM_STATES,
            uuid=instance.uuid)
    if not updated:
        raise exception.MachineTypeUpdateConflict(instance_uuid=instance.uuid)
    return machine_type, existing


def _record_first(cctxt, uuid, machine_type, only_states=None):
    """Record the first machine type of an instance; True if written.

    One INSERT ... SELECT, conditioned on what update_machine_type read:
    the instance still exists, is still in ``only_states`` (when given)
    and still has no record. So a start that lands between the checks
    and the write, or a recorder (spawn, start-up, the online migration)
    that records first, makes it write nothing rather than record a type
    the checks were not made for.
    """
    try:
        return db.instance_system_metadata_record_first(
            cctxt, uuid, SYSMETA_KEY, machine_type, only_states) == 1
    except db_exc.DBDuplicateEntry:
        # A recorder inserted its row after our NOT EXISTS looked.
        return False


# -- many instances -----------------------------------------------------------

def list_unset_machine_type(ctxt, cell_uuid=None):
    """Yield lists of the UUIDs of instances with no recorded machine type.

    Live instances that are not BUILDING, of one cell or of every cell,
    cell after cell (the next cells read meanwhile), keyset pages read
    LIST_CHUNK_SIZE rows at a time, so memory does not grow with the
    number of instances. Raises InvalidUUID or
    CellMappingNotFound for a bad ``cell_uuid`` before yielding anything,
    and CellUnavailable after yielding the answers of every other cell if
    some cells failed (a cell's rows already yielded stay yielded).
    """
    failed = []
    for _, chunk in list_unset_machine_type_by_cell(ctxt, cell_uuid):
        if isinstance(chunk, exception.CellUnavailable):
            failed.append(chunk)
        else:
            yield chunk
    if failed:
        raise exception.CellUnavailable(
            message=' '.join(exc.format_message() for exc in failed))


def list_unset_machine_type_by_cell(ctxt, cell_uuid=None):
    """list_unset_machine_type's chunks with their cell, failures included.

    Raises InvalidUUID or CellMappingNotFound for a bad ``cell_uuid`` at
    once, before returning; then the iterator yields (cell, list of
    UUIDs) chunks, cell after cell, and (cell, CellUnavailable) for a
    cell that failed (after the chunks it yielded before failing).
    """
    return _unset_chunks(ctxt, _cells(ctxt, cell_uuid))


def _unset_chunks(ctxt, cells):
    """(cell, chunk) of each cell in turn; the next cells read meanwhile.

    The cell being yielded and up to LIST_READ_AHEAD cells after it are
    read by threads of their own (_CellListing), so the cells' anti-joins
    run side by side while the output stays in cell order and memory
    stays bounded whatever the number of instances.
    """
    cells = iter(cells)
    listings = collections.deque()

    def start_next():
        cell = next(cells, None)
        if cell is not None:
            listings.append(_CellListing(ctxt, cell))

    for _ in range(LIST_READ_AHEAD + 1):
        start_next()
    try:
        while listings:
            yield from listings[0].chunks()
            listings.popleft().stop()
            start_next()
    finally:
        # A consumer that gave up: stop the cells read ahead too.
        for listing in listings:
            listing.stop()


class _CellListing:
    """A thread reading one cell's unrecorded instances, chunk by chunk.

    It stays at most _LISTING_QUEUE chunks ahead of the consumer (one
    keyset page besides the one it holds), and stops when told to: a
    consumer that gives up (a closed pipe) leaves no reader behind.
    """

    def __init__(self, ctxt, cell):
        self.cell = cell
        self._queue = queue.Queue(maxsize=_LISTING_QUEUE)
        self._stopped = threading.Event()
        threading.Thread(target=self._read, args=(ctxt,), daemon=True,
                         name='list-%s' % cell.uuid).start()

    def _read(self, ctxt):
        try:
            with nova_context.target_cell(ctxt, self.cell) as cctxt:
                for chunk in db.instance_iter_uuids_without_sysmeta(
                        cctxt, SYSMETA_KEY, LIST_CHUNK_SIZE):
                    if not self._put(chunk):
                        return
        except Exception as exc:
            self._put(exception.CellUnavailable(
                cell=self.cell.identity, reason=db_utils.describe_error(
                    exc).rstrip('.')))
        self._put(None)

    def _put(self, item):
        """Queue ``item``; False if the consumer stopped the listing."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def chunks(self):
        """Yield (cell, list of UUIDs) and finally (cell, CellUnavailable)
        if the cell failed."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield self.cell, item
            if isinstance(item, exception.CellUnavailable):
                return

    def stop(self):
        self._stopped.set()


BulkUpdate = collections.namedtuple('BulkUpdate', ['updated', 'refused'])
BulkUpdate.__doc__ = """What a bulk update did (or would do) in one cell.

``updated`` is the number of instances changed (with dry_run: that would
be); ``refused`` maps a reason to the number of instances it kept.
"""


# The refusal of an instance with an operation in flight, even --force's.
BUSY = 'a task in flight (run again once it has ended)'


def _instance_refusal(vm_state, host, refusing_hosts, new):
    """Why an instance in ``vm_state`` on ``host`` may not get ``new``."""
    if vm_state not in UPDATE_VM_STATES:
        return ('vm_state %s (only %s instances can change)'
                % (vm_state, ', '.join(UPDATE_VM_STATES)))
    if host in refusing_hosts:
        return 'host %s does not support %s' % (host, new)
    return None


def _bulk_update_cell(cctxt, old, new, dry_run, force, progress):
    """Move a cell's instances recorded as ``old`` to ``new``; a BulkUpdate.

    The outcome is counted from one GROUP BY over (vm_state, host); the
    change is made in batches of BULK_BATCH instances, each its own short
    transaction carrying the same conditions, so that no other client of
    those rows waits for more than one batch, and an interrupted run is
    finished by running it again. Hosts are judged on everything they
    reported, whatever the guest architecture: without --force ``old``
    and ``new`` are of one family, hence one arch. ``progress(cell
    context, updated so far)`` is called after each batch.
    """
    groups = db.instance_sysmeta_value_groups(cctxt, SYSMETA_KEY, old)
    refusing = set()
    if not force:
        refusing = db.host_machine_types_refusing(
            cctxt, new, hosts={host for _, host, _, _ in groups if host})
    refused = collections.Counter()
    allowed = 0
    for vm_state, host, busy, count in groups:
        if busy:
            # Even --force never races an operation in flight.
            reason = BUSY
        elif force:
            reason = None
        else:
            reason = _instance_refusal(vm_state, host, refusing, new)
        if reason:
            refused[reason] += count
        else:
            allowed += count
    if dry_run or not allowed:
        return BulkUpdate(allowed, dict(refused))
    # Before anything is written: code ahead of its schema refuses.
    db.check_schema(cctxt)
    updated = 0
    after_id = 0
    while after_id is not None:
        after_id, done = db.instance_sysmeta_replace_value_batch(
            cctxt, SYSMETA_KEY, old, new, after_id, BULK_BATCH,
            only_states=None if force else UPDATE_VM_STATES,
            skip_refusing_hosts=not force)
        updated += done
        if after_id is not None and progress is not None:
            progress(cctxt, updated)
    return BulkUpdate(updated, dict(refused))


def bulk_update_machine_type(ctxt, old, new, cell_uuid=None, dry_run=False,
                             force=False, progress=None):
    """Change every instance recorded as ``old`` to ``new``, per cell.

    The rules of update_machine_type, applied set-based: the change
    ``old`` -> ``new`` itself is checked first (MachineTypeSyntaxError,
    MachineTypeUnsupported or InvalidMachineTypeUpdate, nothing written);
    then each instance's vm_state and host decide, per cell, and the
    change is written in batches (see _bulk_update_cell, which calls
    ``progress``). Returns [(cell, BulkUpdate or CellUnavailable)]; []
    when ``old`` is ``new``.
    """
    # --from too: nothing of another syntax is ever recorded, and a NUL
    # byte in it would reach PostgreSQL, which refuses it in any string.
    check_syntax(old)
    check_syntax(new)
    if old == new:
        return []
    if not force:
        check_supported(new, 'instances recorded as %s' % old)
        reason = change_refusal(old, new)
        if reason:
            raise exception.InvalidMachineTypeUpdate(
                target='instances', existing=old, new=new, reason=reason)
    return _gather(ctxt, _cells(ctxt, cell_uuid), _bulk_update_cell, old,
                   new, dry_run, force, progress, wait=not dry_run)


def machine_type_summary(ctxt, cell_uuid=None):
    """Count instances by recorded machine type and vm_state, per cell.

    Returns [(cell, {(machine type or None, vm_state): count} or
    CellUnavailable)].
    """
    def summarise(cctxt):
        return {(value, vm_state): count for value, vm_state, count in
                db.instance_sysmeta_value_counts(cctxt, SYSMETA_KEY)}
    return _gather(ctxt, _cells(ctxt, cell_uuid), summarise)


# -- nova-status --------------------------------------------------------------

UnsetReport = collections.namedtuple(
    'UnsetReport', ['total', 'hostless', 'restart', 'outdated', 'unknown'])
UnsetReport.__doc__ = """Instances of a cell without a recorded machine type.

Grouped by remedy: ``hostless`` instances (a count) need the online data
migration; the others are {host: count}: ``restart`` hosts run a
nova-compute that records (restart it), ``outdated`` ones a nova-compute
older than recording (upgrade it), ``unknown`` ones have no nova-compute
service row at all.
"""


def _unset_remedy(group):
    """Which UnsetReport field a host's group of unrecorded instances is."""
    if not group['service']:
        return 'unknown'
    if (group['version'] or 0) < service_obj.MACHINE_TYPE_RECORDING_VERSION:
        return 'outdated'
    return 'restart'


def _unset_report(cctxt):
    """The UnsetReport of one cell, from one GROUP BY."""
    hostless = 0
    hosts = {'restart': {}, 'outdated': {}, 'unknown': {}}
    for group in db.instance_count_without_sysmeta_by_host(
            cctxt, SYSMETA_KEY, 'nova-compute'):
        if group['host'] is None:
            hostless = group['count']
        else:
            hosts[_unset_remedy(group)][group['host']] = group['count']
    total = hostless + sum(sum(by_host.values()) for by_host in hosts.values())
    return UnsetReport(total, hostless, **hosts)


# The per-cell reports of nova-status upgrade check, by name: each
# f(cell context) -> that cell's report.
CHECK_REPORTS = {
    # UnsetReport
    'unset': _unset_report,
    # [{host, machine_type, problem ('deprecated' or 'unsupported'),
    # count}]: recorded types their host reports deprecated or does not
    # support.
    'refused': lambda cctxt: db.instance_sysmeta_values_refused_by_host(
        cctxt, SYSMETA_KEY),
    # [{host, instance_uuid, recorded, running, found_at}] by host then
    # instance: instances whose live domain runs another type than
    # recorded, as each host's nova-compute found at its last start and
    # is still true (db.machine_type_drift_get_all).
    'drift': lambda cctxt: db.machine_type_drift_get_all(cctxt,
                                                         SYSMETA_KEY),
}


def upgrade_check_reports(ctxt, names=tuple(CHECK_REPORTS)):
    """The CHECK_REPORTS ``names`` of every cell, each cell asked once.

    Returns [(cell, {name: report} or CellUnavailable)]. One gather for
    every report, not one per report: a cell that does not answer costs
    nova-status one cell time-out, not one per check.
    """
    def reports(cctxt):
        return {name: CHECK_REPORTS[name](cctxt) for name in names}
    return _gather(ctxt, _cells(ctxt), reports)
