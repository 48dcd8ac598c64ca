"""Schema changes that run while the cloud keeps reading and writing.

``nova-manage db sync`` runs on cell databases of millions of system
metadata rows while every service stays up. A plain ``ALTER TABLE`` or a
single large ``UPDATE`` would hold locks that stop other clients for as
long as it runs, so the revisions of the cell database use these helpers
instead:

* data changes go in short statements, each its own transaction
  (``nova.db.sysmeta_dedup`` is the one data change of the revisions);
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
  are) before it is asked again, and every wait for another session is
  bounded by ``[database]sync_wait_timeout`` (``nova.db.sync_waits``);
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
import threading
import time

import sqlalchemy as sa

import nova.conf
from nova.db import sync_waits
from nova.db import utils as db_utils
from nova import exception

CONF = nova.conf.CONF

# A table with more rows than this gets progress lines.
REPORT_ROWS = 100000
# Seconds between two progress lines of one step.
REPORT_EVERY = 10.0
# How long a DDL statement may wait for a table lock before it gives way
# to other clients (PostgreSQL in milliseconds; MySQL's
# lock_wait_timeout is whole seconds, 1 the shortest wait there is, so
# on MariaDB a watchdog cuts the wait at MARIADB_MDL_WAIT_S). A cut at
# a build's end is followed by the server rolling the build back, while
# writers still queue: at 1,000,000 instances 0.25 s + that rollback
# made a writer wait 1.03 s, 0.1 s + it 0.42 s (benchmarks/RESULTS.md);
# clients' own transactions hold the table for milliseconds.
PG_LOCK_TIMEOUT_MS = 200
MYSQL_LOCK_WAIT_S = 1
MARIADB_MDL_WAIT_S = 0.1
_MDL_POLL = 0.05
_MDL_WAIT_STATE = 'Waiting for table metadata lock'
# ER_QUERY_INTERRUPTED: what KILL QUERY makes the statement raise.
_MYSQL_INTERRUPTED = 1317
# ER_DUP_ENTRY: a key of the row is taken.
MYSQL_DUPLICATE = 1062
# ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON): the algorithm asked for
# cannot do this change.
_MYSQL_UNSUPPORTED_ALGORITHM = (1845, 1846)
_PG_DUPLICATE = '23505'


def _is_duplicate(exc):
    return db_utils.server_error_code(exc) in (MYSQL_DUPLICATE, _PG_DUPLICATE)


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
    if db_utils.connection_family(connection) == 'postgresql':
        query = ('SELECT reltuples FROM pg_class'
                 ' WHERE oid = CAST(:table AS regclass)')
    elif db_utils.connection_family(connection) == 'mysql':
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
    if db_utils.connection_family(connection) != 'mysql':
        return
    collation = _mysql_exact_collation(connection)
    if _mysql_column_collation(connection, table, column) == collation:
        return
    Progress(report, table_rows(connection, table)).say(
        'making %s.%s compare exactly (collation %s)', table, column,
        collation, force=True)
    change = 'MODIFY %s VARCHAR(%d) CHARACTER SET utf8mb4 COLLATE %s ' \
        'NOT NULL' % (quoted(connection, [column]), length, collation)
    try:
        _mysql_alter(connection, table, change, algorithm='INSTANT',
                     report=report)
    except sa.exc.DBAPIError as exc:
        if db_utils.server_error_code(exc) not in _MYSQL_UNSUPPORTED_ALGORITHM:
            raise
        # Indexed already (a database upgraded by an earlier release of
        # this revision): the indexes on it are rebuilt, online.
        _mysql_alter(connection, table, change, report=report)


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
    if db_utils.connection_family(connection) == 'postgresql':
        return _pg_index_state(connection, name) == 'valid'
    return _mysql_has_index(connection, table, name)


def _other_builds(connection, table):
    """Sessions other than ours running DDL on ``table``.

    A db sync killed in the middle of an index build leaves the server
    building it (it notices the lost client only when it next writes to
    it), and holds no sync lock any more. A rerun waits for that build
    instead of racing it.
    """
    if db_utils.connection_family(connection) == 'postgresql':
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
    sync_waits.Wait('an earlier, interrupted build on %s to end' % table,
                    report).until_none(
        lambda: ['session %s' % session
                 for session in _other_builds(connection, table)])


def quoted(connection, names):
    prep = connection.dialect.identifier_preparer
    return ', '.join(prep.quote(name) for name in names)


@contextlib.contextmanager
def pg_settings(connection, **settings):
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


class _SessionWatcher(threading.Thread):
    """Watches a statement of ``connection``'s session from a connection
    of its own, for as long as a ``with`` block runs."""

    def __init__(self, connection):
        super().__init__(daemon=True)
        self.engine = connection.engine
        self.done = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.join()


class _PgWaitReporter(_SessionWatcher):
    """Says whom a concurrent index build waits for, while it runs.

    CREATE INDEX CONCURRENTLY waits, inside the one statement, for every
    transaction older than its phases; only another session can see for
    whom (pg_blocking_pids). Reports through ``wait`` every
    sync_waits.WAIT_REPORT_EVERY seconds; the server's lock_timeout
    bounds the wait.
    """

    def __init__(self, connection, wait):
        super().__init__(connection)
        self.pid = connection.execute(
            sa.text('SELECT pg_backend_pid()')).scalar()
        self.wait = wait
        self.holders = []

    def run(self):
        with self.engine.connect() as conn:
            while not self.done.wait(sync_waits.WAIT_POLL):
                blocking = conn.execute(sa.text(
                    'SELECT unnest(pg_blocking_pids(:pid))'),
                    {'pid': self.pid}).scalars().all()
                conn.rollback()
                self.holders = list(sync_waits.open_transactions(
                    conn, set(blocking)).values()) if blocking else []
                if self.holders:
                    try:
                        self.wait.still(self.holders)
                    except exception.DBSyncWaitTimeout:
                        pass


def _pg_build(connection, statement, what, report):
    """Run a concurrent build or drop of an index on PostgreSQL.

    statement_timeout is lifted for it (a large table takes minutes),
    and the waits inside it for older transactions are bounded by what
    is left of [database]sync_wait_timeout, reported as they happen. A
    build that fails leaves an INVALID index, dropped here before the
    error goes up: left, it would be maintained by every write and, for
    a unique one, reject rows until the next run.
    """
    wait = sync_waits.Wait(
        'the open transactions older than %s to end' % what, report)
    limit = '%dms' % max(wait.remaining() * 1000, 1)
    with pg_settings(connection, statement_timeout='0', lock_timeout=limit):
        with _PgWaitReporter(connection, wait) as reporter:
            try:
                connection.execute(sa.text(statement))
            except sa.exc.DBAPIError as exc:
                code = db_utils.server_error_code(exc)
                if code in sync_waits.LOCK_TIME_OUTS:
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
            quoted(connection, columns)), 'the build of ' + name, report)
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
    table have ended (sync_waits.run_when_table_free).
    """
    with pg_settings(connection, statement_timeout='0',
                     lock_timeout='%dms' % PG_LOCK_TIMEOUT_MS):
        sync_waits.run_when_table_free(connection, sa.text(
            'ALTER TABLE %s %s' % (table, clause)), table, report)


class _MariaDBLockWaitCutter(_SessionWatcher):
    """Cuts an ALTER's wait for the table's metadata lock short.

    While an ALTER waits for the metadata lock, every client that then
    touches the table queues behind it; MariaDB cannot make that wait
    shorter than a second (lock_wait_timeout is whole seconds). This
    thread watches the ALTER's session from a connection of its own and,
    once the ALTER has waited MARIADB_MDL_WAIT_S, interrupts that one
    statement (``KILL QUERY ID``, MariaDB's, which cannot hit a later
    statement of the session). DDL is atomic on MariaDB, so the
    interrupted ALTER leaves nothing behind: run_when_table_free then
    handles it as a lock time-out (waits for the holders, sends it
    again). Not on Galera, where DDL runs in total order and takes its
    locks by priority.
    """

    def __init__(self, connection):
        super().__init__(connection)
        self.session = connection.execute(
            sa.text('SELECT CONNECTION_ID()')).scalar()
        # Interruptions not yet claimed by cut_short: counted up by this
        # thread, down by the one running the ALTER.
        self.interrupted = 0
        self.lock = threading.Lock()

    @staticmethod
    def usable(connection):
        """MariaDB (query ids in its process list), not Galera."""
        return (getattr(connection.dialect, 'is_mariadb', False)
                and not sync_waits.on_galera(connection))

    def run(self):
        waiting_since = None
        with self.engine.connect() as conn:
            while not self.done.wait(_MDL_POLL):
                # SELECT query_id FROM information_schema.processlist
                #  WHERE id = <the ALTER's session>
                #    AND state = 'Waiting for table metadata lock'
                query_id = conn.execute(sa.text(
                    'SELECT query_id FROM information_schema.processlist '
                    'WHERE id = :id AND state = :state'),
                    {'id': self.session, 'state': _MDL_WAIT_STATE}).scalar()
                conn.rollback()
                if query_id is None:
                    waiting_since = None
                    continue
                now = time.monotonic()
                if waiting_since is None or waiting_since[0] != query_id:
                    waiting_since = (query_id, now)
                elif now - waiting_since[1] >= MARIADB_MDL_WAIT_S:
                    # Counted first: the ALTER fails as soon as the KILL
                    # lands, maybe before this thread runs again.
                    with self.lock:
                        self.interrupted += 1
                    conn.execute(sa.text('KILL QUERY ID %d' % query_id))
                    waiting_since = None

    def cut_short(self, code):
        """Whether error ``code`` is this thread's interruption."""
        with self.lock:
            if code == _MYSQL_INTERRUPTED and self.interrupted:
                self.interrupted -= 1
                return True
        return False


def _mysql_alter(connection, table, clause, algorithm='INPLACE',
                 report=None):
    """One online ALTER TABLE on MySQL/MariaDB.

    ``ALGORITHM=INPLACE, LOCK=NONE`` (or ``ALGORITHM=INSTANT``) makes the
    server refuse an ALTER it cannot do without blocking writes. The
    ALTER needs the table's metadata lock to itself at its start and at
    its end; a 1 s lock_wait_timeout (on MariaDB, a tenth of a second:
    _MariaDBLockWaitCutter) bounds how long other clients queue behind
    it, and run_when_table_free waits for the transactions that held the
    table before sending it again.
    """
    lock = ', LOCK=NONE' if algorithm == 'INPLACE' else ''
    saved = connection.execute(
        sa.text('SELECT @@SESSION.lock_wait_timeout')).scalar()
    connection.execute(sa.text('SET SESSION lock_wait_timeout = %d'
                               % MYSQL_LOCK_WAIT_S))
    statement = sa.text('ALTER TABLE %s %s, ALGORITHM=%s%s'
                        % (table, clause, algorithm, lock))
    try:
        if _MariaDBLockWaitCutter.usable(connection):
            with _MariaDBLockWaitCutter(connection) as cutter:
                sync_waits.run_when_table_free(
                    connection, statement, table, report,
                    cut_short=cutter.cut_short)
        else:
            sync_waits.run_when_table_free(connection, statement, table,
                                           report)
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
    postgresql = db_utils.connection_family(connection) == 'postgresql'
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
                quoted(connection, columns)), report=report)
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
    if (db_utils.connection_family(connection) == 'mysql'
            and columns[-1] == 'id'
            and _mysql_index_columns(connection, table, old)
            == list(columns[:-1])):
        _mysql_alter(connection, table, 'RENAME INDEX %s TO %s'
                     % (old, new), report=report)
        return
    create_index(connection, table, new, columns, report=report)
    drop_index(connection, table, old, report)


def drop_index(connection, table, name, report=None):
    """Drop index ``name`` of ``table`` if it exists, without blocking."""
    if db_utils.connection_family(connection) == 'postgresql':
        _pg_build(connection, 'DROP INDEX CONCURRENTLY IF EXISTS %s' % name,
                  name, report)
    elif _mysql_has_index(connection, table, name):
        _mysql_alter(connection, table, 'DROP INDEX %s' % name,
                     report=report)
