"""NovaException and the named errors the services and commands raise.

Every message is written for an operator: it names the instance, host,
cell or URI concerned, and never a database password.
"""


class NovaException(Exception):
    """Base of all nova errors; ``msg_fmt`` is filled from the kwargs."""

    msg_fmt = 'An unknown exception occurred.'

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            message = self.msg_fmt % kwargs
        self.message = message
        super().__init__(message)

    def format_message(self):
        return self.message


class ConfigError(NovaException):
    msg_fmt = 'Invalid configuration: %(reason)s'


class InvalidInput(NovaException):
    msg_fmt = 'Invalid input: %(reason)s'


class InstanceNotFound(NovaException):
    msg_fmt = 'Instance %(instance_id)s could not be found.'


class InstanceMappingNotFound(NovaException):
    msg_fmt = 'Instance %(uuid)s has no instance mapping.'


class CellMappingNotFound(NovaException):
    msg_fmt = 'Cell %(uuid)s has no mapping.'


class NoCellsMapped(CellMappingNotFound):
    msg_fmt = ('No cell is mapped in the API database, so no instance can '
               'be found: map the cells first (nova-manage cell_v2 '
               'simple_cell_setup, or create_cell and map_instances).')


class HostMappingNotFound(NovaException):
    msg_fmt = 'Host %(name)s is not mapped to any cell.'


class ServiceNotFound(NovaException):
    msg_fmt = 'Service %(binary)s on host %(host)s could not be found.'


class DBConnectionError(NovaException):
    msg_fmt = 'Cannot reach database %(url)s: %(reason)s'


class DBVersionNotFound(NovaException):
    msg_fmt = ('Unknown database version %(version)s for the %(database)s '
               'database.')


class DBDuplicatesDuringIndexBuild(NovaException):
    msg_fmt = ('The unique key %(index)s of %(table)s could not be built: '
               'duplicated rows were written while it was being built, '
               '%(attempts)d times. Upgrade or stop the services that '
               'write them, then run db sync again; it resumes where it '
               'stopped.')


class DBSchemaBehind(NovaException):
    msg_fmt = ('The cell database is at schema revision %(revision)s; this '
               'code needs %(needed)s. Run nova-manage db sync first.')


class DBSyncWaitTimeout(NovaException):
    msg_fmt = ('db sync stopped after waiting %(waited)d s for %(what)s: '
               '%(holders)s. Run it again once that session has ended (it '
               'resumes where it stopped), or raise '
               '[database]sync_wait_timeout.')


class WriterInTransaction(NovaException):
    msg_fmt = ('%(name)s replays its transaction after a deadlock and must '
               'not be called inside another transaction.')


class HypervisorUnavailable(NovaException):
    msg_fmt = 'Cannot connect to libvirt at %(uri)s: %(reason)s'


class UnexpectedTaskStateError(NovaException):
    msg_fmt = ('Instance %(instance_uuid)s: another action got there '
               'first (task state %(actual)s, expected %(expected)s).')


class InstanceInvalidState(NovaException):
    msg_fmt = ('Instance %(instance_uuid)s in %(attr)s %(state)s; '
               '%(method)s is not possible in that state.')


class InvalidMachineType(NovaException):
    msg_fmt = ('Machine type %(mtype)s is not valid for instance '
               '%(instance_uuid)s: %(reason)s')


class UnsupportedMachineType(NovaException):
    msg_fmt = ('Machine type %(mtype)s is not supported by host %(host)s '
               '(architecture %(arch)s).')


class InstanceDomainNotFound(NovaException):
    msg_fmt = 'No libvirt domain for instance %(instance_uuid)s.'


class MigrationError(NovaException):
    msg_fmt = 'Migration error: %(reason)s'


# -- machine type operator commands (nova-manage libvirt, nova-status) -------
# Each class is one exit code of ``nova-manage libvirt``; see
# doc/source/cli/nova-manage.rst.

class InvalidUUID(NovaException):
    msg_fmt = '%(uuid)s is not a valid UUID.'


class MachineTypeUpdateInvalidState(InstanceInvalidState):
    msg_fmt = ('Instance %(instance_uuid)s is in vm_state %(state)s: its '
               'machine type can be changed (from %(existing)s to %(new)s) '
               'only when it is stopped, shelved or shelved_offloaded. Stop '
               'or shelve it first, or use --force.')


class MachineTypeUnknownForEvacuation(NovaException):
    msg_fmt = ('Instance %(instance_uuid)s has no recorded machine type and '
               'its image names none; host %(host)s, where it ran, is down '
               'and cannot say which one its guest ran. Evacuating it to '
               '%(dest)s would give it that host\'s default: other '
               'hardware. Record the type first (nova-manage libvirt '
               'update_machine_type %(instance_uuid)s TYPE --force, TYPE '
               'being what virsh dumpxml shows on %(host)s, or what '
               '[libvirt]hw_machine_type said there), then evacuate again.')


class MachineTypeNotYetRecorded(MachineTypeUpdateInvalidState):
    msg_fmt = ('Instance %(instance_uuid)s on host %(host)s has no recorded '
               'machine type yet: what its guest runs is known once '
               'nova-compute on %(host)s, upgraded, has started and recorded '
               'it. Restart (or upgrade) nova-compute there, then run the '
               'command again; or use --force to set %(new)s without that '
               'check.')


class InvalidMachineTypeUpdate(NovaException):
    msg_fmt = ('Refusing to change the machine type of %(target)s from '
               '%(existing)s to %(new)s: %(reason)s. Use --force to do it '
               'anyway; the guest will then see different hardware.')


class MachineTypeUnsupported(NovaException):
    msg_fmt = ('Machine type %(mtype)s is not supported for %(target)s: '
               '%(reason)s.')


class MachineTypeSyntaxError(MachineTypeUnsupported):
    msg_fmt = ("%(mtype)s is not a machine type: a machine type is letters, "
               "digits, '.', '_' and '-', starting with a letter or digit, "
               "at most %(max_len)d characters. Nothing was changed.")


class MachineTypeUnsupportedByHost(MachineTypeUnsupported):
    msg_fmt = ('Machine type %(mtype)s is not supported by host %(host)s '
               '(architecture %(arch)s), where instance %(instance_uuid)s '
               '(vm_state %(state)s) is; its machine type stays '
               '%(existing)s. Use --force to record it anyway.')


class MachineTypeUpdateInstanceBusy(NovaException):
    msg_fmt = ('Instance %(instance_uuid)s has an operation in flight '
               '(task state %(task_state)s): its machine type is left as '
               'it is. Run the command again once the operation has '
               'ended.')


class MachineTypeUpdateConflict(NovaException):
    msg_fmt = ('Instance %(instance_uuid)s changed while its machine type '
               'was being updated; nothing was written. Run the command '
               'again.')


class CellUnavailable(NovaException):
    msg_fmt = 'Cell %(cell)s did not answer: %(reason)s.'
