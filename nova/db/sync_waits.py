"""Waiting for other sessions during db sync, and one db sync at a time.

``nova-manage db sync`` shares its database with every service and with
whatever else clients do (a backup, a client idle in a transaction).
When one of its statements meets a lock another session holds, it does
not retry blindly: it waits for the transactions that held the lock,
saying every WAIT_REPORT_EVERY seconds which sessions they are, and
gives up after ``[database]sync_wait_timeout`` with an error that names
them (``Wait``, ``run_when_table_free``). A second ``db sync`` of the
same database waits for the first (``sync_lock``). And on a Galera
cluster each statement in total order leaves the clients it aborted time
to replay theirs (``pace_total_order``).
"""

import contextlib
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

# Errors worth replaying a statement for: MySQL deadlock (also how Galera
# reports a certification failure) and lock wait time-out; PostgreSQL
# deadlock, serialization failure and lock time-out.
_MYSQL_RETRY = (1205, 1213)
_PG_RETRY = ('40P01', '40001', '55P03')
# MySQL's lock wait time-out, PostgreSQL's lock_not_available.
LOCK_TIME_OUTS = (1205, '55P03')
_MYSQL_NO_TABLE = 1146
RETRY_PAUSE = 0.2
# Seconds between two lines saying whom db sync waits for, and between
# two looks at whether they are done.
WAIT_REPORT_EVERY = 10.0
WAIT_POLL = 1.0
# Seconds db sync pauses after each statement that a Galera cluster runs
# in total order (DDL). Galera aborts a client statement that holds the
# statement's table, or a table its foreign keys reference, on a node
# when it arrives there; the server replays an aborted autocommit
# statement once (wsrep_retry_autocommit, 1 by default), and a second
# statement in total order right behind the first aborted the replay too
# (3-8 aborted requests a run at 100,000 instances without the pause, 1
# with it: benchmarks/RESULTS.md).
TOTAL_ORDER_GAP = 0.3
_TOTAL_ORDER = ('ALTER', 'CREATE', 'DROP', 'RENAME', 'TRUNCATE')


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
    if db_utils.connection_family(connection) == 'postgresql':
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
                        params=None, cut_short=None):
    """Run a statement that needs ``what`` (a table, rows) for itself.

    DDL asks for its lock with a short time-out (set by the caller), so
    that other clients never queue behind it for long. When a lock wait
    times out, the transactions open at that moment (one of them holds
    the lock) are waited for, saying who they are, and only then is the
    statement sent again: a long transaction (a backup, a client idle in
    a transaction) costs one more attempt, not one a second. Deadlocks
    (and Galera certification failures) are replayed after a pause.
    ``cut_short(code)``, if given, says whether an error is the caller's
    own interruption of a lock wait (see online_schema), handled as a
    time-out. Bounded by a Wait. Safe because the connection autocommits:
    a failed statement leaves nothing to roll back. Returns the result.
    """
    wait = Wait('the open transactions on %s to end' % what, report)
    while True:
        try:
            return connection.execute(statement, params or {})
        except sa.exc.DBAPIError as exc:
            code = db_utils.server_error_code(exc)
            timed_out = code in LOCK_TIME_OUTS or bool(
                cut_short and cut_short(code))
            if not timed_out and code not in _MYSQL_RETRY + _PG_RETRY:
                raise
            if not timed_out:
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


def on_galera(connection):
    """Whether ``connection`` is to a node of a Galera cluster."""
    if db_utils.connection_family(connection) != 'mysql':
        return False
    row = connection.execute(sa.text(
        "SHOW VARIABLES LIKE 'wsrep_on'")).first()
    return row is not None and row[1] == 'ON'


def pace_total_order(connection):
    """On a Galera node, make ``connection`` pause TOTAL_ORDER_GAP after
    each statement the cluster runs in total order; elsewhere nothing.

    Every such statement of db sync, whichever revision sends it (an
    index renamed, a table created), then reaches the other nodes with
    the replays of what the one before aborted already done.
    """
    if on_galera(connection):
        sa.event.listen(connection, 'after_cursor_execute',
                        _pause_after_total_order)


def in_total_order(statement):
    """Whether a Galera cluster runs ``statement`` (SQL text) in total
    order: DDL, under the default wsrep_OSU_method=TOI."""
    words = statement.split(None, 1)
    return bool(words) and words[0].upper() in _TOTAL_ORDER


def _pause_after_total_order(conn, cursor, statement, parameters, context,
                             executemany):
    if in_total_order(statement):
        time.sleep(TOTAL_ORDER_GAP)


class _SyncLock:
    """The server's db sync lock of one database, on one connection.

    MySQL's GET_LOCK and PostgreSQL's advisory lock belong to the
    connection's session: a killed db sync releases them with its
    connection. A Galera lease is a row that the holder's heartbeat
    keeps fresh; a lease LEASE_STALE seconds old is taken over.
    """

    def __init__(self, connection):
        self.connection = connection
        self.family = db_utils.connection_family(connection)
        self.galera = on_galera(connection)
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
    family = db_utils.connection_family(connection)
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
    if db_utils.connection_family(connection) == 'sqlite':
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
