"""Start-up recovery: what a restart of nova-compute cut off.

nova-compute can die between any two steps of an operation. Every step
that matters is one conditional write (the instance's task state, a
migration's status, see ``ComputeManager``), so the cell database says
how far an operation got. ``recover_host`` runs in ``init_host``, before
machine types are recorded, and leaves every instance of the host in a
state a user can act on, with one domain, defined from its record:

====================  ===================================================
cut off in            start-up
====================  ===================================================
build, rebuild        ERROR with a fault; the domain, if any, is kept
                      (a rebuild or a delete can follow), as in Nova
evacuation            finished here: its migration is 'accepted', the
                      instance recorded, so the domain is defined here
stop, start,          the task is cleared and the operation run again,
hard reboot, delete   as in Nova (a reboot is hard if the domain is not
                      running)
unshelve              undone: an offloaded instance goes back to
                      SHELVED_OFFLOADED without a host or a domain, a
                      shelved one to SHELVED, its domain stopped
cold migration,       migrating, post-migrating: rolled back; the source
source side           defines the domain again, the migration is 'error'
cold migration,       post-migrating, finished: finished; the domain is
destination side      defined here, the instance RESIZED (confirm or
                      revert can follow)
confirm               'finished': the task is cleared (RESIZED);
                      'confirmed': the confirm's last save is made
revert                'finished': the task is cleared (RESIZED);
                      'reverting': finished by the source, which defines
                      the domain again (or, if the instance is back
                      already, moves the migration on); the destination
                      removes its own
anything else         the task is cleared; the power state is the
                      domain's
====================  ===================================================

An evacuation to this host cut off before it claimed its instance is
marked 'failed' (the instance never left its host), one cut off after its
last save 'done'. Last, the domains this host defined for instances that
now live elsewhere (evacuated or reverted away while it was down) are
removed, as Nova's ``_destroy_evacuated_instances`` does, and only those:
a domain another host defined, one without nova's metadata (defined before
it was written) or one of an instance the cell does not know is never
touched. An
operation that fails again here leaves its instance in ERROR with a fault,
as it would have the first time; start-up goes on with the others.
"""

import logging

from nova.compute import machine_type_records
from nova.compute import power_state
from nova.compute import services
from nova.compute import task_states
from nova.compute import vm_states
from nova import exception
from nova import objects
from nova.objects import migration as migration_obj

LOG = logging.getLogger(__name__)


def recover_host(manager, context):
    """Recover the operations cut off on ``manager``'s host; see above.

    Returns the number of instances whose operation was recovered.
    """
    recovered = _finish_reverts_to_here(manager, context)
    _end_evacuations_to_here(manager, context)
    # System metadata only for the few with a task (loaded on first use).
    for instance in objects.InstanceList.get_by_host(context, manager.host):
        if instance.task_state is not None:
            _recover(manager, context, instance)
            recovered += 1
    _remove_stale_domains(manager, context)
    return recovered


def _recover(manager, context, instance):
    """Run the recovery of ``instance``'s task; never raises."""
    task = instance.task_state
    LOG.warning('Instance %s: task %s was cut off by a restart of '
                'nova-compute on host %s; recovering it',
                instance.uuid, task, manager.host)
    handler = _HANDLERS.get(task, _clear_task)
    try:
        handler(manager, context, instance)
    except exception.UnexpectedTaskStateError as exc:
        # Another service moved it on meanwhile: theirs to finish.
        LOG.info('Instance %s not recovered: %s', instance.uuid, exc)
    except Exception:
        # The operation failed again; its own error handling put the
        # instance in ERROR with a fault where it could.
        LOG.exception('Recovery of instance %s (task %s) failed',
                      instance.uuid, task)


# -- what each cut-off task becomes -------------------------------------------

def _clear_task(manager, context, instance):
    """Clear the task; keep the vm_state; take the domain's power state."""
    task = instance.task_state
    instance.task_state = None
    instance.power_state = manager.driver.get_power_state(instance)
    instance.save(expected_task_state=[task])


def _retry(operation, *args):
    """Clear the task, then run ``operation`` (a manager method) again."""
    def retry(manager, context, instance):
        _clear_task(manager, context, instance)
        getattr(manager, operation)(context, instance, *args)
    return retry


def _retry_reboot(manager, context, instance):
    """Reboot again: hard if it was hard or the domain is not running."""
    hard = (instance.task_state == task_states.REBOOTING_HARD
            or manager.driver.get_power_state(instance)
            != power_state.RUNNING)
    _clear_task(manager, context, instance)
    manager.reboot_instance(context, instance, 'HARD' if hard else 'SOFT')


def _error_out(manager, context, instance):
    """ERROR with a fault saying why; the domain, if any, is kept."""
    manager._add_fault(context, instance, exception.NovaException(
        'task %s was cut off by a restart of nova-compute on host %s'
        % (instance.task_state, manager.host)))
    manager._set_final_state(instance, vm_states.ERROR,
                             manager.driver.get_power_state(instance))


def _recover_rebuild(manager, context, instance):
    """An evacuation to this host is finished; a rebuild errors out."""
    try:
        migration = objects.Migration.get_by_instance_and_status(
            context, instance.uuid, migration_obj.ACCEPTED)
    except exception.MigrationError:
        migration = None
    if (migration is None
            or migration.migration_type != migration_obj.EVACUATION
            or migration.dest_compute != manager.host):
        _error_out(manager, context, instance)
        return
    manager._finish_evacuation(context, instance, migration)


def _undo_unshelve(manager, context, instance):
    """Back to the shelved state it was unshelved from."""
    if instance.vm_state == vm_states.SHELVED_OFFLOADED:
        # Only a domain the unshelve defined here.
        manager.driver.destroy_own(instance)
        instance.host = None
        instance.node = None
        state = power_state.NOSTATE
    else:
        manager.driver.power_off(instance)
        state = power_state.SHUTDOWN
    manager._set_final_state(instance, instance.vm_state, state)


def _roll_back_migration(manager, context, instance):
    """Source side cut off: the instance stays here, as it was."""
    try:
        migration = objects.Migration.get_by_instance_and_status(
            context, instance.uuid, migration_obj.MIGRATING,
            migration_obj.POST_MIGRATING)
    except exception.MigrationError:
        # Cut off before the migration row was written: nothing moved.
        _clear_task(manager, context, instance)
        return
    _define_here_and_settle(manager, context, instance, migration,
                            manager.driver.finish_revert_migration,
                            migration.old_vm_state, migration_obj.ERROR)


def _finish_migration(manager, context, instance):
    """Destination side cut off: finish it; the instance ends RESIZED."""
    migration = objects.Migration.get_by_instance_and_status(
        context, instance.uuid, migration_obj.POST_MIGRATING,
        migration_obj.FINISHED)
    _define_here_and_settle(manager, context, instance, migration,
                            manager.driver.finish_migration,
                            vm_states.RESIZED, migration_obj.FINISHED)


def _define_here_and_settle(manager, context, instance, migration, define,
                            vm_state, status):
    """Define the domain here from the record, then the last saves.

    ``define``: the driver method that (re)defines it, whatever the kill
    left of it. The migration moves to ``status`` unless it is there;
    the instance ends in ``vm_state``, its record pinned as the
    operation would have.
    """
    power_on = migration.old_vm_state != vm_states.STOPPED
    read = machine_type_records.read_record(instance)
    with manager._error_out_on_failure(context, instance):
        reported = define(instance, power_on=power_on)
        if migration.status != status:
            migration.move_on(status, migration.status)
    manager._set_final_state(
        instance, vm_state,
        power_state.RUNNING if power_on else power_state.SHUTDOWN,
        record=manager._pin_record(context, instance, read, reported))


def _recover_confirm(manager, context, instance):
    """Confirmed already: make the last save. Else it can be asked again."""
    migration = objects.Migration.get_by_instance_and_status(
        context, instance.uuid, migration_obj.FINISHED,
        migration_obj.CONFIRMED)
    if migration.status == migration_obj.FINISHED:
        _clear_task(manager, context, instance)
    else:
        manager._complete_confirm(instance, migration)


def _recover_revert(manager, context, instance):
    """Destination of a revert: remove the domain here, hand it back.

    Not yet 'reverting': nothing was undone, it can be asked again. Else
    the source finishes the revert, now if its nova-compute runs, or at
    its own start-up (_finish_reverts_to_here).
    """
    migration = objects.Migration.get_by_instance_and_status(
        context, instance.uuid, migration_obj.FINISHED,
        migration_obj.REVERTING)
    if migration.status == migration_obj.FINISHED:
        _clear_task(manager, context, instance)
        return
    manager.driver.destroy_own(instance)
    try:
        source = services.get(migration.source_compute)
    except exception.MigrationError:
        LOG.warning('Instance %s: the revert of migration %s is finished '
                    'by host %s when its nova-compute starts',
                    instance.uuid, migration.uuid, migration.source_compute)
        return
    source._finish_revert_migration(context, instance, migration)


_HANDLERS = {
    task_states.SPAWNING: _error_out,
    task_states.REBUILDING: _recover_rebuild,
    task_states.REBUILD_SPAWNING: _error_out,
    task_states.POWERING_OFF: _retry('stop_instance'),
    task_states.POWERING_ON: _retry('start_instance'),
    task_states.REBOOTING: _retry_reboot,
    task_states.REBOOTING_HARD: _retry_reboot,
    task_states.DELETING: _retry('terminate_instance'),
    task_states.UNSHELVING: _undo_unshelve,
    task_states.RESIZE_MIGRATING: _roll_back_migration,
    task_states.RESIZE_FINISH: _finish_migration,
    task_states.RESIZE_CONFIRMING: _recover_confirm,
    task_states.RESIZE_REVERTING: _recover_revert,
}


# -- reverts and stale domains ------------------------------------------------

def _finish_reverts_to_here(manager, context):
    """Finish the reverts to this host that a restart cut off.

    The instance's host is still the destination until the revert's last
    save, so these are found by migration, not by instance; an instance
    already back here only needs its migration moved on. Returns how
    many.
    """
    migrations = objects.Migration.get_all_from_host(
        context, manager.host, migration_obj.REVERTING)
    for migration in migrations:
        instance = objects.Instance.get_by_uuid(
            context, migration.instance_uuid,
            expected_attrs=['system_metadata'])
        LOG.warning('Instance %s: the revert of migration %s was cut off; '
                    'finishing it on host %s', instance.uuid,
                    migration.uuid, manager.host)
        try:
            if instance.host == manager.host and instance.task_state is None:
                migration.move_on(migration_obj.REVERTED,
                                  migration_obj.REVERTING)
            else:
                manager._finish_revert_migration(context, instance,
                                                 migration)
        except Exception:
            LOG.exception('Cannot finish the revert of instance %s',
                          instance.uuid)
    return len(migrations)


def _evacuations(context, host, side):
    """The 'accepted' evacuations from (side 'from') or to host ``host``."""
    get = (objects.Migration.get_all_from_host if side == 'from'
           else objects.Migration.get_all_to_host)
    return [migration for migration in
            get(context, host, migration_obj.ACCEPTED)
            if migration.migration_type == migration_obj.EVACUATION]


def _end_evacuations_to_here(manager, context):
    """Settle the evacuations to this host that no task carries on.

    The claim moves the instance here: one still on its source never
    started ('failed', it can be evacuated again); one here with no task
    made its last save and only missed 'done'.
    """
    for migration in _evacuations(context, manager.host, 'to'):
        instance = objects.Instance.get_by_uuid(context,
                                                migration.instance_uuid)
        if instance.task_state is not None:
            continue
        status = (migration_obj.DONE if instance.host == manager.host
                  else migration_obj.FAILED)
        LOG.warning('Instance %s: evacuation %s to host %s was cut off; '
                    'it is %s', instance.uuid, migration.uuid, manager.host,
                    status)
        migration.move_on(status, migration_obj.ACCEPTED)


def _remove_stale_domains(manager, context):
    """Remove this host's domains of instances that live elsewhere now.

    Only domains this host defined (driver.list_own_domains), of
    instances whose host is another and that either have no task in
    flight (a move in progress keeps its domains) or are being evacuated
    from here. A domain whose instance this cell does not know (deleted,
    or not nova's to judge) is left alone, as Nova leaves those to a
    periodic task an operator configures.
    """
    here = {instance.uuid for instance in
            objects.InstanceList.get_by_host(context, manager.host)}
    evacuated = {migration.instance_uuid for migration in
                 _evacuations(context, manager.host, 'from')}
    for uuid in manager.driver.list_own_domains() - here:
        try:
            instance = objects.Instance.get_by_uuid(context, uuid)
        except exception.InstanceNotFound:
            continue
        if instance.task_state is not None and uuid not in evacuated:
            continue
        if manager.driver.destroy_own(instance):
            LOG.warning('Removed the domain of instance %s from host %s: '
                        'the instance is on host %s now', uuid,
                        manager.host, instance.host)
