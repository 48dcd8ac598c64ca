"""Schema changes that run while the cloud keeps reading and writing.

``nova-manage db sync`` runs on cell databases of millions of system
metadata rows while every service stays up. A plain ``ALTER TABLE`` or a
single large ``UPDATE`` would hold locks that stop other clients for as
long as it runs, so the revisions of the cell database use these helpers
instead:

* data changes go in short batches, each its own transaction, bounded in
  rows, and replayed on a deadlock or a Galera certification failure;
* indexes are built without blocking writes: PostgreSQL's
  ``CREATE INDEX CONCURRENTLY`` (a unique key then becomes a constraint
  with ``ADD CONSTRAINT ... USING INDEX``, a catalogue change), MySQL and
  MariaDB's ``ALGORITHM=INPLACE, LOCK=NONE``, stated so that the server
  refuses rather than silently copying the table;
* the short exclusive locks that remain (PostgreSQL's ``ALTER TABLE``,
  the metadata lock at the start and end of a MySQL online ``ALTER``) are
  asked for with a lock time-out, and asked for again if they time out,
  so that other clients never queue behind a waiting migration for long;
* every step checks what is already there first, so a revision that was
  interrupted (kill -9, a lost connection) is finished by running
  ``db sync`` again; an INVALID index left by an interrupted PostgreSQL
  build is dropped and built again.

All functions take a connection in AUTOCOMMIT mode (Alembic's
``autocommit_block``): each statement is its own transaction. SQLite, the
embedded single-user database, is not handled here; its revisions use
Alembic's batch mode.
"""

import datetime
import time

import sqlalchemy as sa

from nova.db import utils as db_utils
from nova import exception

# Index entries read per de-duplication batch. The reads take no lock;
# the UPDATE that follows touches only the duplicates found.
DEDUP_ROWS = 20000
# At most this many rows soft-deleted per UPDATE statement.
UPDATE_BATCH = 1000
# A table with more rows than this gets progress lines.
REPORT_ROWS = 100000
# Seconds between two progress lines of one step.
REPORT_EVERY = 10.0
# How long a DDL statement may wait for a table lock before it gives way
# to other clients and tries again (PostgreSQL in milliseconds; MySQL's
# lock_wait_timeout is whole seconds, 1 the shortest wait there is).
PG_LOCK_TIMEOUT_MS = 200
MYSQL_LOCK_WAIT_S = 1
LOCK_ATTEMPTS = 60
# Errors worth replaying a statement for: MySQL deadlock (also how Galera
# reports a certification failure) and lock wait time-out; PostgreSQL
# deadlock, serialization failure and lock time-out.
_MYSQL_RETRY = (1205, 1213)
_MYSQL_DUPLICATE = 1062
# ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON): the algorithm asked for
# cannot do this change.
_MYSQL_UNSUPPORTED_ALGORITHM = (1845, 1846)
_PG_RETRY = ('40P01', '40001', '55P03')
_PG_DUPLICATE = '23505'
RETRY_PAUSE = 0.2


def _family(connection):
    return db_utils.backend_family(connection.dialect.name)


def _error_code(exc):
    """The server's error code of a DBAPI error (int on MySQL, str on PG)."""
    orig = getattr(exc, 'orig', None)
    pgcode = getattr(orig, 'pgcode', None)
    if pgcode:
        return pgcode
    args = getattr(orig, 'args', ())
    return args[0] if args else None


def _is_retryable(exc):
    return _error_code(exc) in _MYSQL_RETRY + _PG_RETRY


def _is_duplicate(exc):
    return _error_code(exc) in (_MYSQL_DUPLICATE, _PG_DUPLICATE)


def execute_with_retry(connection, statement, params=None,
                       attempts=LOCK_ATTEMPTS):
    """Run ``statement``, replaying it after a deadlock or lock time-out.

    Safe only because the connection autocommits: a failed statement
    leaves nothing behind to roll back. Returns the result.
    """
    for attempt in range(1, attempts + 1):
        try:
            return connection.execute(statement, params or {})
        except sa.exc.DBAPIError as exc:
            if not _is_retryable(exc) or attempt == attempts:
                raise
            time.sleep(RETRY_PAUSE * min(attempt, 5))


class Progress:
    """Progress lines of one step, for large tables only, at most every
    REPORT_EVERY seconds."""

    def __init__(self, report, rows):
        self.report = report if rows > REPORT_ROWS else None
        self.started = time.monotonic()
        self.last = self.started

    def say(self, message, *args, force=False):
        if self.report is None:
            return
        now = time.monotonic()
        if force or now - self.last >= REPORT_EVERY:
            self.last = now
            self.report('  %s (%.0f s)' % (message % args,
                                           now - self.started))


def table_rows(connection, table):
    """The server's estimate of the rows of ``table`` (0 if it has none).

    Read from the statistics (PostgreSQL's reltuples, InnoDB's
    table_rows), not counted: counting millions of rows takes seconds.
    """
    if _family(connection) == 'postgresql':
        query = ('SELECT reltuples FROM pg_class'
                 ' WHERE oid = CAST(:table AS regclass)')
    elif _family(connection) == 'mysql':
        query = ('SELECT table_rows FROM information_schema.tables'
                 ' WHERE table_schema = DATABASE() AND table_name = :table')
    else:
        query = 'SELECT count(*) FROM %s' % table
    rows = connection.execute(sa.text(query), {'table': table}).scalar()
    return max(int(rows or 0), 0)


# -- exact keys --------------------------------------------------------------

# Binary collations that compare trailing spaces too (NO PAD), the first
# one the server has: MariaDB's, then MySQL 8's.
EXACT_COLLATIONS = ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')


def _mysql_column_collation(connection, table, column):
    return connection.execute(sa.text(
        'SELECT collation_name FROM information_schema.columns'
        ' WHERE table_schema = DATABASE() AND table_name = :table'
        '   AND column_name = :column'),
        {'table': table, 'column': column}).scalar()


def _mysql_exact_collation(connection):
    """The server's binary NO PAD utf8mb4 collation."""
    have = set(connection.execute(sa.text(
        'SELECT collation_name FROM information_schema.collations'
        ' WHERE collation_name IN :names').bindparams(
            sa.bindparam('names', expanding=True)),
        {'names': list(EXACT_COLLATIONS)}).scalars())
    for name in EXACT_COLLATIONS:
        if name in have:
            return name
    raise exception.MigrationError(reason=(
        'the server has none of the collations %s that compare system '
        'metadata keys exactly; MariaDB 10.2 or MySQL 8.0 is needed'
        % ', '.join(EXACT_COLLATIONS)))


def make_column_exact(connection, table, column, length, report=None):
    """Make ``column`` compare as Python compares strings, on MySQL.

    MySQL and MariaDB create the cell's tables with a case-insensitive,
    PAD SPACE collation (utf8mb4_general_ci): ``image_Foo``,
    ``image_foo`` and ``image_foo `` would be one key to a unique index
    and to ``WHERE key = ...``, while Nova's objects and PostgreSQL keep
    them apart. A binary NO PAD collation makes every comparison exact.
    On a column no index covers (the baseline's ``key``) the change is
    metadata only (ALGORITHM=INSTANT); otherwise the indexes on it are
    rebuilt online. A no-op on other servers and when already done.
    """
    if _family(connection) != 'mysql':
        return
    collation = _mysql_exact_collation(connection)
    if _mysql_column_collation(connection, table, column) == collation:
        return
    Progress(report, table_rows(connection, table)).say(
        'making %s.%s compare exactly (collation %s)', table, column,
        collation, force=True)
    change = 'MODIFY %s VARCHAR(%d) CHARACTER SET utf8mb4 COLLATE %s ' \
        'NOT NULL' % (_quoted(connection, [column]), length, collation)
    try:
        _mysql_alter(connection, table, change, algorithm='INSTANT')
    except sa.exc.DBAPIError as exc:
        if _error_code(exc) not in _MYSQL_UNSUPPORTED_ALGORITHM:
            raise
        # Indexed already (a database upgraded by an earlier release of
        # this revision): the indexes on it are rebuilt, online.
        _mysql_alter(connection, table, change)


# -- de-duplication ----------------------------------------------------------

def _sysmeta():
    return sa.table('instance_system_metadata',
                    sa.column('id'), sa.column('instance_uuid'),
                    sa.column('key'), sa.column('deleted'),
                    sa.column('deleted_at'), sa.column('created_at'),
                    sa.column('updated_at'))


def _newest_first(row):
    """Sort key: latest updated_at (else created_at), then highest id."""
    stamp = row.updated_at or row.created_at or datetime.datetime.min
    return (stamp, row.id)


def _losers(rows):
    """Ids of the rows to soft-delete: all but the newest of each group."""
    groups = {}
    for row in rows:
        groups.setdefault((row.instance_uuid, row.key), []).append(row)
    losers = []
    for group in groups.values():
        if len(group) > 1:
            group.sort(key=_newest_first, reverse=True)
            losers.extend(row.id for row in group[1:])
    return losers


def _next_boundary(connection, table, marker):
    """The instance_uuid DEDUP_ROWS index entries after ``marker``, or
    None when fewer remain (an index-only read).

      SELECT instance_uuid FROM instance_system_metadata
       WHERE instance_uuid > :marker ORDER BY instance_uuid
       LIMIT 1 OFFSET :rows
    """
    query = sa.select(table.c.instance_uuid).order_by(
        table.c.instance_uuid).limit(1).offset(DEDUP_ROWS)
    if marker is not None:
        query = query.where(table.c.instance_uuid > marker)
    return connection.execute(query).scalar()


def _duplicates_between(connection, table, low, high):
    """Live rows of every duplicated (instance, key) with low < instance
    <= high (either bound None: open).

    The grouping reads only the (instance_uuid, key, deleted) index:

      SELECT instance_uuid, key FROM instance_system_metadata
       WHERE instance_uuid > :low AND instance_uuid <= :high
         AND deleted = 0
       GROUP BY instance_uuid, key HAVING COUNT(*) > 1

    then the few rows of those groups are read by instance.
    """
    where = [table.c.deleted == 0]
    if low is not None:
        where.append(table.c.instance_uuid > low)
    if high is not None:
        where.append(table.c.instance_uuid <= high)
    duplicated = connection.execute(
        sa.select(table.c.instance_uuid, table.c.key).where(*where)
        .group_by(table.c.instance_uuid, table.c.key)
        .having(sa.func.count() > 1)).all()
    if not duplicated:
        return []
    return connection.execute(
        sa.select(table.c.id, table.c.instance_uuid, table.c.key,
                  table.c.created_at, table.c.updated_at)
        .where(table.c.deleted == 0,
               table.c.instance_uuid.in_(
                   sorted({row.instance_uuid for row in duplicated})))).all()


def _soft_delete(connection, table, ids, now):
    """Soft-delete rows by id, UPDATE_BATCH per statement; returns count.

      UPDATE instance_system_metadata SET deleted = id, deleted_at = :now
       WHERE id IN (:ids) AND deleted = 0
    """
    done = 0
    for start in range(0, len(ids), UPDATE_BATCH):
        batch = ids[start:start + UPDATE_BATCH]
        result = execute_with_retry(
            connection,
            table.update()
            .where(table.c.id.in_(batch), table.c.deleted == 0)
            .values(deleted=table.c.id, deleted_at=now))
        done += result.rowcount
    return done


def soft_delete_duplicate_sysmeta(connection, report=None):
    """Soft-delete duplicated live system metadata rows, in batches.

    Of each set of live rows with one (instance_uuid, key), the newest
    stays (latest updated_at, else created_at; then the highest id).
    Walks the instances in order, DEDUP_ROWS index entries at a time; each
    read and each UPDATE is a short transaction of its own. Fast only with
    an index on (instance_uuid, key, deleted): the revision builds one
    first. Returns the number of rows soft-deleted.
    """
    table = _sysmeta()
    rows = table_rows(connection, 'instance_system_metadata')
    progress = Progress(report, rows)
    progress.say('de-duplicating instance_system_metadata (about %d rows)',
                 rows, force=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    deleted = looked_at = 0
    low = None
    while True:
        high = _next_boundary(connection, table, low)
        losers = _losers(_duplicates_between(connection, table, low, high))
        deleted += _soft_delete(connection, table, losers, now)
        if high is None:
            break
        low = high
        looked_at += DEDUP_ROWS
        progress.say('de-duplicating: %d of about %d rows looked at, '
                     '%d duplicates soft-deleted', looked_at, rows, deleted)
    progress.say('de-duplicated: %d duplicates soft-deleted', deleted,
                 force=True)
    return deleted


# -- indexes -----------------------------------------------------------------

def _pg_index_state(connection, name):
    """'valid', 'invalid' or None (no such index) on PostgreSQL."""
    valid = connection.execute(sa.text(
        'SELECT i.indisvalid FROM pg_index i'
        '  JOIN pg_class c ON c.oid = i.indexrelid'
        '  JOIN pg_namespace n ON n.oid = c.relnamespace'
        ' WHERE c.relname = :name AND n.nspname = current_schema()'),
        {'name': name}).scalar()
    if valid is None:
        return None
    return 'valid' if valid else 'invalid'


def _pg_has_constraint(connection, table, name):
    return connection.execute(sa.text(
        'SELECT 1 FROM pg_constraint WHERE conname = :name'
        '   AND conrelid = CAST(:table AS regclass)'),
        {'name': name, 'table': table}).scalar() is not None


def _mysql_has_index(connection, table, name):
    return connection.execute(sa.text(
        'SELECT 1 FROM information_schema.statistics'
        ' WHERE table_schema = DATABASE() AND table_name = :table'
        '   AND index_name = :name LIMIT 1'),
        {'table': table, 'name': name}).scalar() is not None


def index_exists(connection, table, name):
    """Whether ``table`` has a usable index called ``name``."""
    if _family(connection) == 'postgresql':
        return _pg_index_state(connection, name) == 'valid'
    return _mysql_has_index(connection, table, name)


def _other_builds(connection, table):
    """Sessions other than ours running DDL on ``table``.

    A db sync killed in the middle of an index build leaves the server
    building it (it notices the lost client only when it next writes to
    it). A rerun waits for that build instead of racing it.
    """
    if _family(connection) == 'postgresql':
        query = (
            "SELECT pid FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND datname = current_database()"
            "   AND state <> 'idle' AND query ~* :pattern")
        pattern = r'(INDEX|ALTER TABLE).*\m%s\M' % table
    else:
        query = (
            "SELECT id FROM information_schema.processlist"
            " WHERE id <> CONNECTION_ID() AND db = DATABASE()"
            "   AND command = 'Query' AND info LIKE :pattern")
        pattern = 'ALTER TABLE %s %%' % table
    return connection.execute(sa.text(query),
                              {'pattern': pattern}).scalars().all()


def wait_for_other_builds(connection, table, report=None, poll=1.0):
    """Return once no other session runs DDL on ``table``."""
    announced = False
    while True:
        sessions = _other_builds(connection, table)
        if not sessions:
            return
        if report and not announced:
            report('  waiting for session(s) %s, still changing %s '
                   '(an interrupted earlier run?)'
                   % (', '.join(map(str, sessions)), table))
            announced = True
        time.sleep(poll)


def _quoted(connection, names):
    prep = connection.dialect.identifier_preparer
    return ', '.join(prep.quote(name) for name in names)


def _pg_create_index(connection, table, name, columns, unique):
    if _pg_index_state(connection, name) == 'invalid':
        # Left by an interrupted or failed build: it is maintained by every
        # write but serves no read. Drop it and build it again.
        execute_with_retry(connection, sa.text(
            'DROP INDEX CONCURRENTLY IF EXISTS %s' % name))
    if _pg_index_state(connection, name) is None:
        connection.execute(sa.text(
            'CREATE %sINDEX CONCURRENTLY %s ON %s (%s)' % (
                'UNIQUE ' if unique else '', name, table,
                _quoted(connection, columns))))


def _pg_lock_timeout(connection, statement):
    """Run a statement that needs an ACCESS EXCLUSIVE lock for an instant.

    With a lock time-out, a statement that would wait behind a long
    transaction gives up instead of making every client queue behind it;
    it is asked again until it gets its turn.
    """
    connection.execute(sa.text("SET lock_timeout = '%dms'"
                               % PG_LOCK_TIMEOUT_MS))
    try:
        execute_with_retry(connection, sa.text(statement))
    finally:
        connection.execute(sa.text('SET lock_timeout = 0'))


def _mysql_alter(connection, table, clause, algorithm='INPLACE'):
    """One online ALTER TABLE on MySQL/MariaDB.

    ``ALGORITHM=INPLACE, LOCK=NONE`` (or ``ALGORITHM=INSTANT``) makes the
    server refuse an ALTER it cannot do without blocking writes. The
    short lock_wait_timeout bounds how long the ALTER waits for its metadata lock (and so how
    long other clients queue behind it); it is asked again on a time-out.
    """
    connection.execute(sa.text('SET SESSION lock_wait_timeout = %d'
                               % MYSQL_LOCK_WAIT_S))
    try:
        lock = ', LOCK=NONE' if algorithm == 'INPLACE' else ''
        execute_with_retry(connection, sa.text(
            'ALTER TABLE %s %s, ALGORITHM=%s%s'
            % (table, clause, algorithm, lock)))
    finally:
        connection.execute(sa.text('SET SESSION lock_wait_timeout = '
                                   'DEFAULT'))


def create_index(connection, table, name, columns, unique=False,
                 report=None):
    """Build index ``name`` on ``table`` without blocking its clients.

    A unique index becomes a unique constraint of that name (PostgreSQL
    distinguishes them; MySQL's unique constraints are unique indexes).
    Does nothing if it already exists. Raises
    DBDuplicatesDuringIndexBuild when a unique index meets duplicated rows
    (the build is undone).
    """
    postgresql = _family(connection) == 'postgresql'
    wait_for_other_builds(connection, table, report)
    # On PostgreSQL a unique key is done once it is a constraint.
    if (_pg_has_constraint(connection, table, name) if postgresql and unique
            else index_exists(connection, table, name)):
        return
    rows = table_rows(connection, table)
    progress = Progress(report, rows)
    progress.say('building index %s on %s (about %d rows)', name, table,
                 rows, force=True)
    try:
        if postgresql:
            _pg_create_index(connection, table, name, columns, unique)
        else:
            _mysql_alter(connection, table, 'ADD %sINDEX %s (%s)' % (
                'UNIQUE ' if unique else '', name,
                _quoted(connection, columns)))
    except sa.exc.DBAPIError as exc:
        if unique and _is_duplicate(exc):
            raise exception.DBDuplicatesDuringIndexBuild(
                index=name, table=table, attempts=1) from exc
        raise
    if postgresql and unique:
        _pg_lock_timeout(
            connection, 'ALTER TABLE %s ADD CONSTRAINT %s UNIQUE '
            'USING INDEX %s' % (table, name, name))
    progress.say('built index %s', name, force=True)


def drop_index(connection, table, name):
    """Drop index ``name`` of ``table`` if it exists, without blocking."""
    if _family(connection) == 'postgresql':
        execute_with_retry(connection, sa.text(
            'DROP INDEX CONCURRENTLY IF EXISTS %s' % name))
    elif _mysql_has_index(connection, table, name):
        _mysql_alter(connection, table, 'DROP INDEX %s' % name)
