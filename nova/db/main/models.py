"""The cell database: instances, their system metadata, services.

The schema is owned by the Alembic revisions in ``migrations/``; these
models describe the head revision, and a test checks that they agree.
"""

import sqlalchemy as sa
from sqlalchemy import orm

from nova.db import models_base

BASE = models_base.declarative_base()
# MySQL must store any UTF-8 text; InnoDB is required for foreign keys.
TABLE_ARGS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'}


class Instance(BASE):
    __tablename__ = 'instances'
    __table_args__ = (
        sa.UniqueConstraint('uuid', name='uniq_instances0uuid'),
        sa.Index('instances_host_deleted_id_idx', 'host', 'deleted', 'id'),
        sa.Index('instances_deleted_vm_state_idx', 'deleted', 'vm_state'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    uuid = sa.Column(sa.String(36), nullable=False)
    user_id = sa.Column(sa.String(255))
    project_id = sa.Column(sa.String(255))
    image_ref = sa.Column(sa.String(255))
    display_name = sa.Column(sa.String(255))
    host = sa.Column(sa.String(255))
    node = sa.Column(sa.String(255))
    architecture = sa.Column(sa.String(255))
    vm_state = sa.Column(sa.String(255))
    task_state = sa.Column(sa.String(255))
    power_state = sa.Column(sa.Integer)
    launched_at = sa.Column(sa.DateTime)
    terminated_at = sa.Column(sa.DateTime)

    system_metadata = orm.relationship(
        'InstanceSystemMetadata',
        primaryjoin='and_('
                    'Instance.uuid == InstanceSystemMetadata.instance_uuid,'
                    ' InstanceSystemMetadata.deleted == 0)',
        foreign_keys='InstanceSystemMetadata.instance_uuid',
        viewonly=True, lazy='raise')


class InstanceSystemMetadata(BASE):
    """One key of an instance's system metadata.

    The machine type revision made ``(instance_uuid, key, deleted)`` unique:
    an instance has at most one live row per key, so concurrent recorders
    can insert-if-absent without a lock.
    """

    __tablename__ = 'instance_system_metadata'
    __table_args__ = (
        sa.UniqueConstraint(
            'instance_uuid', 'key', 'deleted',
            name='uniq_instance_system_metadata0instance_uuid0key0deleted'),
        sa.Index('instance_uuid', 'instance_uuid'),
        sa.Index('instance_system_metadata_key_value_idx',
                 'key', 'deleted', 'value'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    instance_uuid = sa.Column(sa.String(36), sa.ForeignKey('instances.uuid'),
                              nullable=False)
    key = sa.Column(sa.String(255), nullable=False)
    value = sa.Column(sa.String(255))


class InstanceFault(BASE):
    """Why an operation on an instance failed, as the operator sees it."""

    __tablename__ = 'instance_faults'
    __table_args__ = (
        sa.Index('instance_faults_instance_uuid_deleted_created_at_idx',
                 'instance_uuid', 'deleted', 'created_at'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    instance_uuid = sa.Column(sa.String(36), sa.ForeignKey('instances.uuid'))
    code = sa.Column(sa.Integer, nullable=False)
    message = sa.Column(sa.String(255))
    details = sa.Column(sa.Text)
    host = sa.Column(sa.String(255))


class Service(BASE):
    __tablename__ = 'services'
    __table_args__ = (
        sa.UniqueConstraint('host', 'binary', 'deleted',
                            name='uniq_services0host0binary0deleted'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    uuid = sa.Column(sa.String(36))
    host = sa.Column(sa.String(255))
    binary = sa.Column(sa.String(255))
    topic = sa.Column(sa.String(255))
    report_count = sa.Column(sa.Integer, nullable=False, default=0)
    disabled = sa.Column(sa.Boolean, default=False)
    version = sa.Column(sa.Integer, default=0)
    last_seen_up = sa.Column(sa.DateTime)


class HostMachineType(BASE):
    """A machine type a compute host's libvirt reports it supports.

    Written by nova-compute at start-up so that the operator commands can
    check a machine type against the host without reaching its libvirt.
    ``canonical`` is the versioned type an alias resolves to on that host.
    """

    __tablename__ = 'host_machine_types'
    __table_args__ = (
        sa.UniqueConstraint('host', 'arch', 'name',
                            name='uniq_host_machine_types0host0arch0name'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    host = sa.Column(sa.String(255), nullable=False)
    arch = sa.Column(sa.String(32), nullable=False)
    name = sa.Column(sa.String(255), nullable=False)
    canonical = sa.Column(sa.String(255))
    deprecated = sa.Column(sa.Boolean, nullable=False, default=False)


class MachineTypeDrift(BASE):
    """An instance whose live domain runs another machine type than recorded.

    Written by nova-compute at start-up for its host (the host's rows are
    replaced each time), read by nova-status. ``recorded`` is the record
    when the host compared, ``running`` what libvirt reported.
    """

    __tablename__ = 'machine_type_drift'
    __table_args__ = (
        sa.UniqueConstraint(
            'host', 'instance_uuid',
            name='uniq_machine_type_drift0host0instance_uuid'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    host = sa.Column(sa.String(255), nullable=False)
    instance_uuid = sa.Column(sa.String(36), nullable=False)
    recorded = sa.Column(sa.String(255), nullable=False)
    running = sa.Column(sa.String(255), nullable=False)


class Migration(BASE):
    """A cold migration of an instance, from its start to confirm or revert.

    Kept in the database, not in one nova-compute's memory, so that the
    confirm or revert of a resize works after either host restarted.
    ``status`` goes migrating -> post-migrating -> finished, then
    confirming -> confirmed or reverting -> reverted (error on failure);
    ``old_vm_state`` is the vm_state to come back to (ACTIVE or STOPPED).
    """

    __tablename__ = 'migrations'
    __table_args__ = (
        sa.UniqueConstraint('uuid', name='uniq_migrations0uuid'),
        sa.Index('migrations_instance_uuid_and_status_idx',
                 'deleted', 'instance_uuid', 'status'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    uuid = sa.Column(sa.String(36), nullable=False)
    instance_uuid = sa.Column(sa.String(36), nullable=False)
    source_compute = sa.Column(sa.String(255))
    dest_compute = sa.Column(sa.String(255))
    source_node = sa.Column(sa.String(255))
    dest_node = sa.Column(sa.String(255))
    migration_type = sa.Column(sa.String(32))
    status = sa.Column(sa.String(255))
    old_vm_state = sa.Column(sa.String(255))
