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
  asked for with a lock time-out, so that other clients never queue
  behind a waiting migration for long; when one times out, the
  transactions that held the table are waited for (saying who they
  are) before it is asked again;
* every wait for another session (another ``db sync``, a long
  transaction, an earlier build still running) is bounded by
  ``[database]sync_wait_timeout``;
* every step checks what is already there first, so a revision that was
  interrupted (kill -9, a lost connection) is finished by running
  ``db sync`` again; an INVALID index left by an interrupted PostgreSQL
  build is dropped and built again.

All functions take a connection in AUTOCOMMIT mode (Alembic's
``autocommit_block``): each statement is its own transaction. SQLite, the
embedded single-user database, is not handled here; its revisions use
Alembic's batch mode.
"""

import contextlib
import datetime
import os
import socket
import threading
import time
import uuid as uuid_lib
import zlib

import sqlalchemy as sa

import nova.conf
from nova.db import utils as db_utils
from nova import exception

CONF = nova.conf.CONF

# Instances whose duplicates are read and soft-deleted per batch.
DEDUP_INSTANCES = 1000
# Bytes of sort buffer for the one read that finds the duplicates on
# MySQL/MariaDB (one session's, for one statement).
DEDUP_SORT_BUFFER = 64 * 1024 * 1024
# A table with more rows than this gets progress lines.
REPORT_ROWS = 100000
# Seconds between two progress lines of one step.
REPORT_EVERY = 10.0
# How long a DDL statement may wait for a table lock before it gives way
# to other clients (PostgreSQL in milliseconds; MySQL's
# lock_wait_timeout is whole seconds, 1 the shortest wait there is).
PG_LOCK_TIMEOUT_MS = 200
MYSQL_LOCK_WAIT_S = 1
# Errors worth replaying a statement for: MySQL deadlock (also how Galera
# reports a certification failure) and lock wait time-out; PostgreSQL
# deadlock, serialization failure and lock time-out.
_MYSQL_RETRY = (1205, 1213)
_MYSQL_DUPLICATE = 1062
_MYSQL_NO_TABLE = 1146
# ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON): the algorithm asked for
# cannot do this change.
_MYSQL_UNSUPPORTED_ALGORITHM = (1845, 1846)
_PG_RETRY = ('40P01', '40001', '55P03')
# MySQL's lock wait time-out, PostgreSQL's lock_not_available.
_LOCK_TIME_OUTS = (1205, '55P03')
_PG_DUPLICATE = '23505'
RETRY_PAUSE = 0.2
# Seconds between two lines saying whom db sync waits for, and between
# two looks at whether they are done.
WAIT_REPORT_EVERY = 10.0
WAIT_POLL = 1.0


def _family(connection):
    return db_utils.backend_family(connection.dialect.name)


def _is_duplicate(exc):
    return db_utils.server_error_code(exc) in (_MYSQL_DUPLICATE, _PG_DUPLICATE)


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


# -- waiting for other sessions ---------------------------------------------

class Wait:
    """A wait for other sessions, bounded by [database]sync_wait_timeout.

    Every WAIT_REPORT_EVERY seconds it says for whom it waits; past the
    limit it raises DBSyncWaitTimeout naming them.
    """

    def __init__(self, what, report):
        self.what = what
        self.report = report or (lambda message: None)
        self.limit = CONF.database.sync_wait_timeout
        self.started = time.monotonic()
        self.reported = None

    def remaining(self):
        return max(self.limit - (time.monotonic() - self.started), 0.0)

    def still(self, holders):
        """Note that ``holders`` (descriptions) still hold us up."""
        now = time.monotonic()
        waited = now - self.started
        if waited >= self.limit:
            raise exception.DBSyncWaitTimeout(
                what=self.what, waited=waited, holders='; '.join(holders))
        if self.reported is None or now - self.reported >= WAIT_REPORT_EVERY:
            self.reported = now
            self.report('  waiting for %s (%.0f s so far): %s'
                        % (self.what, waited, '; '.join(holders)))

    def until_none(self, holders_of, poll=WAIT_POLL):
        """Return once ``holders_of()`` lists nobody."""
        while True:
            holders = holders_of()
            if not holders:
                return
            self.still(holders)
            time.sleep(poll)


def _describe_session(session, user, host, age, activity):
    """One line about another client's session, for the operator."""
    activity = ' '.join((activity or 'idle in its transaction').split())
    if len(activity) > 80:
        activity = activity[:77] + '...'
    return 'session %s (%s@%s, in a transaction for %d s: %s)' % (
        session, user, host, age or 0, activity)


def open_transactions(connection, sessions=None):
    """Other sessions' open transactions on this database: {session id:
    description}, oldest first; with ``sessions``, only those.

    On MySQL/MariaDB a transaction holds a metadata lock on every table
    it has read or written until it ends, and an online ALTER needs the
    table to itself at its start and at its end; on PostgreSQL a
    concurrent index build waits for every transaction older than it.
    Seeing other users' sessions needs MySQL's PROCESS privilege
    (PostgreSQL's pg_read_all_stats).
    """
    if _family(connection) == 'postgresql':
        query = sa.text(
            "SELECT pid, usename, coalesce(client_addr::text, 'local'),"
            "       extract(epoch FROM now() - xact_start)::int,"
            "       CASE WHEN state = 'active' THEN query END"
            "  FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL"
            "   AND datname = current_database()"
            " ORDER BY xact_start")
    else:
        query = sa.text(
            "SELECT p.id, p.user, p.host,"
            "       TIMESTAMPDIFF(SECOND, t.trx_started, NOW()),"
            "       CASE WHEN p.command = 'Query' THEN p.info END"
            "  FROM information_schema.innodb_trx t"
            "  JOIN information_schema.processlist p"
            "    ON p.id = t.trx_mysql_thread_id"
            " WHERE p.id <> CONNECTION_ID() AND p.db = DATABASE()"
            " ORDER BY t.trx_started")
    return {row[0]: _describe_session(*row)
            for row in connection.execute(query)
            if sessions is None or row[0] in sessions}


def run_when_table_free(connection, statement, what, report=None,
                        params=None):
    """Run a statement that needs ``what`` (a table, rows) for itself.

    DDL asks for its lock with a short time-out (set by the caller), so
    that other clients never queue behind it for long. When a lock wait
    times out, the transactions open at that moment (one of them holds
    the lock) are waited for, saying who they are, and only then is the
    statement sent again: a long transaction (a backup, a client idle in
    a transaction) costs one more attempt, not one a second. Deadlocks
    (and Galera certification failures) are replayed after a pause.
    Bounded by a Wait. Safe because the connection autocommits: a failed
    statement leaves nothing to roll back. Returns the result.
    """
    wait = Wait('the open transactions on %s to end' % what, report)
    while True:
        try:
            return connection.execute(statement, params or {})
        except sa.exc.DBAPIError as exc:
            code = db_utils.server_error_code(exc)
            if code not in _MYSQL_RETRY + _PG_RETRY:
                raise
            if code not in _LOCK_TIME_OUTS:
                wait.still(['a deadlock with another session'])
                time.sleep(RETRY_PAUSE)
                continue
        holders = open_transactions(connection)
        if not holders:
            # Ended meanwhile, or this user may not see them.
            wait.still(['a transaction this user cannot see'])
            time.sleep(WAIT_POLL)
            continue
        wait.until_none(
            lambda: list(open_transactions(connection, holders).values()))


# -- one db sync at a time ---------------------------------------------------

SYNC_LOCK = 'nova-db-sync'
# On a Galera cluster GET_LOCK is each node's own: two db syncs through
# two nodes would both get it. There the lock is a lease, a row of this
# table, which exists only while a db sync holds it (creating and
# dropping an empty table runs in total order, in an instant).
SYNC_LEASE = 'nova_db_sync_lease'
# Seconds between the holder's heartbeats, and without one after which
# the holder is taken to be gone (killed with no chance to drop it).
LEASE_BEAT = 5.0
LEASE_STALE = 30


def _pg_lock_key(name):
    """A stable 31-bit key for pg_advisory_lock (locks are per database)."""
    return zlib.crc32(name.encode()) & 0x7fffffff


def _galera(connection):
    """Whether ``connection`` is to a node of a Galera cluster."""
    if _family(connection) != 'mysql':
        return False
    row = connection.execute(sa.text(
        "SHOW VARIABLES LIKE 'wsrep_on'")).first()
    return row is not None and row[1] == 'ON'


class _SyncLock:
    """The server's db sync lock of one database, on one connection.

    MySQL's GET_LOCK and PostgreSQL's advisory lock belong to the
    connection's session: a killed db sync releases them with its
    connection. A Galera lease is a row that the holder's heartbeat
    keeps fresh; a lease LEASE_STALE seconds old is taken over.
    """

    def __init__(self, connection):
        self.connection = connection
        self.family = _family(connection)
        self.galera = _galera(connection)
        self.me = 'db sync %s:%d:%s' % (
            socket.gethostname(), os.getpid(), uuid_lib.uuid4().hex[:8])
        self.beating = threading.Event()
        self.heart = None

    def try_take(self):
        if self.galera:
            return self._try_lease()
        if self.family == 'postgresql':
            return self.connection.execute(sa.text(
                'SELECT pg_try_advisory_lock(:key)'),
                {'key': _pg_lock_key(SYNC_LOCK)}).scalar()
        return self.connection.execute(sa.text(
            "SELECT GET_LOCK(CONCAT(:name, '.', DATABASE()), 0)"),
            {'name': SYNC_LOCK}).scalar() == 1

    def _try_lease(self):
        """Take the lease if free or stale; True if ours now.

          INSERT INTO nova_db_sync_lease VALUES (1, :me, now)
              ON DUPLICATE KEY UPDATE (holder, beat) = (:me, now)
                 only where the beat is older than LEASE_STALE
        """
        stale = 'beat < UTC_TIMESTAMP() - INTERVAL %d SECOND' % LEASE_STALE
        try:
            self.connection.execute(sa.text(
                'CREATE TABLE IF NOT EXISTS %s (id INT PRIMARY KEY, '
                'holder VARCHAR(255) NOT NULL, beat DATETIME NOT NULL) '
                'ENGINE=InnoDB' % SYNC_LEASE))
            self.connection.execute(sa.text(
                'INSERT INTO %s (id, holder, beat) '
                'VALUES (1, :me, UTC_TIMESTAMP()) ON DUPLICATE KEY UPDATE '
                'holder = IF(%s, VALUES(holder), holder), '
                'beat = IF(%s, VALUES(beat), beat)'
                % (SYNC_LEASE, stale, stale)), {'me': self.me})
            holder = self.connection.execute(sa.text(
                'SELECT holder FROM %s WHERE id = 1' % SYNC_LEASE)).scalar()
        except sa.exc.DBAPIError as exc:
            # Another node's db sync took it or dropped the table in the
            # same instant (a certification conflict, a missing table).
            code = db_utils.server_error_code(exc)
            if code in _MYSQL_RETRY + (_MYSQL_NO_TABLE,):
                return False
            raise
        if holder != self.me:
            return False
        self.heart = threading.Thread(target=self._beat, daemon=True)
        self.heart.start()
        return True

    def _beat(self):
        while not self.beating.wait(LEASE_BEAT):
            try:
                self.connection.execute(sa.text(
                    'UPDATE %s SET beat = UTC_TIMESTAMP() WHERE id = 1 '
                    'AND holder = :me' % SYNC_LEASE), {'me': self.me})
            except sa.exc.DBAPIError:
                pass  # the next beat tries again

    def holders(self):
        """Who holds the lock, as descriptions."""
        if self.galera:
            try:
                rows = self.connection.execute(sa.text(
                    'SELECT holder, TIMESTAMPDIFF(SECOND, beat, '
                    'UTC_TIMESTAMP()) FROM %s' % SYNC_LEASE)).all()
            except sa.exc.DBAPIError as exc:
                if db_utils.server_error_code(exc) != _MYSQL_NO_TABLE:
                    raise
                rows = []  # released just now
            return ['%s (last heard of %d s ago; taken over after %d s)'
                    % (holder, age, LEASE_STALE) for holder, age in rows]
        if self.family == 'postgresql':
            rows = self.connection.execute(sa.text(
                "SELECT a.pid, a.usename, coalesce(a.client_addr::text, "
                "'local') FROM pg_locks l JOIN pg_stat_activity a"
                "    ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                "   AND l.objid = :key AND l.database = ("
                "       SELECT oid FROM pg_database"
                "        WHERE datname = current_database())"),
                {'key': _pg_lock_key(SYNC_LOCK)}).all()
        else:
            rows = self.connection.execute(sa.text(
                "SELECT id, user, host FROM information_schema.processlist"
                " WHERE id = IS_USED_LOCK(CONCAT(:name, '.', DATABASE()))"),
                {'name': SYNC_LOCK}).all()
        return ['db sync in session %s (%s@%s)' % tuple(row) for row in rows]

    def release(self):
        if self.galera:
            self.beating.set()
            self.heart.join()
            self.connection.execute(sa.text(
                'DROP TABLE IF EXISTS %s' % SYNC_LEASE))
        elif self.family == 'postgresql':
            self.connection.execute(sa.text('SELECT pg_advisory_unlock(:key)'),
                                    {'key': _pg_lock_key(SYNC_LOCK)})
        else:
            self.connection.execute(sa.text(
                "SELECT RELEASE_LOCK(CONCAT(:name, '.', DATABASE()))"),
                {'name': SYNC_LOCK})


def bound_lock_waits(connection):
    """Make ``connection``'s row lock waits short enough to report.

    A de-duplicating UPDATE may meet a row that a client holds in an
    open transaction. PostgreSQL would wait for it without limit, MySQL
    for innodb_lock_wait_timeout (50 s), both silently. With waits of
    WAIT_REPORT_EVERY seconds (unless the session has shorter ones: a
    role's setting), the statement gives up in time for
    run_when_table_free to say whom it waits for and to bound the wait.
    """
    family = _family(connection)
    if family == 'postgresql':
        connection.execute(sa.text(
            "SELECT set_config('lock_timeout', :v, false) WHERE "
            "current_setting('lock_timeout') IN ('0', '0ms')"),
            {'v': '%dms' % (WAIT_REPORT_EVERY * 1000)})
    elif family == 'mysql':
        connection.execute(sa.text(
            'SET SESSION innodb_lock_wait_timeout = '
            'LEAST(@@SESSION.innodb_lock_wait_timeout, %d)'
            % WAIT_REPORT_EVERY))
    else:
        return
    # A session setting outlives the transaction; the revisions then
    # start with none open, as Alembic expects.
    connection.commit()


@contextlib.contextmanager
def sync_lock(connection, report=None):
    """Hold this database's db sync lock for the block.

    Configuration management often runs ``db sync`` from every
    controller at once; the first holds the lock and the others wait
    for it (saying for whom, bounded by [database]sync_wait_timeout),
    then find the revisions done. See _SyncLock for the lock itself. A
    no-op on SQLite, an embedded single-user database.
    """
    if _family(connection) == 'sqlite':
        yield
        return
    lock = _SyncLock(connection)
    wait = Wait('another db sync of this database to finish', report)
    while not lock.try_take():
        wait.still(lock.holders()
                   or ['a db sync whose session this user cannot see'])
        time.sleep(WAIT_POLL)
    try:
        yield
    finally:
        lock.release()


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
        _mysql_alter(connection, table, change, algorithm='INSTANT',
                     report=report)
    except sa.exc.DBAPIError as exc:
        if db_utils.server_error_code(exc) not in _MYSQL_UNSUPPORTED_ALGORITHM:
            raise
        # Indexed already (a database upgraded by an earlier release of
        # this revision): the indexes on it are rebuilt, online.
        _mysql_alter(connection, table, change, report=report)


# -- de-duplication ----------------------------------------------------------

# Passes over one range of instances before giving up on it: a pass is
# repeated only when a row it read was changed before its UPDATE.
DEDUP_PASSES = 10


def _sysmeta():
    return sa.table('instance_system_metadata',
                    sa.column('id'), sa.column('instance_uuid'),
                    sa.column('key'), sa.column('value'),
                    sa.column('deleted'),
                    sa.column('deleted_at', sa.DateTime),
                    sa.column('created_at', sa.DateTime),
                    sa.column('updated_at', sa.DateTime))


def _newest_first(row):
    """Sort key: latest updated_at (else created_at), then highest id."""
    stamp = row.updated_at or row.created_at or datetime.datetime.min
    return (stamp, row.id)


def _losers(rows):
    """The rows to soft-delete: all but the newest of each group."""
    groups = {}
    for row in rows:
        groups.setdefault((row.instance_uuid, row.key), []).append(row)
    losers = []
    for group in groups.values():
        if len(group) > 1:
            group.sort(key=_newest_first, reverse=True)
            losers.extend(group[1:])
    return losers


def _duplicated_instances(connection, table, report):
    """The instances with a duplicated live key, sorted: one read.

      SELECT SQL_BIG_RESULT instance_uuid, key FROM instance_system_metadata
       WHERE deleted = 0
       GROUP BY instance_uuid, key HAVING COUNT(*) > 1

    A read of the whole table in one statement, as a DBA's would: no
    index is built for it (every index of the revision is built once,
    for the final schema). It takes no lock that blocks a client and
    runs with the session's statement_timeout lifted. SQL_BIG_RESULT
    makes MySQL/MariaDB sort (4x faster here at 1M rows) instead of
    filling a temporary table. A line is printed every REPORT_EVERY
    seconds while it runs.
    """
    query = (sa.select(table.c.instance_uuid, table.c.key)
             .where(table.c.deleted == 0)
             .group_by(table.c.instance_uuid, table.c.key)
             .having(sa.func.count() > 1))
    settings = contextlib.nullcontext()
    if _family(connection) == 'mysql':
        query = query.prefix_with('SQL_BIG_RESULT')
        settings = _mysql_sort_buffer(connection)
    elif _family(connection) == 'postgresql':
        settings = _pg_settings(connection, statement_timeout='0')
    with settings, _Heartbeat(report):
        rows = connection.execute(query).all()
    return sorted({row.instance_uuid for row in rows})


@contextlib.contextmanager
def _mysql_sort_buffer(connection):
    """A larger sort buffer for the block's one big sort, then the
    session's own: DEDUP_SORT_BUFFER instead of MariaDB's 2 MiB makes
    the read for duplicates a third faster (fewer merge passes)."""
    saved = connection.execute(
        sa.text('SELECT @@SESSION.sort_buffer_size')).scalar()
    connection.execute(sa.text('SET SESSION sort_buffer_size = %d'
                               % max(saved, DEDUP_SORT_BUFFER)))
    try:
        yield
    finally:
        connection.execute(sa.text('SET SESSION sort_buffer_size = %d'
                                   % saved))


class _Heartbeat(threading.Thread):
    """Says every REPORT_EVERY seconds that a long statement still runs."""

    def __init__(self, report):
        super().__init__(daemon=True)
        self.report = report
        self.done = threading.Event()

    def run(self):
        started = time.monotonic()
        while not self.done.wait(REPORT_EVERY):
            self.report('  still looking for duplicates (%.0f s)'
                        % (time.monotonic() - started))

    def __enter__(self):
        if self.report is not None:
            self.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        if self.is_alive():
            self.join()


def _rows_of_duplicates(connection, table, where):
    """Live rows of every duplicated (instance, key) among the live rows
    matching ``where``.

    The grouping reads only the (instance_uuid, key, deleted) index:

      SELECT instance_uuid, key FROM instance_system_metadata
       WHERE <where> AND deleted = 0
       GROUP BY instance_uuid, key HAVING COUNT(*) > 1

    then the few rows of those groups are read by instance.
    """
    duplicated = connection.execute(
        sa.select(table.c.instance_uuid, table.c.key)
        .where(table.c.deleted == 0, *where)
        .group_by(table.c.instance_uuid, table.c.key)
        .having(sa.func.count() > 1)).all()
    if not duplicated:
        return []
    return connection.execute(
        sa.select(table.c.id, table.c.instance_uuid, table.c.key,
                  table.c.value, table.c.created_at, table.c.updated_at)
        .where(table.c.deleted == 0,
               table.c.instance_uuid.in_(
                   sorted({row.instance_uuid for row in duplicated})))).all()


def _soft_delete(connection, table, losers, now, report):
    """Soft-delete rows as they were read; return how many were.

    Each row only if it is still as read (value and updated_at): a
    service that changed a duplicate in place meanwhile made it the
    newest, and its value must not go in favour of a stale one. As
    Nova's soft delete: deleted = id, deleted_at = now, updated_at kept.

      UPDATE instance_system_metadata SET deleted = id, deleted_at = :now
       WHERE id = :id AND deleted = 0
         AND value IS NOT DISTINCT FROM :value
         AND updated_at IS NOT DISTINCT FROM :updated_at
    """
    statement = table.update().where(
        table.c.id == sa.bindparam('b_id'), table.c.deleted == 0,
        table.c.value.is_not_distinct_from(sa.bindparam('b_value')),
        table.c.updated_at.is_not_distinct_from(
            sa.bindparam('b_updated_at'))
    ).values(deleted=table.c.id, deleted_at=now)
    done = 0
    for row in losers:
        params = {'b_id': row.id, 'b_value': row.value,
                  'b_updated_at': row.updated_at}
        done += run_when_table_free(
            connection, statement, 'instance_system_metadata rows',
            report, params).rowcount
    return done


def _dedup(connection, table, where, now, report):
    """De-duplicate the live rows matching ``where`` until none is left
    or DEDUP_PASSES passes failed to; returns the rows soft-deleted."""
    deleted = 0
    for _ in range(DEDUP_PASSES):
        losers = _losers(_rows_of_duplicates(connection, table, where))
        done = _soft_delete(connection, table, losers, now, report)
        deleted += done
        if done == len(losers):
            break
    return deleted


def _max_id(connection, table):
    return connection.execute(sa.select(sa.func.max(table.c.id))).scalar()


def soft_delete_duplicate_sysmeta(connection, report=None, since_id=None):
    """Soft-delete duplicated live system metadata rows, in batches.

    Of each set of live rows with one (instance_uuid, key), the newest
    stays (latest updated_at, else created_at; then the highest id).
    One read finds the instances with duplicates; then DEDUP_INSTANCES
    of them at a time are read again by their instance_uuid index and
    their losers soft-deleted, each statement its own transaction.
    With ``since_id`` (the previous pass's return) only the instances
    of rows written after that pass are looked at: the pass a failed
    unique build asks for costs what was written meanwhile, not the
    whole table. Returns (rows soft-deleted, the highest id seen).
    """
    table = _sysmeta()
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    # Read first: a row written after this is the next pass's.
    last_id = _max_id(connection, table)
    if since_id is not None:
        written = sa.select(table.c.instance_uuid).where(
            table.c.id > since_id, table.c.deleted == 0).distinct()
        return (_dedup(connection, table,
                       [table.c.instance_uuid.in_(written)], now, report),
                last_id)
    rows = table_rows(connection, 'instance_system_metadata')
    progress = Progress(report, rows)
    progress.say('de-duplicating instance_system_metadata (about %d rows)',
                 rows, force=True)
    instances = _duplicated_instances(connection, table, progress.report)
    deleted = 0
    for start in range(0, len(instances), DEDUP_INSTANCES):
        chunk = instances[start:start + DEDUP_INSTANCES]
        deleted += _dedup(connection, table,
                          [table.c.instance_uuid.in_(chunk)], now, report)
        progress.say('de-duplicating: %d of %d instances done, %d '
                     'duplicates soft-deleted', start + len(chunk),
                     len(instances), deleted)
    progress.say('de-duplicated: %d duplicates soft-deleted', deleted,
                 force=True)
    return deleted, last_id


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
    it), and holds no sync lock any more. A rerun waits for that build
    instead of racing it.
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


def wait_for_other_builds(connection, table, report=None):
    """Return once no other session runs DDL on ``table`` (bounded)."""
    Wait('an earlier, interrupted build on %s to end' % table,
         report).until_none(
        lambda: ['session %s' % session
                 for session in _other_builds(connection, table)])


def _quoted(connection, names):
    prep = connection.dialect.identifier_preparer
    return ', '.join(prep.quote(name) for name in names)


@contextlib.contextmanager
def _pg_settings(connection, **settings):
    """Session settings for the block; the session's own afterwards.

    A role or database may set statement_timeout or lock_timeout; a
    build must not be cancelled by them, and the operator's values come
    back once it is done (SET ... = 0 would not bring them back).
    """
    names = sorted(settings)
    saved = connection.execute(sa.text('SELECT %s' % ', '.join(
        "current_setting('%s')" % name for name in names))).one()
    try:
        for name in names:
            connection.execute(sa.text('SELECT set_config(:n, :v, false)'),
                               {'n': name, 'v': settings[name]})
        yield
    finally:
        for name, value in zip(names, saved):
            connection.execute(sa.text('SELECT set_config(:n, :v, false)'),
                               {'n': name, 'v': value})


class _PgWaitReporter(threading.Thread):
    """Says whom a concurrent index build waits for, while it runs.

    CREATE INDEX CONCURRENTLY waits, inside the one statement, for every
    transaction older than its phases; only another session can see for
    whom (pg_blocking_pids). Reports through ``wait`` every
    WAIT_REPORT_EVERY seconds; the server's lock_timeout bounds the wait.
    """

    def __init__(self, connection, wait):
        super().__init__(daemon=True)
        self.engine = connection.engine
        self.pid = connection.execute(
            sa.text('SELECT pg_backend_pid()')).scalar()
        self.wait = wait
        self.done = threading.Event()
        self.holders = []

    def run(self):
        with self.engine.connect() as conn:
            while not self.done.wait(WAIT_POLL):
                blocking = conn.execute(sa.text(
                    'SELECT unnest(pg_blocking_pids(:pid))'),
                    {'pid': self.pid}).scalars().all()
                conn.rollback()
                self.holders = list(open_transactions(
                    conn, set(blocking)).values()) if blocking else []
                if self.holders:
                    try:
                        self.wait.still(self.holders)
                    except exception.DBSyncWaitTimeout:
                        pass

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.join()


def _pg_build(connection, statement, what, report):
    """Run a concurrent build or drop of an index on PostgreSQL.

    statement_timeout is lifted for it (a large table takes minutes),
    and the waits inside it for older transactions are bounded by what
    is left of [database]sync_wait_timeout, reported as they happen. A
    build that fails leaves an INVALID index, dropped here before the
    error goes up: left, it would be maintained by every write and, for
    a unique one, reject rows until the next run.
    """
    wait = Wait('the open transactions older than %s to end' % what, report)
    limit = '%dms' % max(wait.remaining() * 1000, 1)
    with _pg_settings(connection, statement_timeout='0', lock_timeout=limit):
        with _PgWaitReporter(connection, wait) as reporter:
            try:
                connection.execute(sa.text(statement))
            except sa.exc.DBAPIError as exc:
                if db_utils.server_error_code(exc) in _LOCK_TIME_OUTS:
                    raise exception.DBSyncWaitTimeout(
                        what=wait.what, waited=wait.limit,
                        holders='; '.join(reporter.holders)
                        or 'a transaction older than the build') from exc
                raise


def _pg_create_index(connection, table, name, columns, unique, report):
    if _pg_index_state(connection, name) == 'invalid':
        # Left by an interrupted build: maintained by every write but
        # serving no read. Dropped and built again.
        _pg_build(connection, 'DROP INDEX CONCURRENTLY IF EXISTS %s' % name,
                  name, report)
    if _pg_index_state(connection, name) is not None:
        return
    try:
        _pg_build(connection, 'CREATE %sINDEX CONCURRENTLY %s ON %s (%s)' % (
            'UNIQUE ' if unique else '', name, table,
            _quoted(connection, columns)), 'the build of ' + name, report)
    except Exception:
        if _pg_index_state(connection, name) == 'invalid':
            _pg_build(connection,
                      'DROP INDEX CONCURRENTLY IF EXISTS %s' % name,
                      name, report)
        raise


def _pg_alter(connection, table, clause, report):
    """An ALTER TABLE that needs ``table`` to itself for an instant.

    Asked for with a short lock_timeout, so that clients never queue
    behind it for long, and again once the transactions that held the
    table have ended (run_when_table_free).
    """
    with _pg_settings(connection, statement_timeout='0',
                      lock_timeout='%dms' % PG_LOCK_TIMEOUT_MS):
        run_when_table_free(connection, sa.text(
            'ALTER TABLE %s %s' % (table, clause)), table, report)


def _mysql_alter(connection, table, clause, algorithm='INPLACE',
                 report=None):
    """One online ALTER TABLE on MySQL/MariaDB.

    ``ALGORITHM=INPLACE, LOCK=NONE`` (or ``ALGORITHM=INSTANT``) makes the
    server refuse an ALTER it cannot do without blocking writes. The
    ALTER needs the table's metadata lock to itself at its start and at
    its end; a 1 s lock_wait_timeout bounds how long other clients
    queue behind it, and run_when_table_free waits for the transactions
    that held the table before sending it again.
    """
    lock = ', LOCK=NONE' if algorithm == 'INPLACE' else ''
    saved = connection.execute(
        sa.text('SELECT @@SESSION.lock_wait_timeout')).scalar()
    connection.execute(sa.text('SET SESSION lock_wait_timeout = %d'
                               % MYSQL_LOCK_WAIT_S))
    try:
        run_when_table_free(connection, sa.text(
            'ALTER TABLE %s %s, ALGORITHM=%s%s'
            % (table, clause, algorithm, lock)), table, report)
    finally:
        connection.execute(sa.text('SET SESSION lock_wait_timeout = %d'
                                   % saved))


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
            _pg_create_index(connection, table, name, columns, unique,
                             report)
        else:
            _mysql_alter(connection, table, 'ADD %sINDEX %s (%s)' % (
                'UNIQUE ' if unique else '', name,
                _quoted(connection, columns)), report=report)
    except sa.exc.DBAPIError as exc:
        if unique and _is_duplicate(exc):
            raise exception.DBDuplicatesDuringIndexBuild(
                index=name, table=table, attempts=1) from exc
        raise
    if postgresql and unique:
        _pg_alter(connection, table, 'ADD CONSTRAINT %s UNIQUE USING '
                  'INDEX %s' % (name, name), report)
    progress.say('built index %s', name, force=True)


def _mysql_index_columns(connection, table, name):
    return connection.execute(sa.text(
        'SELECT column_name FROM information_schema.statistics'
        ' WHERE table_schema = DATABASE() AND table_name = :table'
        '   AND index_name = :name ORDER BY seq_in_index'),
        {'table': table, 'name': name}).scalars().all()


def replace_index(connection, table, old, new, columns, report=None):
    """Make index ``new`` (``columns``) take the place of ``old``.

    InnoDB ends every secondary index with the primary key, so where
    ``columns`` are ``old``'s plus ``id`` the index MySQL/MariaDB need is
    already there, built: it is renamed (RENAME INDEX, a metadata change)
    rather than built again. Elsewhere ``new`` is built first (the old
    one keeps serving until it exists), then ``old`` dropped. Safe to
    repeat at any point.
    """
    if index_exists(connection, table, new):
        drop_index(connection, table, old, report)
        return
    if (_family(connection) == 'mysql' and columns[-1] == 'id'
            and _mysql_index_columns(connection, table, old)
            == list(columns[:-1])):
        _mysql_alter(connection, table, 'RENAME INDEX %s TO %s'
                     % (old, new), report=report)
        return
    create_index(connection, table, new, columns, report=report)
    drop_index(connection, table, old, report)


def drop_index(connection, table, name, report=None):
    """Drop index ``name`` of ``table`` if it exists, without blocking."""
    if _family(connection) == 'postgresql':
        _pg_build(connection, 'DROP INDEX CONCURRENTLY IF EXISTS %s' % name,
                  name, report)
    elif _mysql_has_index(connection, table, name):
        _mysql_alter(connection, table, 'DROP INDEX %s' % name,
                     report=report)
