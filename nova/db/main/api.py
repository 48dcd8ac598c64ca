"""Queries on the cell database.

Functions take a RequestContext first; ``context.db_connection`` picks
the cell (see ``nova.context.target_cell``), ``[database]`` otherwise.
Anything that touches many rows is one set-based statement.
"""

import functools

from oslo_config import cfg
from oslo_db.sqlalchemy import enginefacade
from oslo_utils import timeutils
import sqlalchemy as sa

from nova.db import utils as db_utils
from nova.db.main import models
from nova import exception

CONF = cfg.CONF


INSTANCES = models.Instance.__table__
SYSMETA = models.InstanceSystemMetadata.__table__
FAULTS = models.InstanceFault.__table__
SERVICES = models.Service.__table__
HOST_MACHINE_TYPES = models.HostMachineType.__table__


def create_context_manager(connection):
    """A transaction context manager for one cell database URL."""
    db_utils.ensure_sqlite_directory(connection)
    manager = enginefacade.transaction_context()
    manager.configure(connection=connection, sqlite_fk=True,
                      max_retries=CONF.database.max_retries,
                      retry_interval=CONF.database.retry_interval)
    return manager


_main_context_manager = None


def _get_main_context_manager():
    """The [database] context manager, configured on first use."""
    global _main_context_manager
    if _main_context_manager is None:
        db_utils.ensure_sqlite_directory(CONF.database.connection)
        manager = enginefacade.transaction_context()
        manager.configure(sqlite_fk=True)
        _main_context_manager = manager
    return _main_context_manager


def reset():
    """Forget the [database] context manager (tests switch databases)."""
    global _main_context_manager
    if _main_context_manager is not None:
        _main_context_manager.dispose_pool()
    _main_context_manager = None


def get_context_manager(context):
    """The context manager of the cell ``context`` targets."""
    if context.db_connection is not None:
        return context.db_connection
    return _get_main_context_manager()


def get_engine(context):
    """The writer engine of the cell ``context`` targets."""
    return get_context_manager(context).writer.get_engine()


def pick_context_manager_writer(f):
    """Run ``f(context, ...)`` in a writer transaction of the context's cell."""
    @functools.wraps(f)
    def wrapper(context, *args, **kwargs):
        with get_context_manager(context).writer.using(context):
            return f(context, *args, **kwargs)
    return wrapper


def pick_context_manager_reader(f):
    """Run ``f(context, ...)`` in a reader transaction of the context's cell."""
    @functools.wraps(f)
    def wrapper(context, *args, **kwargs):
        with get_context_manager(context).reader.using(context):
            return f(context, *args, **kwargs)
    return wrapper


def _dialect(context):
    return context.session.get_bind().dialect.name


def _execute(context, stmt, params=None):
    return context.session.execute(stmt, params) if params is not None \
        else context.session.execute(stmt)


# -- instances ---------------------------------------------------------------

_INSTANCE_COLUMNS = [c.name for c in INSTANCES.columns]


def _instance_row_to_dict(row):
    return dict(row._mapping)


@pick_context_manager_writer
def instance_create(context, values, system_metadata):
    """Insert an instance and its system metadata; return the new row."""
    values = dict(values)
    values.setdefault('created_at', timeutils.utcnow())
    values.setdefault('deleted', 0)
    result = _execute(context, INSTANCES.insert().values(**values))
    instance_id = result.inserted_primary_key[0]
    _sysmeta_insert(context, values['uuid'], system_metadata)
    return _instance_get(context, uuid=values['uuid'], id=instance_id)


def _instance_get(context, uuid, id=None, read_deleted=False):
    query = sa.select(INSTANCES).where(INSTANCES.c.uuid == uuid)
    if id is not None:
        query = query.where(INSTANCES.c.id == id)
    if not read_deleted:
        query = query.where(INSTANCES.c.deleted == 0)
    row = _execute(context, query).first()
    if row is None:
        raise exception.InstanceNotFound(instance_id=uuid)
    return _instance_row_to_dict(row)


@pick_context_manager_reader
def instance_get_by_uuid(context, uuid, read_deleted=False):
    """The instance row as a dict; InstanceNotFound if there is none."""
    return _instance_get(context, uuid, read_deleted=read_deleted)


@pick_context_manager_reader
def instance_get_all_by_host(context, host):
    """Every non-deleted instance on ``host``, ordered by id."""
    query = (sa.select(INSTANCES)
             .where(INSTANCES.c.host == host, INSTANCES.c.deleted == 0)
             .order_by(INSTANCES.c.id))
    return [_instance_row_to_dict(r) for r in _execute(context, query)]


@pick_context_manager_reader
def instance_get_page(context, filters, limit, marker_id=None):
    """One page of non-deleted instances matching ``filters``, by id.

    ``filters`` maps column names to a value or a list of values (None
    matches NULL). Keyset paging on id: pass the last id seen as
    ``marker_id`` for the next page, so no page costs more than the first.
    """
    query = sa.select(INSTANCES).where(INSTANCES.c.deleted == 0)
    for column, value in filters.items():
        col = INSTANCES.c[column]
        if isinstance(value, (list, tuple, set)):
            query = query.where(col.in_(list(value)))
        elif value is None:
            query = query.where(col.is_(None))
        else:
            query = query.where(col == value)
    if marker_id is not None:
        query = query.where(INSTANCES.c.id > marker_id)
    query = query.order_by(INSTANCES.c.id).limit(limit)
    return [_instance_row_to_dict(r) for r in _execute(context, query)]


@pick_context_manager_writer
def instance_update(context, uuid, values, sysmeta_updates, sysmeta_deletes,
                    expected_task_state=None):
    """Save changed columns and a system metadata delta in one transaction.

    ``sysmeta_updates`` {key: value} are upserted, ``sysmeta_deletes`` keys
    soft-deleted. Returns the updated instance row.
    """
    if values:
        values = dict(values, updated_at=timeutils.utcnow())
        stmt = INSTANCES.update().where(INSTANCES.c.uuid == uuid,
                                        INSTANCES.c.deleted == 0)
        result = _execute(context, stmt.values(**values))
        if result.rowcount == 0:
            raise exception.InstanceNotFound(instance_id=uuid)
    if sysmeta_updates:
        _sysmeta_upsert(context, uuid, sysmeta_updates)
    if sysmeta_deletes:
        _sysmeta_soft_delete(context, [uuid], keys=sysmeta_deletes)
    return _instance_get(context, uuid)


@pick_context_manager_writer
def instance_destroy(context, uuid):
    """Soft-delete an instance and its system metadata (deleted = id)."""
    now = timeutils.utcnow()
    result = _execute(
        context,
        INSTANCES.update()
        .where(INSTANCES.c.uuid == uuid, INSTANCES.c.deleted == 0)
        .values(deleted=INSTANCES.c.id, deleted_at=now, updated_at=now,
                terminated_at=now))
    if result.rowcount == 0:
        raise exception.InstanceNotFound(instance_id=uuid)
    _sysmeta_soft_delete(context, [uuid])


# -- system metadata ---------------------------------------------------------

def _sysmeta_rows(triples):
    """Rows to insert from (instance_uuid, key, value) triples."""
    now = timeutils.utcnow()
    return [{'instance_uuid': uuid, 'key': key, 'value': value,
             'deleted': 0, 'created_at': now}
            for uuid, key, value in triples]


def _sysmeta_insert(context, uuid, metadata):
    if metadata:
        _execute(context, SYSMETA.insert(),
                 _sysmeta_rows((uuid, k, v) for k, v in metadata.items()))


def _sysmeta_upsert(context, uuid, metadata):
    # INSERT ... ON CONFLICT (instance_uuid, key, deleted) DO UPDATE
    #     SET value = excluded.value, updated_at = excluded.created_at
    stmt = db_utils.upsert(_dialect(context), SYSMETA,
                           ['instance_uuid', 'key', 'deleted'], ['value'])
    _execute(context, stmt,
             _sysmeta_rows((uuid, k, v) for k, v in metadata.items()))


def _sysmeta_soft_delete(context, uuids, keys=None):
    # UPDATE instance_system_metadata SET deleted = id, deleted_at = now
    #  WHERE instance_uuid IN (...) [AND key IN (...)] AND deleted = 0
    now = timeutils.utcnow()
    stmt = SYSMETA.update().where(SYSMETA.c.instance_uuid.in_(uuids),
                                  SYSMETA.c.deleted == 0)
    if keys is not None:
        stmt = stmt.where(SYSMETA.c.key.in_(list(keys)))
    _execute(context, stmt.values(deleted=SYSMETA.c.id, deleted_at=now,
                                  updated_at=now))


@pick_context_manager_reader
def instance_system_metadata_get_many(context, uuids):
    """{uuid: {key: value}} of the live system metadata of ``uuids``."""
    result = {uuid: {} for uuid in uuids}
    if not uuids:
        return result
    query = sa.select(SYSMETA.c.instance_uuid, SYSMETA.c.key,
                      SYSMETA.c.value).where(
        SYSMETA.c.instance_uuid.in_(list(uuids)), SYSMETA.c.deleted == 0)
    for uuid, key, value in _execute(context, query):
        result[uuid][key] = value
    return result


@pick_context_manager_writer
def instance_system_metadata_record(context, key, values, overwrite=False):
    """Record ``key`` for many instances in one statement.

    ``values`` is {uuid: value}. With ``overwrite`` False the statement is
    insert-if-absent: a value already recorded wins. With True it is an
    upsert, for values read from a live domain, which beat computed ones.
    Returns nothing: MySQL counts a skipped duplicate as a matched row, so
    the driver's rowcount cannot tell inserted rows from skipped ones.
    """
    if not values:
        return
    rows = _sysmeta_rows((uuid, key, v) for uuid, v in values.items())
    dialect = _dialect(context)
    if overwrite:
        stmt = db_utils.upsert(dialect, SYSMETA,
                               ['instance_uuid', 'key', 'deleted'], ['value'])
    else:
        stmt = db_utils.insert_if_absent(dialect, SYSMETA)
    _execute(context, stmt, rows)


# -- faults ------------------------------------------------------------------

@pick_context_manager_writer
def instance_fault_create(context, instance_uuid, code, message, host,
                          details=None):
    """Record why an operation on an instance failed."""
    _execute(context, FAULTS.insert().values(
        instance_uuid=instance_uuid, code=code, message=message[:255],
        details=details, host=host, deleted=0,
        created_at=timeutils.utcnow()))


@pick_context_manager_reader
def instance_fault_get_latest(context, instance_uuid):
    """The newest fault of an instance as a dict, or None."""
    row = _execute(context, sa.select(FAULTS)
                   .where(FAULTS.c.instance_uuid == instance_uuid,
                          FAULTS.c.deleted == 0)
                   .order_by(FAULTS.c.id.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


# -- services ----------------------------------------------------------------

@pick_context_manager_reader
def service_get_by_host_and_binary(context, host, binary):
    row = _execute(context, sa.select(SERVICES).where(
        SERVICES.c.host == host, SERVICES.c.binary == binary,
        SERVICES.c.deleted == 0)).first()
    if row is None:
        raise exception.ServiceNotFound(host=host, binary=binary)
    return dict(row._mapping)


@pick_context_manager_reader
def service_get_all_by_binary(context, binary):
    return [dict(r._mapping) for r in _execute(context, sa.select(SERVICES)
            .where(SERVICES.c.binary == binary, SERVICES.c.deleted == 0)
            .order_by(SERVICES.c.host))]


@pick_context_manager_writer
def service_create_or_update(context, host, binary, values):
    """Create the (host, binary) service row or update it; return it."""
    now = timeutils.utcnow()
    result = _execute(context, SERVICES.update().where(
        SERVICES.c.host == host, SERVICES.c.binary == binary,
        SERVICES.c.deleted == 0).values(updated_at=now, **values))
    if result.rowcount == 0:
        _execute(context, SERVICES.insert().values(
            host=host, binary=binary, created_at=now, deleted=0,
            report_count=0, **values))
    row = _execute(context, sa.select(SERVICES).where(
        SERVICES.c.host == host, SERVICES.c.binary == binary,
        SERVICES.c.deleted == 0)).one()
    return dict(row._mapping)


# -- machine types a host supports -------------------------------------------

@pick_context_manager_writer
def host_machine_types_replace(context, host, machine_types):
    """Replace what ``host`` reports it supports with ``machine_types``.

    ``machine_types`` is a list of dicts with arch, name, canonical and
    deprecated. One DELETE and one bulk INSERT, in one transaction.
    """
    _execute(context, HOST_MACHINE_TYPES.delete().where(
        HOST_MACHINE_TYPES.c.host == host))
    if machine_types:
        now = timeutils.utcnow()
        _execute(context, HOST_MACHINE_TYPES.insert(),
                 [dict(mt, host=host, deleted=0, created_at=now)
                  for mt in machine_types])


@pick_context_manager_reader
def host_machine_types_get(context, host):
    """The machine types ``host`` reported, as a list of dicts."""
    return [dict(r._mapping) for r in _execute(
        context, sa.select(HOST_MACHINE_TYPES)
        .where(HOST_MACHINE_TYPES.c.host == host)
        .order_by(HOST_MACHINE_TYPES.c.arch, HOST_MACHINE_TYPES.c.name))]
