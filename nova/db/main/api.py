"""Queries on the cell database.

Functions take a RequestContext first; ``context.db_connection`` picks
the cell (see ``nova.context.target_cell``), ``[database]`` otherwise.
Anything that touches many rows is one set-based statement.
"""

import functools

from oslo_config import cfg
from oslo_db import exception as db_exc
from oslo_utils import timeutils
import sqlalchemy as sa

from nova.compute import vm_states
from nova.db import utils as db_utils
from nova.db.main import models
from nova.db import transactions
from nova import exception

CONF = cfg.CONF


INSTANCES = models.INSTANCES
SYSMETA = models.INSTANCE_SYSTEM_METADATA
FAULTS = models.INSTANCE_FAULTS
SERVICES = models.SERVICES
HOST_MACHINE_TYPES = models.HOST_MACHINE_TYPES


def create_context_manager(connection):
    """A transaction context manager for one cell database URL.

    Its connections carry the time limits of _with_cell_limits.
    """
    return transactions.create_context_manager(
        _with_cell_limits(connection),
        max_retries=CONF.database.max_retries,
        retry_interval=CONF.database.retry_interval,
        mysql_sql_mode=CONF.database.mysql_sql_mode)


def _with_cell_limits(connection):
    """``connection`` with a connect time-out and a lock-wait time-out.

    A command that spans cells must name a cell that is down or locked
    and still report the others, in bounded time: the drivers' own
    defaults wait for ever for a server that does not answer the
    connection (psycopg2) and for a table lock (MariaDB waits a day).
    So a cell's server must accept a connection within
    [DEFAULT]cell_connect_timeout seconds, and a statement waits for a
    lock at most [DEFAULT]cell_timeout seconds, then fails. Settings the
    cell's URL already has win; SQLite is left as it is.
    """
    url = sa.engine.make_url(connection)
    family = db_utils.backend_family(url.get_backend_name())
    if family == 'sqlite':
        return connection
    limits = {'connect_timeout': str(CONF.cell_connect_timeout)}
    if family == 'mysql':
        # Run by PyMySQL on every new connection.
        limits['init_command'] = ('SET SESSION lock_wait_timeout = %d'
                                  % CONF.cell_timeout)
    else:
        # libpq's options: SET lock_timeout for the whole session.
        limits['options'] = '-c lock_timeout=%ds' % CONF.cell_timeout
    limits.update(url.query)
    return url.set(query=limits).render_as_string(hide_password=False)


_main_context_manager = None


def _get_main_context_manager():
    """The [database] context manager, configured on first use."""
    global _main_context_manager
    if _main_context_manager is None:
        _main_context_manager = create_context_manager(
            CONF.database.connection)
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


def _writer_of(context):
    return get_context_manager(context).writer


def _reader_of(context):
    return get_context_manager(context).reader


# Run ``f(context, ...)`` in a writer transaction of its cell, replayed on
# a deadlock (nova.db.transactions.replayed_writer): every writer here is
# safe to replay, and none calls another.
pick_context_manager_writer = transactions.replayed_writer(_writer_of)
# Run ``f(context, ...)`` in a reader transaction of its cell.
pick_context_manager_reader = transactions.reader(_reader_of)


def _dialect(context):
    """'mysql' (MariaDB too), 'postgresql' or 'sqlite'."""
    return transactions.backend(context)


def _without_parallel_workers(context):
    """Keep PostgreSQL from planning this transaction's reads in parallel.

    For a keyset page (a LIMIT read in index order) PostgreSQL costs the
    LIMIT as a share of the whole scan and plans parallel workers, and
    starting them costs more than the page. For the transaction only
    (SET LOCAL); nothing on the other databases.
    """
    if _dialect(context) == 'postgresql':
        _execute(context, sa.text(
            'SET LOCAL max_parallel_workers_per_gather = 0'))


def _execute(context, stmt, params=None):
    return context.session.execute(stmt, params) if params is not None \
        else context.session.execute(stmt)


# -- schema ------------------------------------------------------------------

@pick_context_manager_reader
def _schema_revision(context):
    # SELECT version_num FROM alembic_version
    return _execute(context, sa.text(
        'SELECT version_num FROM alembic_version')).scalar()


def check_schema(context):
    """Refuse to work on a cell whose schema is older than this code.

    Called before a service or command writes to a cell: a writer ahead
    of its schema would fail on a table that is not there yet, or (before
    the unique key of revision 002) write a second live row of a key.
    Raises DBSchemaBehind, which names nova-manage db sync. One short
    read of the revision table.
    """
    try:
        revision = _schema_revision(context)
    except db_exc.DBNonExistentTable:
        revision = None
    if revision is None or revision in models.REVISIONS[:-1]:
        raise exception.DBSchemaBehind(
            revision=revision or 'none (never synced)',
            needed=models.REVISIONS[-1])


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


def _task_state_in(expected):
    """WHERE clause: task_state is one of ``expected`` (None: NULL)."""
    states = [s for s in expected if s is not None]
    clauses = [INSTANCES.c.task_state.in_(states)] if states else []
    if None in expected:
        clauses.append(INSTANCES.c.task_state.is_(None))
    return sa.or_(*clauses)


def _update_instance_row(context, uuid, values, expected_task_state,
                         expected_vm_state=None):
    """UPDATE the instance's columns (and updated_at), conditioned on
    ``expected_task_state`` and ``expected_vm_state`` when given;
    InstanceNotFound, UnexpectedTaskStateError or InstanceInvalidState
    when no row matched."""
    stmt = INSTANCES.update().where(INSTANCES.c.uuid == uuid,
                                    INSTANCES.c.deleted == 0)
    if expected_task_state is not None:
        stmt = stmt.where(_task_state_in(expected_task_state))
    if expected_vm_state is not None:
        stmt = stmt.where(INSTANCES.c.vm_state.in_(list(expected_vm_state)))
    result = _execute(context, stmt.values(dict(
        values, updated_at=timeutils.utcnow())))
    if result.rowcount == 0:
        actual = _instance_get(context, uuid)
        if (expected_task_state is not None and
                actual['task_state'] not in expected_task_state):
            raise exception.UnexpectedTaskStateError(
                instance_uuid=uuid, actual=actual['task_state'],
                expected=list(expected_task_state))
        raise exception.InstanceInvalidState(
            instance_uuid=uuid, attr='vm_state', state=actual['vm_state'],
            method='this operation')


@pick_context_manager_writer
def instance_update(context, uuid, values, sysmeta_updates, sysmeta_deletes,
                    expected_task_state=None, expected_vm_state=None):
    """Save changed columns and a system metadata delta in one transaction.

    ``sysmeta_updates`` {key: value} are upserted, ``sysmeta_deletes`` keys
    soft-deleted. With ``expected_task_state`` (a list of task states,
    None among them for "no task") the row is updated only if its task
    state is still one of them, in the same statement:

      UPDATE instances SET ... WHERE uuid = :uuid AND deleted = 0
         AND task_state IN (:expected)

    so of two actions that read the same state, one wins and the other
    gets UnexpectedTaskStateError, with nothing written. With
    ``expected_vm_state`` the vm_state must be one of those too
    (InstanceInvalidState otherwise). Returns the updated instance row.
    """
    if values or expected_task_state is not None:
        _update_instance_row(context, uuid, values, expected_task_state,
                             expected_vm_state)
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


# An overwritten value is stamped: revision 002's "newest wins" and any
# audit of a record rely on updated_at.
_SYSMETA_OVERWRITE = {'value': 'value', 'updated_at': 'created_at'}


def _sysmeta_upsert(context, uuid, metadata):
    # INSERT ... ON CONFLICT (instance_uuid, key, deleted) DO UPDATE
    #     SET value = excluded.value, updated_at = excluded.created_at
    stmt = db_utils.upsert(_dialect(context), SYSMETA,
                           ['instance_uuid', 'key', 'deleted'],
                           _SYSMETA_OVERWRITE)
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
    # Sorted: concurrent recorders then take their row locks in one
    # order, which keeps them from deadlocking each other.
    rows = _sysmeta_rows((uuid, key, v)
                         for uuid, v in sorted(values.items()))
    dialect = _dialect(context)
    if overwrite:
        stmt = db_utils.upsert(dialect, SYSMETA,
                               ['instance_uuid', 'key', 'deleted'],
                               _SYSMETA_OVERWRITE)
    else:
        stmt = db_utils.insert_if_absent(dialect, SYSMETA)
    if dialect != 'mysql':
        # SQLAlchemy sends an INSERT ... ON CONFLICT executemany as
        # multi-row VALUES batches only when it has RETURNING (see
        # sqlalchemy#13130); without, psycopg2 sends one statement per row:
        # 1,000 round trips for one batch of the online migration. PyMySQL
        # batches ON DUPLICATE KEY UPDATE itself.
        stmt = stmt.returning(SYSMETA.c.id)
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
    """Create the (host, binary) service row or update it; return it.

    One upsert on the unique key, so two overlapping starts of one host
    both succeed (an UPDATE then INSERT lets both insert):

      INSERT INTO services (host, binary, ..., deleted) VALUES (...)
      ON CONFLICT (host, binary, deleted) DO UPDATE SET ...,
         updated_at = excluded.created_at
    """
    now = timeutils.utcnow()
    row = dict(values, host=host, binary=binary, created_at=now, deleted=0,
               report_count=0)
    overwrite = dict({col: col for col in values}, updated_at='created_at')
    _execute(context, db_utils.upsert(
        _dialect(context), SERVICES, ['host', 'binary', 'deleted'],
        overwrite).values(**row))
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


# == Machine type queries =====================================================
# nova-manage libvirt, nova-manage db online_data_migrations and nova-status
# (nova/virt/libvirt/machine_type_utils.py, nova/objects/instance.py and
# nova/cmd/status.py), and nova-compute's start-up
# (nova/compute/machine_type_records.py). Every query is one set-based
# statement on one cell.

def _sysmeta_recorded(key):
    """EXISTS: the instance of the outer query has a live ``key`` row."""
    # EXISTS (SELECT 1 FROM instance_system_metadata s
    #          WHERE s.instance_uuid = instances.uuid AND s.key = :key
    #            AND s.deleted = 0)
    return sa.select(sa.literal(1)).where(
        SYSMETA.c.instance_uuid == INSTANCES.c.uuid,
        SYSMETA.c.key == key, SYSMETA.c.deleted == 0).exists()


def _unrecorded_instances(key):
    """WHERE clauses: live instances without ``key``, except BUILDING ones.

    An instance being built gets its record from the spawn that builds it.
    """
    return _live_not_building() + (~_sysmeta_recorded(key),)


def _live_not_building():
    """WHERE clauses: live instances, except BUILDING ones."""
    return (INSTANCES.c.deleted == 0,
            sa.or_(INSTANCES.c.vm_state.is_(None),
                   INSTANCES.c.vm_state != vm_states.BUILDING))


def _outerjoin_sysmeta(columns, with_keys):
    """Bring along one system metadata value per ``with_keys`` entry.

    Returns (the instances table outer-joined to one live sysmeta row per
    key, ``columns`` plus one ``w<n>`` value column per key). The unique
    key (instance_uuid, key, deleted) lets each join match at most one
    row, so no instance is listed twice.
    """
    # FROM instances i
    # LEFT JOIN instance_system_metadata w0
    #        ON w0.instance_uuid = i.uuid AND w0.key = :with_key0
    #           AND w0.deleted = 0
    # LEFT JOIN ... w1 ...
    joined = INSTANCES
    columns = list(columns)
    for index, with_key in enumerate(with_keys):
        alias = SYSMETA.alias('w%d' % index)
        joined = joined.outerjoin(alias, sa.and_(
            alias.c.instance_uuid == INSTANCES.c.uuid,
            alias.c.key == with_key, alias.c.deleted == 0))
        columns.append(alias.c.value.label('w%d' % index))
    return joined, columns


def _joined_sysmeta(values, with_keys):
    """{key: value} of a result row's non-NULL ``w<n>`` columns."""
    return {with_key: values['w%d' % index]
            for index, with_key in enumerate(with_keys)
            if values['w%d' % index] is not None}


def _hostless_order(context):
    """ORDER BY for host-less instances: by id, as the host index has it.

    On PostgreSQL spelled as instances_host_deleted_id_idx's columns (the
    same order, host and deleted being constant): PostgreSQL does not
    take "host IS NULL" as making host constant, and would otherwise
    sort. MariaDB, the other way round, sorts for that spelling (a
    filesort of every host-less instance under a LIMIT of one page) and
    reads the index in order for ``ORDER BY id``, as SQLite does.
    """
    if _dialect(context) == 'postgresql':
        return (INSTANCES.c.host, INSTANCES.c.deleted, INSTANCES.c.id)
    return (INSTANCES.c.id,)


def _hostless_unrecorded(key):
    """WHERE clauses: the instances the online migration records.

    Live, non-BUILDING, host-less instances without ``key``.
    """
    return (INSTANCES.c.host.is_(None),) + _unrecorded_instances(key)


@pick_context_manager_reader
def instance_get_hostless_without_sysmeta(context, key, after_id, limit,
                                          below_id=None, with_keys=()):
    """A page of the instances the online migration records.

    The first ``limit`` live, non-BUILDING, host-less instances without
    ``key`` whose id is above ``after_id`` (and below ``below_id``), by
    id: a keyset page of instances_host_deleted_id_idx, so a page costs
    the index entries it walks, whatever came before it. Each
    ``with_keys`` entry is brought along by an outer join. Returns dicts
    of id, uuid, architecture and system_metadata ({key: value} of the
    ``with_keys`` present).
    """
    # SELECT i.id, i.uuid, i.architecture, w0.value, w1.value, ...
    #   FROM instances i
    #   LEFT JOIN instance_system_metadata w0
    #          ON w0.instance_uuid = i.uuid AND w0.key = :with_key0
    #             AND w0.deleted = 0
    #  WHERE i.host IS NULL AND i.deleted = 0 AND i.vm_state != 'building'
    #    AND NOT EXISTS (SELECT 1 FROM instance_system_metadata s
    #                     WHERE s.instance_uuid = i.uuid AND s.key = :key
    #                       AND s.deleted = 0)
    #    AND i.id > :after_id [AND i.id < :below_id]
    #  ORDER BY i.id LIMIT :limit  -- PostgreSQL: i.host, i.deleted, i.id
    joined, columns = _outerjoin_sysmeta(
        [INSTANCES.c.id, INSTANCES.c.uuid, INSTANCES.c.architecture],
        with_keys)
    query = (sa.select(*columns).select_from(joined)
             .where(INSTANCES.c.id > after_id, *_hostless_unrecorded(key))
             .order_by(*_hostless_order(context)).limit(limit))
    if below_id is not None:
        query = query.where(INSTANCES.c.id < below_id)
    # EXPLAIN ANALYZE at 1M: 205 ms with workers, 102 ms without.
    _without_parallel_workers(context)
    return [{'id': row.id, 'uuid': row.uuid,
             'architecture': row.architecture,
             'system_metadata': _joined_sysmeta(row._mapping, with_keys)}
            for row in _execute(context, query)]


# Host-less instances each probe of the online migration's bisection
# looks at: enough that a stretch where 1 in 10 instances is unrecorded
# is all but certainly seen as one (0.9 ** 50 = 0.5%).
START_PROBE_WINDOW = 50
# The bisection stops when the boundary is known to this many ids: the
# walk from there costs at most as many host-less instances, a page's
# worth, and each halving saved is a probe (10 ms at 1M on PostgreSQL).
START_PRECISION = 1024


def _hostless_id_bound(context, last):
    """The lowest (``last``: highest) id of a live host-less instance."""
    # SELECT i.id FROM instances i WHERE i.host IS NULL AND i.deleted = 0
    #  ORDER BY i.id [DESC] LIMIT 1  -- PostgreSQL: see _hostless_order
    order = [c.desc() for c in _hostless_order(context)] if last \
        else _hostless_order(context)
    return _execute(context, sa.select(INSTANCES.c.id).where(
        INSTANCES.c.host.is_(None), INSTANCES.c.deleted == 0
    ).order_by(*order).limit(1)).scalar()


def _hostless_unrecorded_from(context, key, from_id):
    """Is one of the START_PROBE_WINDOW host-less instances from
    ``from_id`` on to be recorded? It costs that many index entries."""
    # SELECT 1 FROM instances i
    #   JOIN (SELECT id FROM instances
    #          WHERE host IS NULL AND deleted = 0 AND id >= :from_id
    #          ORDER BY id LIMIT :window) w ON w.id = i.id
    #  WHERE <the conditions of instance_get_hostless_without_sysmeta>
    #  LIMIT 1
    window = sa.select(INSTANCES.c.id).where(
        INSTANCES.c.host.is_(None), INSTANCES.c.deleted == 0,
        INSTANCES.c.id >= from_id).order_by(*_hostless_order(context)).limit(
        START_PROBE_WINDOW).subquery('w')
    query = sa.select(sa.literal(1)).select_from(
        INSTANCES.join(window, window.c.id == INSTANCES.c.id)).where(
        *_hostless_unrecorded(key)).limit(1)
    return _execute(context, query).first() is not None


@pick_context_manager_reader
def instance_get_hostless_start_without_sysmeta(context, key):
    """Where the online migration starts walking: past the recorded prefix.

    ``online_data_migrations --max-count N`` run in a loop records the
    host-less instances in id order, so after a few calls the first ones
    are all recorded; walking them again on every call would cost each
    call the whole prefix. A bisection over the id range finds the
    boundary instead, with about 10 probes of START_PROBE_WINDOW index
    entries each, to START_PRECISION ids: an id before which, as far as
    the probes saw, nothing is left to record. It is a hint, not a
    promise (an instance left
    unrecorded further down, one that cannot be resolved or was offloaded
    since, is not seen): the migration walks from it to the end, then
    from the start up to it. Returns that id, or None when the walk
    should start at the first host-less instance.
    """
    low = _hostless_id_bound(context, last=False)
    if low is None or _hostless_unrecorded_from(context, key, low):
        return None
    # Invariant: nothing seen to record from ``low``; something from
    # ``high`` (one past the last host-less instance stands for "yes").
    high = _hostless_id_bound(context, last=True) + 1
    while high - low > START_PRECISION:
        middle = (low + high) // 2
        if _hostless_unrecorded_from(context, key, middle):
            high = middle
        else:
            low = middle
    return low


@pick_context_manager_writer
def instance_system_metadata_record_hostless(context, key, uuids_by_value):
    """Record ``key`` for host-less instances, one statement per value.

    ``uuids_by_value`` is {value: [instance uuid]}, the values the online
    migration resolved for a page. Each statement is an insert-if-absent
    from a SELECT by uuid that checks the instances again: one unshelved
    (host set), deleted or being built since the page was read is not
    recorded, and a value recorded meanwhile wins. All in one
    transaction. Returns nothing (see instance_system_metadata_record).

    On MySQL the instances are read through their uuid index, whatever
    the planner would pick. The SELECT share-locks each row it reads,
    and the foreign key check of each insert the instance's uuid index
    entry. Read by primary key (as the planner does on a small table, or
    for ``id IN``), the statement would hold a row and then wait for its
    uuid entry, while a client updating that instance by uuid (as every
    instance save does) holds the entry and waits for the row: a
    deadlock, the client's transaction rolled back. Through the uuid
    index both lock the entry first, then the row.
    """
    now = timeutils.utcnow()
    dialect = _dialect(context)
    for value, uuids in sorted(uuids_by_value.items()):
        # INSERT INTO instance_system_metadata
        #        (instance_uuid, key, value, deleted, created_at)
        # SELECT i.uuid, :key, :value, 0, :now FROM instances i
        #  WHERE i.uuid IN (:uuids) AND i.host IS NULL AND i.deleted = 0
        #    AND i.vm_state != 'building'
        #  ORDER BY i.uuid
        # ON CONFLICT DO NOTHING  -- MySQL: ON DUPLICATE KEY UPDATE id = id
        # MySQL: FROM instances i FORCE INDEX (uniq_instances0uuid)
        rows = sa.select(
            INSTANCES.c.uuid, sa.literal(key), sa.literal(value),
            sa.literal(0), sa.literal(now, SYSMETA.c.created_at.type)
        ).where(INSTANCES.c.uuid.in_(sorted(uuids)),
                INSTANCES.c.host.is_(None),
                *_live_not_building()).order_by(INSTANCES.c.uuid).with_hint(
            INSTANCES, 'FORCE INDEX (uniq_instances0uuid)', 'mysql')
        stmt = db_utils.insert_if_absent(dialect, SYSMETA).from_select(
            ['instance_uuid', 'key', 'value', 'deleted', 'created_at'], rows)
        _execute(context, stmt)


# Instance ids per page of the listing: each page is one short reader
# transaction (a range scan of the primary key and an anti-join), and at
# most this many uuids are held at once.
LIST_ID_RANGE = 50000


@pick_context_manager_reader
def _instance_max_id(context):
    return _execute(context, sa.select(sa.func.max(INSTANCES.c.id))
                    ).scalar() or 0


@pick_context_manager_reader
def _uuids_without_sysmeta_between(context, key, low, high):
    # SELECT i.uuid FROM instances i
    #  WHERE i.id > :low AND i.id <= :high
    #    AND i.deleted = 0 AND i.vm_state != 'building'
    #    AND NOT EXISTS (SELECT 1 FROM instance_system_metadata s
    #                     WHERE s.instance_uuid = i.uuid AND s.key = :key
    #                       AND s.deleted = 0)
    #  ORDER BY i.id
    return _execute(context, sa.select(INSTANCES.c.uuid).where(
        INSTANCES.c.id > low, INSTANCES.c.id <= high,
        *_unrecorded_instances(key)).order_by(INSTANCES.c.id)
    ).scalars().all()


def instance_iter_uuids_without_sysmeta(context, key, chunk=1000):
    """Yield lists of the uuids of live, non-BUILDING instances with no
    ``key`` row, ``chunk`` at a time, in id order.

    Keyset pages over the primary key, LIST_ID_RANGE ids each, each read
    in a transaction of its own that ends before anything is yielded: a
    slow consumer (a pipe to a script) holds no transaction and no cursor
    open on the server, however long it takes. An instance recorded while
    the listing runs may drop out of it; none appears twice.
    """
    top = _instance_max_id(context)
    for low in range(0, top, LIST_ID_RANGE):
        uuids = _uuids_without_sysmeta_between(context, key, low,
                                               low + LIST_ID_RANGE)
        for start in range(0, len(uuids), chunk):
            yield uuids[start:start + chunk]


@pick_context_manager_reader
def instance_get_all_by_host_without_sysmeta(context, host, key, with_keys):
    """Non-deleted instances of ``host``, in any vm_state, with no ``key``.

    nova-compute's start-up records every one of them, so unlike the
    queries above it keeps BUILDING instances. One statement whatever their
    number, bringing along only the ``with_keys`` system metadata. Returns
    dicts of uuid, vm_state, architecture, image_ref and system_metadata
    ({key: value} of the ``with_keys`` present), by id.
    """
    # SELECT i.uuid, i.vm_state, i.architecture, i.image_ref,
    #        w0.value, w1.value, ...
    #   FROM instances i LEFT JOIN ... (see _outerjoin_sysmeta)
    #  WHERE i.host = :host AND i.deleted = 0
    #    AND NOT EXISTS (SELECT 1 FROM instance_system_metadata s
    #                     WHERE s.instance_uuid = i.uuid AND s.key = :key
    #                       AND s.deleted = 0)
    #  ORDER BY i.id
    joined, columns = _outerjoin_sysmeta(
        [INSTANCES.c.uuid, INSTANCES.c.vm_state, INSTANCES.c.architecture,
         INSTANCES.c.image_ref], with_keys)
    query = (sa.select(*columns).select_from(joined)
             .where(INSTANCES.c.host == host, INSTANCES.c.deleted == 0,
                    ~_sysmeta_recorded(key))
             .order_by(INSTANCES.c.id))
    return [{'uuid': row.uuid, 'vm_state': row.vm_state,
             'architecture': row.architecture, 'image_ref': row.image_ref,
             'system_metadata': _joined_sysmeta(row._mapping, with_keys)}
            for row in _execute(context, query)]


@pick_context_manager_reader
def instance_count_without_sysmeta_by_host(context, key, binary):
    """Instances with no ``key`` row, counted per host, with its service.

    For telling which remedy fits which instances: host None gathers the
    instances without a host. Returns dicts of host, service (True if
    the host has a live ``binary`` service row), version (of that
    service, or None) and count, by host.
    """
    # SELECT i.host, s.id, s.version, count(*) FROM instances i
    #   LEFT JOIN services s ON s.host = i.host AND s.binary = :binary
    #                       AND s.deleted = 0
    #  WHERE i.deleted = 0 AND i.vm_state != 'building'
    #    AND NOT EXISTS (<a live key row of i>)
    #  GROUP BY i.host, s.id, s.version ORDER BY i.host
    query = (sa.select(INSTANCES.c.host, SERVICES.c.id, SERVICES.c.version,
                       sa.func.count().label('count'))
             .select_from(INSTANCES.outerjoin(SERVICES, sa.and_(
                 SERVICES.c.host == INSTANCES.c.host,
                 SERVICES.c.binary == binary, SERVICES.c.deleted == 0)))
             .where(*_unrecorded_instances(key))
             .group_by(INSTANCES.c.host, SERVICES.c.id, SERVICES.c.version)
             .order_by(INSTANCES.c.host))
    return [{'host': host, 'service': service_id is not None,
             'version': version, 'count': count}
            for host, service_id, version, count in _execute(context, query)]


def _recorded_join(key):
    """instances JOIN their live ``key`` row (one at most per instance)."""
    return INSTANCES.join(SYSMETA, sa.and_(
        SYSMETA.c.instance_uuid == INSTANCES.c.uuid,
        SYSMETA.c.key == key, SYSMETA.c.deleted == 0))


@pick_context_manager_reader
def instance_sysmeta_value_counts(context, key):
    """Live instances counted by their ``key`` value and vm_state.

    Returns (value or None when not recorded, vm_state, count) tuples.
    """
    # SELECT s.value, i.vm_state, count(*) FROM instances i
    #   LEFT JOIN instance_system_metadata s
    #          ON s.instance_uuid = i.uuid AND s.key = :key AND s.deleted = 0
    #  WHERE i.deleted = 0
    #  GROUP BY s.value, i.vm_state
    query = (sa.select(SYSMETA.c.value, INSTANCES.c.vm_state,
                       sa.func.count())
             .select_from(INSTANCES.outerjoin(SYSMETA, sa.and_(
                 SYSMETA.c.instance_uuid == INSTANCES.c.uuid,
                 SYSMETA.c.key == key, SYSMETA.c.deleted == 0)))
             .where(INSTANCES.c.deleted == 0)
             .group_by(SYSMETA.c.value, INSTANCES.c.vm_state))
    return [tuple(row) for row in _execute(context, query)]


@pick_context_manager_reader
def instance_sysmeta_value_groups(context, key, value):
    """Live instances whose ``key`` is ``value``, counted by vm_state,
    host and whether a task is in flight.

    Returns (vm_state, host, busy, count) tuples.
    """
    # SELECT i.vm_state, i.host, i.task_state IS NOT NULL, count(*)
    #   FROM instances i
    #   JOIN instance_system_metadata s
    #     ON s.instance_uuid = i.uuid AND s.key = :key AND s.deleted = 0
    #  WHERE i.deleted = 0 AND s.value = :value
    #  GROUP BY i.vm_state, i.host, i.task_state IS NOT NULL
    busy = INSTANCES.c.task_state.is_not(None)
    query = (sa.select(INSTANCES.c.vm_state, INSTANCES.c.host, busy,
                       sa.func.count())
             .select_from(_recorded_join(key))
             .where(INSTANCES.c.deleted == 0, SYSMETA.c.value == value)
             .group_by(INSTANCES.c.vm_state, INSTANCES.c.host, busy))
    return [(vm_state, host, bool(is_busy), count)
            for vm_state, host, is_busy, count in _execute(context, query)]


@pick_context_manager_writer
def instance_system_metadata_record_first(context, uuid, key, value,
                                          only_states=None):
    """Record ``key`` = ``value`` for one instance if it has none yet.

    One conditional INSERT ... SELECT: the instance must still exist,
    have no task in flight, be in ``only_states`` (when given) and have
    no live ``key`` row, so a change that lands after the caller's checks
    makes it write nothing. Returns the number of rows added (0 or 1);
    DBDuplicateEntry if another writer inserted the row after the NOT
    EXISTS looked.
    """
    # INSERT INTO instance_system_metadata
    #        (instance_uuid, key, value, deleted, created_at)
    # SELECT i.uuid, :key, :value, 0, :now FROM instances i
    #  WHERE i.uuid = :uuid AND i.deleted = 0 AND i.task_state IS NULL
    #    [AND i.vm_state IN (...)]
    #    AND NOT EXISTS (SELECT 1 FROM instance_system_metadata s
    #                     WHERE s.instance_uuid = i.uuid AND s.key = :key
    #                       AND s.deleted = 0)
    recorded = sa.select(sa.literal(1)).where(
        SYSMETA.c.instance_uuid == INSTANCES.c.uuid,
        SYSMETA.c.key == key, SYSMETA.c.deleted == 0)
    source = sa.select(
        INSTANCES.c.uuid, sa.literal(key), sa.literal(value), sa.literal(0),
        sa.literal(timeutils.utcnow(), sa.DateTime)).where(
        INSTANCES.c.uuid == uuid, INSTANCES.c.deleted == 0,
        INSTANCES.c.task_state.is_(None), ~recorded.exists())
    if only_states is not None:
        source = source.where(INSTANCES.c.vm_state.in_(list(only_states)))
    return _execute(context, SYSMETA.insert().from_select(
        ['instance_uuid', 'key', 'value', 'deleted', 'created_at'],
        source)).rowcount


@pick_context_manager_writer
def instance_sysmeta_replace_value(context, key, old, new, only_states=None,
                                   uuid=None):
    """Set ``key`` to ``new`` on live instances where it is ``old``.

    One UPDATE. Only instances in vm_state ``only_states`` (any when
    None) and, with ``uuid``, only that instance. Conditioning the
    write on ``old`` and the state makes a concurrent change win rather
    than be overwritten.
    Returns the number of rows updated.
    """
    # UPDATE instance_system_metadata SET value = :new, updated_at = :now
    #  WHERE key = :key AND deleted = 0 AND value = :old
    #    [AND instance_uuid = :uuid]
    #    AND instance_uuid IN (
    #        SELECT uuid FROM instances
    #         WHERE deleted = 0 AND task_state IS NULL [AND uuid = :uuid]
    #           [AND vm_state IN (...)])
    # The outer instance_uuid = :uuid lets the server find the one row by
    # the unique key, rather than go through every row recorded as :old
    # (MariaDB does not turn an UPDATE's IN (subquery) into a join).
    # An operation in flight may have defined its domain from the value
    # read: the record changes only for an instance with no task.
    instances = sa.select(INSTANCES.c.uuid).where(
        INSTANCES.c.deleted == 0, INSTANCES.c.task_state.is_(None))
    rows = [SYSMETA.c.key == key, SYSMETA.c.deleted == 0,
            SYSMETA.c.value == old]
    if uuid is not None:
        instances = instances.where(INSTANCES.c.uuid == uuid)
        rows.append(SYSMETA.c.instance_uuid == uuid)
    if only_states is not None:
        instances = instances.where(
            INSTANCES.c.vm_state.in_(list(only_states)))
    stmt = (SYSMETA.update()
            .where(*rows, SYSMETA.c.instance_uuid.in_(instances))
            .values(value=new, updated_at=timeutils.utcnow()))
    return _execute(context, stmt).rowcount


@pick_context_manager_writer
def instance_sysmeta_replace_value_batch(context, key, old, new, after_id,
                                         limit, only_states=None,
                                         skip_refusing_hosts=False):
    """Set ``key`` from ``old`` to ``new`` on at most ``limit`` instances.

    One batch of a bulk update, its own short transaction: the id range
    after ``after_id`` that holds the next ``limit`` rows recorded as
    ``old`` (a range of the (key, deleted, value, id) index), then one
    UPDATE of the rows of that range that belong to a qualifying
    instance: vm_state in ``only_states`` when given; with
    ``skip_refusing_hosts``, not on a host whose reported machine types
    lack ``new`` (judged in SQL rather than with a list of hosts). Every
    condition is checked in the UPDATE itself, so an instance changed
    meanwhile is left alone. When fewer than ``limit`` rows are left the
    range is open-ended: this is the last batch. Returns (the last id of
    the range, or None for the last batch; the number of rows updated).
    """
    range_end, bounded, open_ended = _replace_value_batch_statements(
        None if only_states is None else tuple(only_states),
        skip_refusing_hosts)
    params = {'key_name': key, 'old_value': old, 'after_id': after_id}
    # EXPLAIN ANALYZE at 1M: 71 ms with workers, 17 ms without.
    _without_parallel_workers(context)
    last_id = _execute(context, range_end,
                       dict(params, range_offset=limit - 1)).scalar()
    update = open_ended if last_id is None else bounded
    params.update(new_value=new, now=timeutils.utcnow(), last_id=last_id)
    return last_id, _execute(context, update, params).rowcount


@functools.lru_cache(maxsize=None)
def _replace_value_batch_statements(only_states, skip_refusing_hosts):
    """(range end, bounded UPDATE, open-ended UPDATE) of a bulk update batch.

    Built once per process with bind parameters (key_name, old_value,
    new_value, after_id, last_id, range_offset, now), rather than per
    batch: SQLAlchemy keys its compiled-statement cache on a traversal
    of the statement, which it memoizes on the statement object, and
    building and keying these statements anew cost about 2 ms of client
    CPU per batch, a third of a bulk update's client time across cells.
    """
    # SELECT id FROM instance_system_metadata
    #  WHERE key = :key AND deleted = 0 AND value = :old AND id > :after_id
    #  ORDER BY id LIMIT 1 OFFSET :limit - 1
    current = [SYSMETA.c.key == sa.bindparam('key_name'),
               SYSMETA.c.deleted == 0,
               SYSMETA.c.value == sa.bindparam('old_value')]
    after = SYSMETA.c.id > sa.bindparam('after_id')
    range_end = (sa.select(SYSMETA.c.id).where(*current, after)
                 .order_by(SYSMETA.c.id)
                 .offset(sa.bindparam('range_offset')).limit(1))
    new = sa.bindparam('new_value')
    qualifies = [INSTANCES.c.uuid == SYSMETA.c.instance_uuid,
                 INSTANCES.c.deleted == 0, INSTANCES.c.task_state.is_(None)]
    if only_states is not None:
        qualifies.append(INSTANCES.c.vm_state.in_(list(only_states)))
    if skip_refusing_hosts:
        qualifies.append(sa.not_(sa.and_(
            INSTANCES.c.host.is_not(None),
            _host_refuses(INSTANCES.c.host, new))))
    # UPDATE instance_system_metadata SET value = :new, updated_at = :now
    #  WHERE id > :after_id [AND id <= :last_id]
    #    AND key = :key AND deleted = 0 AND value = :old
    #    AND EXISTS (SELECT 1 FROM instances i
    #                 WHERE i.uuid = instance_system_metadata.instance_uuid
    #                   AND i.deleted = 0 AND i.task_state IS NULL
    #                   [AND i.vm_state IN (...)]
    #                   [AND NOT (i.host IS NOT NULL AND <refuses :new>)])
    # (Correlated, one index probe per row: an IN (SELECT uuid ...) made
    # MySQL materialize every qualifying instance of the cell per batch.)
    # The range is bounded on both ends of the value index, so the
    # server reads the batch's rows alone whatever its statistics say
    # (after a bulk update PostgreSQL's take the old value for rare).
    # Its ends rather than a list of the batch's ids: PostgreSQL checked
    # each row it read against the 1,000 ids of the list, which also
    # crossed the wire twice, from the server and back.
    open_ended = SYSMETA.update().where(
        after, *current,
        sa.select(sa.literal(1)).where(*qualifies).exists()).values(
            value=new,
            updated_at=sa.bindparam('now', type_=SYSMETA.c.updated_at.type))
    bounded = open_ended.where(SYSMETA.c.id <= sa.bindparam('last_id'))
    return range_end, bounded, open_ended


def _host_reports(host, machine_type=None, arch=None):
    """EXISTS: ``host`` reported machine types [naming ``machine_type``].

    ``host`` and ``machine_type`` may be columns of the outer query. A
    reported type names ``machine_type`` by its name or, for an alias,
    by the versioned type it resolves to (canonical). ``arch`` narrows
    to one guest architecture.
    """
    # EXISTS (SELECT 1 FROM host_machine_types h WHERE h.host = :host
    #          [AND h.arch = :arch]
    #          [AND (h.name = :machine_type OR h.canonical = :machine_type)])
    reported = HOST_MACHINE_TYPES.alias('reported')
    query = sa.select(sa.literal(1)).where(reported.c.host == host)
    if arch is not None:
        query = query.where(reported.c.arch == arch)
    if machine_type is not None:
        query = query.where(sa.or_(reported.c.name == machine_type,
                                   reported.c.canonical == machine_type))
    return query.exists()


def _host_refuses(host, machine_type, arch=None):
    """A host refuses a type when it reported types, but not that one.

    A host that reported nothing (its nova-compute predates reporting,
    or libvirt lists nothing for the arch) refuses nothing: support
    cannot be checked there.
    """
    return sa.and_(_host_reports(host, arch=arch),
                   ~_host_reports(host, machine_type, arch))


@pick_context_manager_reader
def host_machine_types_refusing(context, machine_type, hosts=None,
                                arch=None):
    """The hosts (of ``hosts``, or all) that do not support ``machine_type``.

    With ``arch``, judged on what each host reported for that guest arch.
    Returns a set of host names.
    """
    # SELECT DISTINCT h.host FROM host_machine_types h
    #  WHERE [h.host IN (:hosts)] [AND h.arch = :arch]
    #    AND NOT EXISTS (<a row of h.host [for :arch] naming :machine_type>)
    query = (sa.select(HOST_MACHINE_TYPES.c.host).distinct()
             .where(~_host_reports(HOST_MACHINE_TYPES.c.host, machine_type,
                                   arch)))
    if hosts is not None:
        query = query.where(HOST_MACHINE_TYPES.c.host.in_(list(hosts)))
    if arch is not None:
        query = query.where(HOST_MACHINE_TYPES.c.arch == arch)
    return set(_execute(context, query).scalars())


@pick_context_manager_reader
def instance_sysmeta_values_refused_by_host(context, key):
    """Recorded ``key`` values their instance's host no longer offers.

    Returns dicts of host, machine_type, problem ('unsupported': the
    host reported machine types but not this one; 'deprecated': the host
    reports it as deprecated) and count of live instances, by host.
    """
    # SELECT i.host, s.value, count(*) FROM instances i
    #   JOIN instance_system_metadata s
    #     ON s.instance_uuid = i.uuid AND s.key = :key AND s.deleted = 0
    #  WHERE i.deleted = 0 AND <problem>
    #  GROUP BY i.host, s.value
    # <problem> is, for 'unsupported':
    #   EXISTS (SELECT 1 FROM host_machine_types h WHERE h.host = i.host)
    #   AND NOT EXISTS (<a row of i.host naming s.value>)
    # and for 'deprecated':
    #   EXISTS (SELECT 1 FROM host_machine_types h WHERE h.host = i.host
    #            AND h.name = s.value AND h.deprecated)
    reported = HOST_MACHINE_TYPES.alias('reported')
    deprecated = sa.select(sa.literal(1)).where(
        reported.c.host == INSTANCES.c.host,
        reported.c.name == SYSMETA.c.value,
        reported.c.deprecated == sa.true()).exists()
    problems = (
        ('unsupported', _host_refuses(INSTANCES.c.host, SYSMETA.c.value)),
        ('deprecated', deprecated))
    found = []
    for problem, condition in problems:
        query = (sa.select(INSTANCES.c.host, SYSMETA.c.value,
                           sa.func.count())
                 .select_from(_recorded_join(key))
                 .where(INSTANCES.c.deleted == 0, condition)
                 .group_by(INSTANCES.c.host, SYSMETA.c.value))
        found += [{'host': host, 'machine_type': value, 'problem': problem,
                   'count': count}
                  for host, value, count in _execute(context, query)]
    return sorted(found, key=lambda f: (f['host'], f['machine_type']))


# -- machine type drift ------------------------------------------------------

MACHINE_TYPE_DRIFT = models.MACHINE_TYPE_DRIFT


@pick_context_manager_reader
def instance_sysmeta_get_by_host(context, host, key):
    """{uuid: value} of ``key`` for the live instances of ``host`` that
    have one.

    nova-compute's start-up reads it to compare each record with what the
    instance's live domain runs. One join, whatever the number of
    instances.
    """
    # SELECT i.uuid, s.value FROM instances i
    #   JOIN instance_system_metadata s
    #     ON s.instance_uuid = i.uuid AND s.key = :key AND s.deleted = 0
    #  WHERE i.host = :host AND i.deleted = 0
    query = (sa.select(INSTANCES.c.uuid, SYSMETA.c.value)
             .select_from(_recorded_join(key))
             .where(INSTANCES.c.host == host, INSTANCES.c.deleted == 0))
    return dict(tuple(row) for row in _execute(context, query))


@pick_context_manager_writer
def machine_type_drift_replace(context, host, drifts):
    """Replace what ``host`` last found running against the records.

    ``drifts`` is {uuid: (recorded, running)}. The host's rows are
    replaced as a whole, so an instance that no longer drifts (or has
    left the host) drops out at the host's next start.
    """
    _execute(context, MACHINE_TYPE_DRIFT.delete().where(
        MACHINE_TYPE_DRIFT.c.host == host))
    if drifts:
        now = timeutils.utcnow()
        _execute(context, MACHINE_TYPE_DRIFT.insert(),
                 [{'host': host, 'instance_uuid': uuid, 'recorded': recorded,
                   'running': running, 'deleted': 0, 'created_at': now}
                  for uuid, (recorded, running)
                  in sorted(drifts.items())])


@pick_context_manager_reader
def machine_type_drift_get_all(context, key='hw_machine_type'):
    """Instances whose live domain runs another machine type than recorded.

    For ``nova-status upgrade check``: what each host's nova-compute found
    at its last start, still true now. A row counts only while its
    instance is live, still on that host, and its record (``key``) still
    differs from what ran, so an operator's fix (``nova-manage libvirt
    update_machine_type``, a hard reboot that redefined the domain and a
    restart) clears it. Returns dicts of host, instance_uuid, recorded
    (the record now), running (what libvirt reported) and found_at, by
    host then instance.
    """
    # SELECT d.host, d.instance_uuid, s.value, d.running, d.created_at
    #   FROM machine_type_drift d
    #   JOIN instances i ON i.uuid = d.instance_uuid AND i.deleted = 0
    #                   AND i.host = d.host
    #   JOIN instance_system_metadata s
    #     ON s.instance_uuid = i.uuid AND s.key = :key AND s.deleted = 0
    #  WHERE s.value != d.running
    #  ORDER BY d.host, d.instance_uuid
    drift = MACHINE_TYPE_DRIFT
    query = (sa.select(drift.c.host, drift.c.instance_uuid, SYSMETA.c.value,
                       drift.c.running, drift.c.created_at)
             .select_from(_recorded_join(key).join(drift, sa.and_(
                 drift.c.instance_uuid == INSTANCES.c.uuid,
                 drift.c.host == INSTANCES.c.host)))
             .where(INSTANCES.c.deleted == 0,
                    SYSMETA.c.value != drift.c.running)
             .order_by(drift.c.host, drift.c.instance_uuid))
    return [{'host': host, 'instance_uuid': uuid, 'recorded': recorded,
             'running': running, 'found_at': found_at}
            for host, uuid, recorded, running, found_at
            in _execute(context, query)]


@pick_context_manager_writer
def instance_update_recording(context, uuid, values, key, read, value,
                              expected_task_state=None):
    """Save changed columns and record ``key``, in one transaction.

    The final save of a compute operation that defined a domain: what
    libvirt reported for it is recorded with the new vm_state, or not at
    all. The record is conditioned on ``read``, what the recorder read
    before: with None it is inserted only if still absent, else it
    replaces only the value ``read``, so a value another writer (an
    operator) committed meanwhile is kept. ``expected_task_state``
    conditions the instance's update as in instance_update (and the
    whole transaction, the record included, is then rolled back).
    Returns the value recorded now (``value``, or the other writer's).
    """
    if read is None:
        # INSERT ... ON CONFLICT DO NOTHING (INSERT IGNORE on MySQL)
        _execute(context, db_utils.insert_if_absent(_dialect(context),
                                                    SYSMETA),
                 _sysmeta_rows([(uuid, key, value)]))
    else:
        # UPDATE instance_system_metadata SET value = :value
        #  WHERE instance_uuid = :uuid AND key = :key AND deleted = 0
        #    AND value = :read
        _execute(context, SYSMETA.update().where(
            SYSMETA.c.instance_uuid == uuid, SYSMETA.c.key == key,
            SYSMETA.c.deleted == 0, SYSMETA.c.value == read).values(
                value=value, updated_at=timeutils.utcnow()))
    if values or expected_task_state is not None:
        _update_instance_row(context, uuid, values, expected_task_state)
    return _execute(context, sa.select(SYSMETA.c.value).where(
        SYSMETA.c.instance_uuid == uuid, SYSMETA.c.key == key,
        SYSMETA.c.deleted == 0)).scalar()


# -- migrations --------------------------------------------------------------

MIGRATIONS = models.MIGRATIONS


def _migration_get(context, uuid):
    row = _execute(context, sa.select(MIGRATIONS).where(
        MIGRATIONS.c.uuid == uuid, MIGRATIONS.c.deleted == 0)).first()
    if row is None:
        raise exception.MigrationError(reason='no migration %s' % uuid)
    return dict(row._mapping)


@pick_context_manager_writer
def migration_create(context, values):
    """Insert a migration row; return it as a dict."""
    # INSERT INTO migrations (uuid, instance_uuid, ..., deleted)
    #   VALUES (:uuid, :instance_uuid, ..., 0)
    values = dict(values, created_at=timeutils.utcnow(), deleted=0)
    _execute(context, MIGRATIONS.insert().values(**values))
    return _migration_get(context, values['uuid'])


@pick_context_manager_reader
def migration_get_by_instance_and_status(context, instance_uuid, statuses):
    """The newest live migration of an instance in one of ``statuses``
    (a tuple), as a dict.

    MigrationError when there is none.
    """
    # SELECT * FROM migrations
    #  WHERE deleted = 0 AND instance_uuid = :instance_uuid
    #    AND status IN (:statuses)
    #  ORDER BY id DESC LIMIT 1
    row = _execute(context, sa.select(MIGRATIONS).where(
        MIGRATIONS.c.deleted == 0,
        MIGRATIONS.c.instance_uuid == instance_uuid,
        MIGRATIONS.c.status.in_(statuses))
        .order_by(MIGRATIONS.c.id.desc()).limit(1)).first()
    if row is None:
        raise exception.MigrationError(
            reason='instance %s has no migration in status %s'
            % (instance_uuid, ' or '.join(statuses)))
    return dict(row._mapping)


@pick_context_manager_reader
def migration_get_all_by_host_and_status(context, host, status, side):
    """The live migrations in ``status`` whose ``side`` ('source_compute'
    or 'dest_compute') is ``host``, by id."""
    # SELECT * FROM migrations
    #  WHERE deleted = 0 AND <side> = :host AND status = :status
    #  ORDER BY id
    rows = _execute(context, sa.select(MIGRATIONS).where(
        MIGRATIONS.c.deleted == 0,
        MIGRATIONS.c[side] == host,
        MIGRATIONS.c.status == status).order_by(MIGRATIONS.c.id)).all()
    return [dict(row._mapping) for row in rows]


@pick_context_manager_writer
def migration_update(context, uuid, values, expected_status=None):
    """Update a migration's columns; return the row as a dict.

    With ``expected_status`` the update happens only while the status is
    still that one, so that of two hosts moving one migration on (a
    confirm and a revert) exactly one does; MigrationError otherwise,
    and nothing is written.
    """
    # UPDATE migrations SET ..., updated_at = :now
    #  WHERE uuid = :uuid AND deleted = 0 [AND status = :expected_status]
    stmt = MIGRATIONS.update().where(MIGRATIONS.c.uuid == uuid,
                                     MIGRATIONS.c.deleted == 0)
    if expected_status is not None:
        stmt = stmt.where(MIGRATIONS.c.status == expected_status)
    result = _execute(context, stmt.values(
        dict(values, updated_at=timeutils.utcnow())))
    if result.rowcount == 0:
        actual = _migration_get(context, uuid)['status']
        raise exception.MigrationError(
            reason='migration %s is %s, not %s'
            % (uuid, actual, expected_status))
    return _migration_get(context, uuid)
