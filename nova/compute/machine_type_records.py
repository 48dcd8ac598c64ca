"""Recording the machine types of instances that have none yet.

Two recorders live here, both used by the compute manager: the bulk one
of compute start-up (every unrecorded instance of a host) and the one for
a single legacy instance before its domain is defined again. Both follow
one rule: the machine type of a live domain wins and is written as an
upsert; a computed one (the resolution function, when there is no domain)
is written insert-if-absent, so it never replaces a value already there.
"""

import logging

from nova.db.main import api as db
from nova import objects
from nova.objects import fields
from nova.objects import image_meta as image_meta_obj
from nova.virt.libvirt import utils as libvirt_utils

LOG = logging.getLogger(__name__)

KEY = libvirt_utils.MACHINE_TYPE_SYSMETA_KEY
# The only system metadata the resolution function reads besides the
# record: the image properties hw_machine_type and hw_architecture, as
# build copied them. The start-up query loads just these.
RESOLUTION_SYSMETA_KEYS = tuple(
    image_meta_obj.SYSMETA_IMAGE_PREFIX + prop
    for prop in (libvirt_utils.MACHINE_TYPE_IMAGE_PROPERTY,
                 libvirt_utils.ARCH_IMAGE_PROPERTY))


def record_host_instances(context, host, driver):
    """Record every unrecorded non-deleted instance of ``host``.

    Whatever the number of instances: one query finds them (any
    vm_state), one libvirt listing reads their domains, and at most two
    statements write the records. An instance whose machine type cannot be
    resolved is logged and left for the next start. Returns the numbers
    recorded (from live domains, computed).
    """
    unrecorded = db.instance_get_all_by_host_without_sysmeta(
        context, host, KEY, RESOLUTION_SYSMETA_KEYS)
    if not unrecorded:
        return 0, 0
    # Listed after the query: a domain defined in between is seen, and a
    # spawn that records in between wins over our computed guess.
    live_types = driver.get_instance_machine_types()
    live, computed = {}, {}
    for row in unrecorded:
        if live_types.get(row['uuid']):
            live[row['uuid']] = live_types[row['uuid']]
            continue
        machine_type = _resolve_without_domain(context, row)
        if machine_type is not None:
            computed[row['uuid']] = machine_type
    db.instance_system_metadata_record(context, KEY, live, overwrite=True)
    db.instance_system_metadata_record(context, KEY, computed)
    return len(live), len(computed)


def _resolve_without_domain(context, row):
    """Resolve the machine type of an instance that has no domain.

    ``row`` is one result of the unrecorded-instances query. Returns the
    machine type, or None after logging why there is none usable.
    """
    instance = objects.Instance(
        context, uuid=row['uuid'], architecture=row['architecture'],
        image_ref=row['image_ref'], system_metadata=row['system_metadata'])
    try:
        machine_type = libvirt_utils.get_machine_type(instance.image_meta,
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


def ensure_recorded(context, instance, driver):
    """Record a machine type for a legacy instance that has none.

    Called before an operation defines the instance's domain, so that it
    is defined from a record. The instance's domain on ``driver``'s host
    wins; without one the resolution function decides. The value is read
    back after writing, so a recorder that got there first is the one
    obeyed. Returns nothing; ``instance.system_metadata`` holds the record
    (unless no machine type could be resolved at all).
    """
    if instance.system_metadata.get(KEY):
        return
    live = driver.get_instance_machine_type(instance)
    machine_type = live or libvirt_utils.get_machine_type(instance.image_meta,
                                                          instance)
    if machine_type is None:
        return
    db.instance_system_metadata_record(context, KEY,
                                       {instance.uuid: machine_type},
                                       overwrite=live is not None)
    recorded = db.instance_system_metadata_get_many(
        context, [instance.uuid])[instance.uuid][KEY]
    instance.system_metadata[KEY] = recorded
    LOG.info('Recorded machine type %s for legacy instance %s (%s)',
             recorded, instance.uuid,
             'from its domain' if live else 'computed')
