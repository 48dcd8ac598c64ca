"""The cell database: instances, their system metadata, services.

The schema is owned by the Alembic revisions in ``migrations/``; these
tables describe the head revision, and a test checks that they agree.
"""

import sqlalchemy as sa

from nova.db import models_base

METADATA = sa.MetaData()

# The revisions of migrations/versions, oldest first: these tables are the
# last one's. Code that finds an earlier one in a cell refuses to work on
# it (nova.db.main.api.check_schema); a later one is a newer release's,
# which only adds.
REVISIONS = ('001_baseline', '002_machine_type_unique_sysmeta',
             '003_host_machine_types', '004_instances_host_id_idx',
             '005_machine_type_drift', '006_migrations',
             '007_sysmeta_key_value_id_idx')

INSTANCES = sa.Table(
    'instances', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('uuid', sa.String(36), nullable=False),
    sa.Column('user_id', sa.String(255)),
    sa.Column('project_id', sa.String(255)),
    sa.Column('image_ref', sa.String(255)),
    sa.Column('display_name', sa.String(255)),
    sa.Column('host', sa.String(255)),
    sa.Column('node', sa.String(255)),
    sa.Column('architecture', sa.String(255)),
    sa.Column('vm_state', sa.String(255)),
    sa.Column('task_state', sa.String(255)),
    sa.Column('power_state', sa.Integer),
    sa.Column('launched_at', sa.DateTime),
    sa.Column('terminated_at', sa.DateTime),
    *models_base.nova_columns(),
    sa.UniqueConstraint('uuid', name='uniq_instances0uuid'),
    sa.Index('instances_host_deleted_id_idx', 'host', 'deleted', 'id'),
    sa.Index('instances_deleted_vm_state_idx', 'deleted', 'vm_state'),
)

# Keys compare exactly, as Python compares them: on MySQL/MariaDB a
# binary NO PAD collation (revision 002 sets it; MySQL 8 names it
# utf8mb4_0900_bin, see nova.db.online_schema.EXACT_COLLATIONS).
EXACT_KEY = sa.String(255).with_variant(
    sa.String(255, collation='utf8mb4_nopad_bin'), 'mysql', 'mariadb')

# One key of an instance's system metadata. The machine type revision
# made (instance_uuid, key, deleted) unique: an instance has at most one
# live row per key, so concurrent recorders can insert-if-absent without
# a lock.
INSTANCE_SYSTEM_METADATA = sa.Table(
    'instance_system_metadata', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('instance_uuid', sa.String(36),
              sa.ForeignKey('instances.uuid'), nullable=False),
    sa.Column('key', EXACT_KEY, nullable=False),
    sa.Column('value', sa.String(255)),
    *models_base.nova_columns(),
    sa.UniqueConstraint(
        'instance_uuid', 'key', 'deleted',
        name='uniq_instance_system_metadata0instance_uuid0key0deleted'),
    sa.Index('instance_uuid', 'instance_uuid'),
    sa.Index('instance_system_metadata_key_value_id_idx',
             'key', 'deleted', 'value', 'id'),
)

# Why an operation on an instance failed, as the operator sees it.
INSTANCE_FAULTS = sa.Table(
    'instance_faults', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('instance_uuid', sa.String(36),
              sa.ForeignKey('instances.uuid')),
    sa.Column('code', sa.Integer, nullable=False),
    sa.Column('message', sa.String(255)),
    sa.Column('details', sa.Text),
    sa.Column('host', sa.String(255)),
    *models_base.nova_columns(),
    sa.Index('instance_faults_instance_uuid_deleted_created_at_idx',
             'instance_uuid', 'deleted', 'created_at'),
)

SERVICES = sa.Table(
    'services', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('uuid', sa.String(36)),
    sa.Column('host', sa.String(255)),
    sa.Column('binary', sa.String(255)),
    sa.Column('topic', sa.String(255)),
    sa.Column('report_count', sa.Integer, nullable=False, default=0),
    sa.Column('disabled', sa.Boolean, default=False),
    sa.Column('version', sa.Integer, default=0),
    sa.Column('last_seen_up', sa.DateTime),
    *models_base.nova_columns(),
    sa.UniqueConstraint('host', 'binary', 'deleted',
                        name='uniq_services0host0binary0deleted'),
)

# A machine type a compute host's libvirt reports it supports. Written by
# nova-compute at start-up so that the operator commands can check a
# machine type against the host without reaching its libvirt.
# ``canonical`` is the versioned type an alias resolves to on that host.
HOST_MACHINE_TYPES = sa.Table(
    'host_machine_types', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('host', sa.String(255), nullable=False),
    sa.Column('arch', sa.String(32), nullable=False),
    sa.Column('name', sa.String(255), nullable=False),
    sa.Column('canonical', sa.String(255)),
    sa.Column('deprecated', sa.Boolean, nullable=False, default=False),
    *models_base.nova_columns(),
    sa.UniqueConstraint('host', 'arch', 'name',
                        name='uniq_host_machine_types0host0arch0name'),
)

# An instance whose live domain runs another machine type than recorded.
# Written by nova-compute at start-up for its host (the host's rows are
# replaced each time), read by nova-status. ``recorded`` is the record
# when the host compared, ``running`` what libvirt reported.
MACHINE_TYPE_DRIFT = sa.Table(
    'machine_type_drift', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('host', sa.String(255), nullable=False),
    sa.Column('instance_uuid', sa.String(36), nullable=False),
    sa.Column('recorded', sa.String(255), nullable=False),
    sa.Column('running', sa.String(255), nullable=False),
    *models_base.nova_columns(),
    sa.UniqueConstraint('host', 'instance_uuid',
                        name='uniq_machine_type_drift0host0instance_uuid'),
)

# A cold migration or an evacuation of an instance, from its start to its
# end. Kept in the database, not in one nova-compute's memory, so that a
# confirm, a revert or start-up's recovery works after either host
# restarted. A cold migration's ``status`` goes migrating ->
# post-migrating -> finished, then confirmed, or reverting -> reverted
# (error on failure); an evacuation's accepted -> done (or failed). See
# doc/source/contributor/architecture.rst, "Cold migrations".
# ``old_vm_state`` is the vm_state to come back to (ACTIVE or STOPPED).
MIGRATIONS = sa.Table(
    'migrations', METADATA,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('uuid', sa.String(36), nullable=False),
    sa.Column('instance_uuid', sa.String(36), nullable=False),
    sa.Column('source_compute', sa.String(255)),
    sa.Column('dest_compute', sa.String(255)),
    sa.Column('source_node', sa.String(255)),
    sa.Column('dest_node', sa.String(255)),
    sa.Column('migration_type', sa.String(32)),
    sa.Column('status', sa.String(255)),
    sa.Column('old_vm_state', sa.String(255)),
    *models_base.nova_columns(),
    sa.UniqueConstraint('uuid', name='uniq_migrations0uuid'),
    sa.Index('migrations_instance_uuid_and_status_idx',
             'deleted', 'instance_uuid', 'status'),
)
