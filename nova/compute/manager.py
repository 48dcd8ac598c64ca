"""ComputeManager: the life of the instances of one compute host.

Each public method is one operation as Nova's compute manager runs it: the
task state is saved, the driver acts, and the resulting vm_state,
power_state, host and node are saved. The machine type rules (the event
table in doc/source/contributor/architecture.rst, "Events") live here,
since the driver never writes to the database:

* spawn records what libvirt reports for the new domain (the resolved
  value, with a warning, if libvirt reports none), just before the save
  that makes the instance ACTIVE;
* every other operation that defines a domain uses the recorded value and,
  for a legacy instance without one, records one first
  (``machine_type_records.ensure_recorded``); when it was defined from an
  alias and libvirt reports a versioned type of its family, the versioned
  type replaces the alias just before the save that ends the operation
  (pinning);
* rebuild removes the record so that the spawn that follows records anew;
* ``init_host`` records every instance of the host that still has none,
  and stores the instances whose live domain runs another type (drift).

Every one of these writes is conditioned on what was read
(``machine_type_records``), so a later decision is never overwritten.

Methods that Nova runs as RPC casts between hosts (finishing a migration on
the destination, reverting on the source) are calls between the managers
of the two hosts here, which live in the same process (``services``). What a
cold migration needs after its start (the hosts, the vm_state to come back
to) is in the cell database's ``migrations`` table, never in a manager, so
a confirm or revert works after either host's nova-compute restarted.
"""

import contextlib
import functools
import logging

from oslo_utils import timeutils

from nova.compute import machine_type_records
from nova.compute import power_state
from nova.compute import recovery
from nova.compute import services
from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
import nova.conf
from nova.db.main import api as db
from nova import exception
from nova import machine_type as resolution
from nova import objects
from nova.objects import image_meta as image_meta_obj
from nova.objects import migration as migration_obj
from nova.virt.libvirt import driver as libvirt_driver

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

BINARY = 'nova-compute'
MACHINE_TYPE_KEY = machine_type_records.KEY
REBOOT_TYPES = ('SOFT', 'HARD')
# What instance_faults.code holds for a failed operation, as in Nova.
FAULT_CODE = 500


def expects_vm_state(*states):
    """Refuse to run the decorated operation unless vm_state is in states.

    Nova's API makes this check; doing it here too keeps the manager from
    driving an instance through a transition Nova never would. Raises
    InstanceInvalidState and changes nothing.
    """
    def decorator(method):
        @functools.wraps(method)
        def wrapper(self, context, instance, *args, **kwargs):
            if instance.vm_state not in states:
                raise exception.InstanceInvalidState(
                    instance_uuid=instance.uuid, attr='vm_state',
                    state=instance.vm_state, method=method.__name__)
            return method(self, context, instance, *args, **kwargs)
        return wrapper
    return decorator


class ComputeManager:
    """The compute service of one host, with its libvirt driver."""

    def __init__(self, host=None, compute_driver=None):
        self.host = host or CONF.host
        # Nova's libvirt node is the hypervisor's host name: the same here.
        self.nodename = self.host
        # ``compute_driver``: a LibvirtDriver of this host on its own
        # libvirt; by default [libvirt]connection_uri.
        self.driver = compute_driver or libvirt_driver.LibvirtDriver(
            self.host)
        # This process's nova-compute of the host from now on: moves of
        # other hosts reach it here. Nothing about a migration is kept in
        # the manager (see objects.Migration).
        services.register(self)

    # -- start-up -------------------------------------------------------------

    def init_host(self):
        """Start the service: register it and record what the host holds.

        Refuses (DBSchemaBehind) a cell database that needs
        ``nova-manage db sync``. Opens libvirt first (HypervisorUnavailable
        if it cannot be reached, before anything is written), creates or
        updates the nova-compute service row, replaces the machine types
        the host reports supporting, recovers the operations a restart cut
        off (``recovery``) and records the machine type of every
        instance of the host that has none. An instance RESIZED by a cold
        migration is the destination's (its host column names it): recorded
        from its domain there. Returns nothing.
        """
        context = nova_context.get_admin_context()
        # Before anything is written: code ahead of its schema refuses.
        db.check_schema(context)
        self.driver.init_host()
        objects.Service.register(context, self.host, BINARY)
        db.host_machine_types_replace(context, self.host,
                                      self.driver.get_host_machine_types())
        recovered = recovery.recover_host(self, context)
        if recovered:
            LOG.warning('Recovered %d operation(s) cut off on host %s',
                        recovered, self.host)
        live, computed, live_types = (
            machine_type_records.record_host_instances(
                context, self.host, self.driver))
        LOG.info('Recorded the machine type of %d instance(s) on host %s: '
                 '%d from their live domains, %d computed (no domain)',
                 live + computed, self.host, live, computed)
        drifts = machine_type_records.check_host_drift(
            context, self.host, live_types)
        if drifts:
            LOG.warning('%d instance(s) on host %s run another machine type '
                        'than recorded', len(drifts), self.host)

    # -- state helpers --------------------------------------------------------

    def _start_task(self, instance, task_state):
        """Claim the instance for an operation: save ``task_state``.

        As Nova's ``expected_task_state=[None]``: one conditional write
        that succeeds only if no task is in flight and the vm_state is
        still the one the operation was checked against, whatever this
        manager's copy of the instance says. Of two actions on one
        instance exactly one proceeds; the other gets
        UnexpectedTaskStateError (or InstanceInvalidState) and writes
        nothing.
        """
        instance.task_state = task_state
        instance.save(expected_task_state=[None],
                      expected_vm_state=[instance.vm_state])

    def _set_task_state(self, instance, task_state):
        """Move a claimed operation on: save its next ``task_state``.

        Conditioned on the operation's own current task state, so an
        operation that lost its claim (another action, a restart's
        recovery) stops with UnexpectedTaskStateError.
        """
        expected = instance.task_state
        instance.task_state = task_state
        instance.save(expected_task_state=[expected])

    def _set_final_state(self, instance, vm_state, state, record=None):
        """Save the stable state an operation ends in; clear the task.

        Conditioned on the operation's own task state, as _set_task_state
        is. ``record`` (from machine_type_records.record_to_write) is
        written in the same transaction, conditioned on what was read.
        """
        expected = instance.task_state
        instance.vm_state = vm_state
        instance.power_state = state
        instance.task_state = None
        if record is None:
            instance.save(expected_task_state=[expected])
        else:
            machine_type_records.save_with_record(
                instance, record, expected_task_state=[expected])

    def _add_fault(self, context, instance, exc):
        """Record why an operation on ``instance`` failed, naming this host."""
        message = (exc.format_message()
                   if isinstance(exc, exception.NovaException) else
                   '%s: %s' % (type(exc).__name__, exc))
        db.instance_fault_create(context, instance.uuid, FAULT_CODE,
                                 message, self.host)

    @contextlib.contextmanager
    def _error_out_on_failure(self, context, instance):
        """Put the instance in ERROR with a fault if the block fails.

        The exception is re-raised, as Nova's compute manager does.
        """
        try:
            yield
        except Exception as exc:
            LOG.error('Instance %s failed on host %s: %s', instance.uuid,
                      self.host, exc)
            self._add_fault(context, instance, exc)
            self._set_final_state(instance, vm_states.ERROR,
                                  instance.power_state)
            raise

    # -- build ----------------------------------------------------------------

    def build_and_run_instance(self, context, instance, image_meta):
        """Build the instance on this host from ``image_meta``.

        The image's properties are copied into system metadata as
        ``image_*`` keys, the domain is defined and started, and the
        machine type libvirt reports for it is recorded in the save that
        makes the instance ACTIVE. As in Nova (where this is an RPC cast)
        a failure is not raised: the instance is left in ERROR without a
        host, with a fault saying why (for a machine type the host does not
        support: the type and this host) and with nothing recorded.
        Returns nothing.
        """
        instance.system_metadata.update(image_meta.to_system_metadata())
        instance.host = self.host
        instance.node = self.nodename
        instance.vm_state = vm_states.BUILDING
        instance.power_state = power_state.NOSTATE
        self._start_task(instance, task_states.SPAWNING)
        read = machine_type_records.read_record(instance)
        try:
            machine_type = self.driver.spawn(context, instance, image_meta)
        except Exception as exc:
            self._fail_build(context, instance, exc)
            return
        self._finish_spawn(context, instance, read, machine_type,
                           vm_states.ACTIVE)

    def _finish_spawn(self, context, instance, read, machine_type, vm_state):
        """Record the spawned domain's machine type, then the final save.

        ``read``: the record the spawn started from (None unless a writer
        recorded one before the spawn read it).
        """
        record = machine_type_records.record_to_write(
            context, instance, read, machine_type)
        instance.launched_at = timeutils.utcnow()
        self._set_final_state(
            instance, vm_state, power_state.SHUTDOWN
            if vm_state == vm_states.STOPPED else power_state.RUNNING,
            record=record)

    def _fail_build(self, context, instance, exc):
        """Leave a failed build in ERROR, hostless, with a fault.

        Whatever domain the build defined is removed; the host and node
        are cleared as Nova does, since the instance never ran here.
        """
        LOG.error('Build of instance %s failed on host %s: %s',
                  instance.uuid, self.host, exc)
        try:
            self.driver.destroy(instance)
        except Exception:
            LOG.exception('Cannot remove the domain of failed instance %s',
                          instance.uuid)
        self._add_fault(context, instance, exc)
        instance.host = None
        instance.node = None
        self._set_final_state(instance, vm_states.ERROR, power_state.NOSTATE)

    # -- power ----------------------------------------------------------------

    @expects_vm_state(vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED,
                      vm_states.SUSPENDED, vm_states.ERROR)
    def reboot_instance(self, context, instance, reboot_type='SOFT'):
        """Reboot: 'SOFT' restarts the domain as it is (ACTIVE only), 'HARD'
        redefines it from the recorded machine type. Ends ACTIVE.
        """
        if reboot_type not in REBOOT_TYPES:
            raise exception.InvalidInput(
                reason='reboot type %r is not one of %s'
                % (reboot_type, ', '.join(REBOOT_TYPES)))
        if reboot_type == 'SOFT' and instance.vm_state != vm_states.ACTIVE:
            raise exception.InstanceInvalidState(
                instance_uuid=instance.uuid, attr='vm_state',
                state=instance.vm_state, method='soft reboot_instance')
        read = None
        if reboot_type == 'HARD':
            read = machine_type_records.ensure_recorded(context, instance,
                                                        self.driver)
        self._start_task(instance, task_states.REBOOTING_HARD
                         if reboot_type == 'HARD'
                         else task_states.REBOOTING)
        with self._error_out_on_failure(context, instance):
            reported = self.driver.reboot(instance, reboot_type)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_states.ACTIVE,
                              power_state.RUNNING,
                              record=record)

    @staticmethod
    def _pin_record(context, instance, read, reported):
        """The pin of the final save, or None (see _set_final_state).

        Pins the record if the domain defined from ``read`` (an alias)
        runs a versioned type of its family. ``read`` None: nothing was
        recorded to define from (a soft reboot), so nothing changes.
        """
        if read is None:
            return None
        return machine_type_records.record_to_write(
            context, instance, read, reported)

    @expects_vm_state(vm_states.ACTIVE, vm_states.RESCUED, vm_states.ERROR)
    def stop_instance(self, context, instance):
        """Power the instance off; its domain stays defined. Ends STOPPED."""
        self._start_task(instance, task_states.POWERING_OFF)
        with self._error_out_on_failure(context, instance):
            self.driver.power_off(instance)
        self._set_final_state(instance, vm_states.STOPPED,
                              power_state.SHUTDOWN)

    @expects_vm_state(vm_states.STOPPED)
    def start_instance(self, context, instance):
        """Redefine the domain from the record and start it. Ends ACTIVE."""
        read = machine_type_records.ensure_recorded(context, instance,
                                                    self.driver)
        self._start_task(instance, task_states.POWERING_ON)
        with self._error_out_on_failure(context, instance):
            reported = self.driver.power_on(instance)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_states.ACTIVE,
                              power_state.RUNNING,
                              record=record)

    @expects_vm_state(vm_states.ACTIVE)
    def pause_instance(self, context, instance):
        """Pause the running domain (not redefined). Ends PAUSED."""
        self._start_task(instance, task_states.PAUSING)
        with self._error_out_on_failure(context, instance):
            self.driver.pause(instance)
        self._set_final_state(instance, vm_states.PAUSED, power_state.PAUSED)

    @expects_vm_state(vm_states.PAUSED)
    def unpause_instance(self, context, instance):
        """Unpause the domain (not redefined). Ends ACTIVE."""
        self._start_task(instance, task_states.UNPAUSING)
        with self._error_out_on_failure(context, instance):
            self.driver.unpause(instance)
        self._set_final_state(instance, vm_states.ACTIVE,
                              power_state.RUNNING)

    @expects_vm_state(vm_states.ACTIVE)
    def suspend_instance(self, context, instance):
        """Save the guest's memory and stop it. Ends SUSPENDED."""
        self._start_task(instance, task_states.SUSPENDING)
        with self._error_out_on_failure(context, instance):
            self.driver.suspend(instance)
        self._set_final_state(instance, vm_states.SUSPENDED,
                              power_state.SUSPENDED)

    @expects_vm_state(vm_states.SUSPENDED)
    def resume_instance(self, context, instance):
        """Redefine the domain from the record and restore it. Ends ACTIVE."""
        read = machine_type_records.ensure_recorded(context, instance,
                                                    self.driver)
        self._start_task(instance, task_states.RESUMING)
        with self._error_out_on_failure(context, instance):
            reported = self.driver.resume(instance)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_states.ACTIVE,
                              power_state.RUNNING,
                              record=record)

    @expects_vm_state(vm_states.ACTIVE, vm_states.STOPPED, vm_states.ERROR)
    def rescue_instance(self, context, instance):
        """Start the instance in rescue, defined from the record.

        Ends RESCUED.
        """
        read = machine_type_records.ensure_recorded(context, instance,
                                                    self.driver)
        self._start_task(instance, task_states.RESCUING)
        with self._error_out_on_failure(context, instance):
            reported = self.driver.rescue(instance)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_states.RESCUED,
                              power_state.RUNNING,
                              record=record)

    @expects_vm_state(vm_states.RESCUED)
    def unrescue_instance(self, context, instance):
        """Redefine the domain from the record and start it. Ends ACTIVE."""
        read = machine_type_records.ensure_recorded(context, instance,
                                                    self.driver)
        self._start_task(instance, task_states.UNRESCUING)
        with self._error_out_on_failure(context, instance):
            reported = self.driver.unrescue(instance)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_states.ACTIVE,
                              power_state.RUNNING,
                              record=record)

    # -- shelve ---------------------------------------------------------------

    @expects_vm_state(vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED,
                      vm_states.SUSPENDED)
    def shelve_instance(self, context, instance):
        """Power the instance off, keeping its domain here. Ends SHELVED."""
        self._start_task(instance, task_states.SHELVING)
        with self._error_out_on_failure(context, instance):
            self.driver.power_off(instance)
        self._set_final_state(instance, vm_states.SHELVED,
                              power_state.SHUTDOWN)

    @expects_vm_state(vm_states.SHELVED)
    def shelve_offload_instance(self, context, instance):
        """Remove the domain and free the host. Ends SHELVED_OFFLOADED.

        The record stays. A legacy instance is recorded from its domain
        first, while that domain still exists to say what it was.
        """
        machine_type_records.ensure_recorded(context, instance, self.driver)
        self._start_task(instance, task_states.SHELVING_OFFLOADING)
        with self._error_out_on_failure(context, instance):
            self.driver.destroy(instance)
        instance.host = None
        instance.node = None
        self._set_final_state(instance, vm_states.SHELVED_OFFLOADED,
                              power_state.NOSTATE)

    @expects_vm_state(vm_states.SHELVED, vm_states.SHELVED_OFFLOADED)
    def unshelve_instance(self, context, instance):
        """Run a shelved instance on this host, defined from the record.

        An offloaded instance may land on any host; one that is only
        shelved still has its domain on its own host and must be unshelved
        there. Ends ACTIVE.
        """
        if (instance.vm_state == vm_states.SHELVED
                and instance.host != self.host):
            raise exception.InstanceInvalidState(
                instance_uuid=instance.uuid, attr='host',
                state=instance.host,
                method='unshelve_instance on host %s' % self.host)
        read = machine_type_records.ensure_recorded(context, instance,
                                                    self.driver)
        instance.host = self.host
        instance.node = self.nodename
        self._start_task(instance, task_states.UNSHELVING)
        with self._error_out_on_failure(context, instance):
            reported = self.driver.spawn(context, instance,
                                         instance.image_meta)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_states.ACTIVE,
                              power_state.RUNNING,
                              record=record)

    # -- rebuild and evacuate -------------------------------------------------

    @expects_vm_state(vm_states.ACTIVE, vm_states.STOPPED, vm_states.ERROR)
    def rebuild_instance(self, context, instance, image_meta=None,
                         recreate=False):
        """Rebuild the instance from ``image_meta``, or evacuate it here.

        Rebuild (``recreate`` False; ``image_meta`` None: the same image):
        the ``image_*`` keys are replaced by the image's and the record is
        removed, then the spawn records anew, so the new image's
        ``hw_machine_type`` or the current default applies. Evacuate
        (``recreate`` True; the instance's host is down): nothing is
        replaced and the domain is defined here from the record. A STOPPED
        instance ends STOPPED, any other ACTIVE.
        """
        if recreate:
            self._evacuate(context, instance)
            return
        image_meta = image_meta or instance.image_meta
        vm_state = self._state_after_rebuild(instance)
        self._replace_image_metadata(instance, image_meta)
        self._start_task(instance, task_states.REBUILDING)
        read = machine_type_records.read_record(instance)
        with self._error_out_on_failure(context, instance):
            self.driver.destroy(instance)
            self._set_task_state(instance, task_states.REBUILD_SPAWNING)
            machine_type = self.driver.spawn(context, instance, image_meta)
            self._power_off_if_stopped(instance, vm_state)
        self._finish_spawn(context, instance, read, machine_type, vm_state)

    @staticmethod
    def _state_after_rebuild(instance):
        """STOPPED for a stopped instance, as Nova keeps it; else ACTIVE."""
        return (vm_states.STOPPED if instance.vm_state == vm_states.STOPPED
                else vm_states.ACTIVE)

    def _power_off_if_stopped(self, instance, vm_state):
        """Stop the new domain of an instance that is to stay STOPPED."""
        if vm_state == vm_states.STOPPED:
            self.driver.power_off(instance)

    @staticmethod
    def _replace_image_metadata(instance, image_meta):
        """Swap the image_* keys for ``image_meta``'s; drop the record."""
        sysmeta = instance.system_metadata
        for key in [key for key in sysmeta
                    if key.startswith(image_meta_obj.SYSMETA_IMAGE_PREFIX)]:
            del sysmeta[key]
        sysmeta.pop(MACHINE_TYPE_KEY, None)
        sysmeta.update(image_meta.to_system_metadata())
        if image_meta.id:
            instance.image_ref = image_meta.id

    def _evacuate(self, context, instance):
        """Define and start the instance here from its record.

        As in Nova, an 'evacuation' migration names the source: written
        'accepted' before the claim, so that a restart at any later point
        knows this was an evacuation (recovery finishes it), and 'done'
        after the last save. The source's stale domain is removed by the
        source's start-up (``recovery``).
        """
        self._check_evacuation_knows_its_type(instance)
        machine_type_records.ensure_recorded(context, instance, self.driver)
        migration = objects.Migration(
            context, instance_uuid=instance.uuid,
            migration_type=migration_obj.EVACUATION,
            source_compute=instance.host, source_node=instance.node,
            dest_compute=self.host, dest_node=self.nodename,
            status=migration_obj.ACCEPTED, old_vm_state=instance.vm_state)
        migration.create()
        instance.host = self.host
        instance.node = self.nodename
        try:
            self._start_task(instance, task_states.REBUILDING)
        except Exception:
            migration.move_on(migration_obj.FAILED, migration_obj.ACCEPTED)
            raise
        self._finish_evacuation(context, instance, migration)

    def _check_evacuation_knows_its_type(self, instance):
        """Refuse to guess the machine type of an evacuated instance.

        One without a record (its host's nova-compute never recorded it)
        ran what its image named, else its host's default, which the
        source, down, cannot tell; a domain of it here (hosts sharing a
        libvirt) says it. Without either, MachineTypeUnknownForEvacuation
        names the remedy, before anything is written.
        """
        if (machine_type_records.read_record(instance)
                or instance.image_meta.properties.get(
                    resolution.MACHINE_TYPE_IMAGE_PROPERTY)
                or self.driver.get_instance_machine_type(instance)):
            return
        raise exception.MachineTypeUnknownForEvacuation(
            instance_uuid=instance.uuid, host=instance.host, dest=self.host)

    def _finish_evacuation(self, context, instance, migration):
        """Define the domain here from the record; the evacuation is done.

        Ends STOPPED for an instance evacuated STOPPED, else ACTIVE.
        """
        vm_state = (vm_states.STOPPED
                    if migration.old_vm_state == vm_states.STOPPED
                    else vm_states.ACTIVE)
        read = machine_type_records.read_record(instance)
        with self._migration_error_on_failure(context, instance, migration):
            reported = self.driver.spawn(context, instance,
                                         instance.image_meta)
            self._power_off_if_stopped(instance, vm_state)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_state, power_state.SHUTDOWN
                              if vm_state == vm_states.STOPPED
                              else power_state.RUNNING,
                              record=record)
        migration.move_on(migration_obj.DONE, migration_obj.ACCEPTED)

    # -- cold migration -------------------------------------------------------

    @expects_vm_state(vm_states.ACTIVE, vm_states.STOPPED)
    def migrate_instance(self, context, instance, dest_manager):
        """Cold-migrate the instance from this host to ``dest_manager``'s.

        The destination is checked first (it must support the recorded
        machine type); then a migration row in the cell database records
        both hosts and the vm_state to come back to, the source domain is
        removed and the destination defines one from the record. Ends
        RESIZED on the destination, waiting for confirm_migration or
        revert_migration, which may be asked of either host's
        nova-compute, restarted or not.
        """
        machine_type_records.ensure_recorded(context, instance, self.driver)
        dest_manager.driver.check_machine_type_supported(instance)
        migration = objects.Migration(
            context, instance_uuid=instance.uuid,
            migration_type=migration_obj.MIGRATION,
            source_compute=self.host, source_node=self.nodename,
            dest_compute=dest_manager.host, dest_node=dest_manager.nodename,
            status=migration_obj.MIGRATING, old_vm_state=instance.vm_state)
        self._start_task(instance, task_states.RESIZE_MIGRATING)
        with self._migration_error_on_failure(context, instance, migration):
            migration.create()
            self.driver.migrate_disk_and_power_off(instance)
            migration.move_on(migration_obj.POST_MIGRATING,
                              migration_obj.MIGRATING)
        dest_manager._finish_migration(context, instance, migration)

    @contextlib.contextmanager
    def _migration_error_on_failure(self, context, instance, migration):
        """_error_out_on_failure, and the migration ends in 'error'."""
        try:
            with self._error_out_on_failure(context, instance):
                yield
        except Exception:
            if migration.id is not None:
                try:
                    # Only over the status this operation left: a host
                    # that moved the migration on meanwhile keeps it.
                    migration.move_on(migration_obj.ERROR, migration.status)
                except Exception:
                    LOG.exception('Cannot mark migration %s of instance %s '
                                  'as failed', migration.uuid, instance.uuid)
            raise

    def _finish_migration(self, context, instance, migration):
        """Destination side: take the instance, define it from the record."""
        instance.host = self.host
        instance.node = self.nodename
        self._set_task_state(instance, task_states.RESIZE_FINISH)
        power_on = migration.old_vm_state != vm_states.STOPPED
        read = machine_type_records.read_record(instance)
        with self._migration_error_on_failure(context, instance, migration):
            reported = self.driver.finish_migration(instance,
                                                    power_on=power_on)
            migration.move_on(migration_obj.FINISHED,
                              migration_obj.POST_MIGRATING)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, vm_states.RESIZED, power_state.RUNNING
                              if power_on else power_state.SHUTDOWN,
                              record=record)

    def _finished_migration(self, context, instance):
        """The instance's migration waiting for confirm or revert.

        Read from the cell database, so this manager needs no memory of
        it. MigrationError when there is none, or when this host is
        neither its source nor its destination.
        """
        migration = objects.Migration.get_by_instance_and_status(
            context, instance.uuid, migration_obj.FINISHED)
        if self.host not in (migration.source_compute,
                             migration.dest_compute):
            raise exception.MigrationError(
                reason='host %s is neither the source nor the destination '
                       'of migration %s of instance %s'
                       % (self.host, migration.uuid, instance.uuid))
        return migration

    @expects_vm_state(vm_states.RESIZED)
    def confirm_migration(self, context, instance):
        """Keep the instance on the destination. Ends in its old vm_state.

        The source domain was already removed when the migration started,
        so there is nothing left to clean up on the source.
        """
        migration = self._finished_migration(context, instance)
        self._start_task(instance, task_states.RESIZE_CONFIRMING)
        with self._error_out_on_failure(context, instance):
            migration.move_on(migration_obj.CONFIRMED,
                              migration_obj.FINISHED)
        self._complete_confirm(instance, migration)

    def _complete_confirm(self, instance, migration):
        """The final save of a confirm: back to the old vm_state."""
        self._set_final_state(instance, migration.old_vm_state,
                              instance.power_state)

    @expects_vm_state(vm_states.RESIZED)
    def revert_migration(self, context, instance):
        """Move the instance back to the source, defined from the record.

        The destination removes its domain, then the source defines one
        again, each by the nova-compute running on that host now. Ends in
        the vm_state it had before the migration, on the source. Both
        hosts' services must be running (MigrationError otherwise), and
        the source must support the recorded machine type
        (UnsupportedMachineType otherwise), both checked before anything
        changes: the instance then stays RESIZED, its destination domain
        kept, and can be confirmed.
        """
        migration = self._finished_migration(context, instance)
        source = services.get(migration.source_compute)
        dest = services.get(migration.dest_compute)
        # Before the destination's domain goes: the record may have been
        # pinned there to a version the source's QEMU does not have.
        source.driver.check_machine_type_supported(instance)
        self._start_task(instance, task_states.RESIZE_REVERTING)
        with self._migration_error_on_failure(context, instance, migration):
            migration.move_on(migration_obj.REVERTING,
                              migration_obj.FINISHED)
        dest._revert_on_destination(context, instance, migration, source)

    def _revert_on_destination(self, context, instance, migration, source):
        """Destination side of a revert: remove the domain, hand back."""
        with self._migration_error_on_failure(context, instance, migration):
            self.driver.destroy(instance)
        source._finish_revert_migration(context, instance, migration)

    def _finish_revert_migration(self, context, instance, migration):
        """Source side of a revert: take the instance back from the record.

        The instance's last save comes before the migration's 'reverted':
        a restart in between finds the migration still 'reverting' and
        the instance already back (recovery moves the migration on).
        """
        instance.host = self.host
        instance.node = self.nodename
        power_on = migration.old_vm_state != vm_states.STOPPED
        read = machine_type_records.read_record(instance)
        with self._migration_error_on_failure(context, instance, migration):
            reported = self.driver.finish_revert_migration(
                instance, power_on=power_on)
        record = self._pin_record(context, instance, read, reported)
        self._set_final_state(instance, migration.old_vm_state,
                              power_state.RUNNING if power_on
                              else power_state.SHUTDOWN,
                              record=record)
        migration.move_on(migration_obj.REVERTED, migration_obj.REVERTING)

    # -- live migration -------------------------------------------------------

    @expects_vm_state(vm_states.ACTIVE, vm_states.PAUSED)
    def live_migrate_instance(self, context, instance, dest_manager):
        """Live-migrate the instance to ``dest_manager``'s host.

        The destination must support the recorded machine type; its
        domain is defined from the record. Keeps the vm_state (ACTIVE or
        PAUSED).
        """
        read = machine_type_records.ensure_recorded(context, instance,
                                                    self.driver)
        dest_manager.driver.check_machine_type_supported(instance)
        paused = instance.vm_state == vm_states.PAUSED
        self._start_task(instance, task_states.MIGRATING)
        with self._error_out_on_failure(context, instance):
            self.driver.live_migration(instance)
            reported = dest_manager.driver.post_live_migration_at_destination(
                instance, paused=paused)
        record = self._pin_record(context, instance, read, reported)
        instance.host = dest_manager.host
        instance.node = dest_manager.nodename
        self._set_final_state(instance, instance.vm_state,
                              power_state.PAUSED if paused
                              else power_state.RUNNING,
                              record=record)

    # -- delete ---------------------------------------------------------------

    def terminate_instance(self, context, instance):
        """Remove the domain and soft-delete the instance and its metadata.

        Returns nothing; the instance's system metadata rows, the record
        included, are soft-deleted with it.
        """
        self._start_task(instance, task_states.DELETING)
        with self._error_out_on_failure(context, instance):
            self.driver.destroy(instance)
        instance.vm_state = vm_states.DELETED
        instance.task_state = None
        instance.save(expected_task_state=[task_states.DELETING])
        instance.destroy()
