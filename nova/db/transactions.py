"""Transactions: what a query function executes on, and where it comes from.

Query functions are decorated with their database's reader or writer
(``nova.db.main.api``, ``nova.db.api.api``) and execute their statements
on ``context.session``. The transaction behind it comes from a context
manager, one per database URL, of one of two kinds with one interface
(``reader`` and ``writer``, each with ``using(context)``, and
``writer.get_engine()``, ``dispose_pool()``):

- oslo.db's enginefacade, for services: connection pools, reconnection
  and every ``[database]`` tuning option;
- ``DirectContextManager``, for the operator commands (``nova-manage``,
  ``nova-status``): a plain SQLAlchemy Core engine with oslo.db's error
  translation. Importing enginefacade imports SQLAlchemy's ORM, which
  costs a one-look-up command more than its own work (0.25-0.35 s here).

``use_direct(True)`` makes every context manager created afterwards in
the process a direct one; the commands call it before any database use.
"""

import contextlib
import functools
import logging
import time
import weakref

from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import exc_filters
import sqlalchemy as sa

from nova.db import utils as db_utils
from nova import exception

LOG = logging.getLogger(__name__)

_direct = False
# The direct managers alive in the process, for close_direct_connections.
_direct_managers = weakref.WeakSet()


def use_direct(enabled):
    """Create direct context managers from now on (False: enginefacade)."""
    global _direct
    _direct = enabled


def close_direct_connections():
    """Close every idle connection of the process's direct managers.

    For a command about to end without the interpreter's clean-up
    (nova.cmd.common.exit_now): each connection is closed as a client
    should, so the server does not log it as aborted (MariaDB does, for
    a socket closed without a goodbye). A connection still in use (a
    cell that did not answer in time) is left to the operating system.
    """
    for manager in list(_direct_managers):
        manager.dispose_pool()


def create_context_manager(url, **options):
    """A transaction context manager for the database at ``url``.

    ``options`` are oslo.db's ``[database]`` options (max_retries,
    retry_interval, mysql_sql_mode...); a direct manager uses those that
    concern a single connection and ignores the pool's.
    """
    db_utils.ensure_sqlite_directory(url)
    url = _as_mysql_dialect(url)
    if _direct:
        manager = DirectContextManager(url, **options)
        _direct_managers.add(manager)
        return manager
    # Imported here: it imports SQLAlchemy's ORM (see the module doc).
    from oslo_db.sqlalchemy import enginefacade
    manager = enginefacade.transaction_context()
    manager.configure(connection=url, sqlite_fk=True, **options)
    return manager


def _as_mysql_dialect(url):
    """``url``, a URL of SQLAlchemy's ``mariadb`` dialect named ``mysql``.

    oslo.db picks its error filters (deadlock, duplicate key, lost
    connection...) by dialect name and has them under 'mysql' only: on
    an engine of the 'mariadb' dialect it would raise the driver's raw
    errors, and no deadlock would be replayed. SQLAlchemy's MySQL dialect
    speaks to MariaDB servers alike (and detects them).
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != 'mariadb':
        return url
    return parsed.set(drivername='mysql+%s' % parsed.get_driver_name()) \
        .render_as_string(hide_password=False)


@contextlib.contextmanager
def using(context, transaction):
    """Run the block in ``transaction`` with ``context.session`` set to it.

    ``transaction`` is a context manager's ``reader`` or ``writer``. A
    block already in a transaction of the same manager joins it; the
    previous session is restored when the block ends.
    """
    key = getattr(transaction, 'manager_id', None)
    with transaction.using(context) as session:
        with context.bound_to(key, session):
            yield session


def reader(transaction_of):
    """Decorator: run ``f(context, ...)`` in the reader transaction
    ``transaction_of(context)`` gives (joining one the context is in).
    """
    def decorator(f):
        @functools.wraps(f)
        def wrapper(context, *args, **kwargs):
            with using(context, transaction_of(context)):
                return f(context, *args, **kwargs)
        return wrapper
    return decorator


# InnoDB reports a deadlock (or lock wait time-out) on a table's AUTO-INC
# lock, which an INSERT ... SELECT holds for the whole statement, as error
# 1467 "Failed to read auto-increment value from storage engine". oslo.db
# hands every OperationalError it does not recognise on untranslated (not
# as a DBError), so this one reaches the replay as SQLAlchemy raised it.
MYSQL_AUTOINC_READ_FAILED = 1467


def _autoinc_lock_failed(exc):
    """Is ``exc`` MySQL's error 1467 (see MYSQL_AUTOINC_READ_FAILED)?"""
    return (isinstance(exc, sa.exc.OperationalError)
            and db_utils.server_error_code(exc) == MYSQL_AUTOINC_READ_FAILED)


# Writers race with each other (compute start-ups replacing their hosts'
# machine types side by side in one index, spawns, several online
# migrations recording the same instances, two cells mapped at once) and
# either server, or Galera's certification, may pick one of them as a
# deadlock victim (oslo.db raises DBDeadlock). The whole transaction is
# replayed, from outside it, so the operator never sees them.
_retry_on_deadlock = oslo_db_api.wrap_db_retry(
    max_retries=5, retry_on_deadlock=True, retry_interval=0.1,
    inc_retry_interval=True, max_retry_interval=2,
    exception_checker=_autoinc_lock_failed)


def replayed_writer(transaction_of):
    """Decorator: run ``f(context, ...)`` in the writer transaction
    ``transaction_of(context)`` gives, replayed on a deadlock up to 5
    times.

    A replay is only sound from outside every transaction: inside one,
    the deadlock has rolled back the outer transaction too, and the
    replay would run in what remains of it. So a writer called while its
    context is already in a transaction raises WriterInTransaction
    instead of joining it; every writer must be safe to replay (an
    insert-if-absent, an upsert, or a whole transaction).
    """
    def decorator(f):
        @functools.wraps(f)
        def in_transaction(context, *args, **kwargs):
            with using(context, transaction_of(context)):
                return f(context, *args, **kwargs)

        replayed = _retry_on_deadlock(in_transaction)

        @functools.wraps(f)
        def wrapper(context, *args, **kwargs):
            if context.in_transaction():
                raise exception.WriterInTransaction(name=f.__name__)
            return replayed(context, *args, **kwargs)
        return wrapper
    return decorator


def backend(context):
    """'mysql' (MariaDB too), 'postgresql' or 'sqlite' of context.session."""
    session = context.session
    dialect = getattr(session, 'dialect', None) or \
        session.get_bind().dialect
    return db_utils.backend_family(dialect.name)


class DirectContextManager:
    """Transactions on a plain SQLAlchemy Core engine, for short commands.

    Behaves as enginefacade does where the commands can tell: errors are
    oslo.db's (DBConnectionError, DBDeadlock, DBDuplicateEntry...), the
    first connection is retried ``max_retries`` times ``retry_interval``
    seconds apart, MySQL sessions use ``mysql_sql_mode``, SQLite enforces
    foreign keys and its transactions begin at their first statement.
    """

    def __init__(self, url, max_retries=2, retry_interval=1,
                 mysql_sql_mode='TRADITIONAL', **ignored):
        self.url = url
        self._max_retries = max_retries
        self._retry_interval = retry_interval
        self._mysql_sql_mode = mysql_sql_mode
        self._engine = None
        self.reader = _DirectTransaction(self)
        self.writer = self.reader

    def get_engine(self):
        """The engine, created and its first connection tested on first use."""
        if self._engine is None:
            engine = _create_engine(self.url, self._mysql_sql_mode)
            _first_connection(engine, self._max_retries,
                              self._retry_interval)
            self._engine = engine
        return self._engine

    def dispose_pool(self):
        if self._engine is not None:
            self._engine.dispose()


class _DirectTransaction:
    """``reader`` and ``writer`` of a DirectContextManager (the same)."""

    def __init__(self, manager):
        self.manager_id = id(manager)
        self._manager = manager

    def get_engine(self):
        return self._manager.get_engine()

    @contextlib.contextmanager
    def using(self, context):
        """Yield the connection of a transaction committed when the block
        ends (rolled back on an exception); the current one if the context
        is already in one of this manager.
        """
        current = context.bound_session(self.manager_id)
        if current is not None:
            yield current
            return
        with self.get_engine().begin() as connection:
            yield connection


def _create_engine(url, mysql_sql_mode):
    """A Core engine whose errors oslo.db translates."""
    parsed = sa.engine.make_url(url)
    family = db_utils.backend_family(parsed.get_backend_name())
    if family == 'sqlite':
        # One connection per transaction: nothing shared across threads.
        kwargs = {'poolclass': sa.pool.NullPool}
    else:
        # A long command (a bulk update, the online migration) keeps its
        # connections between batches: test each one taken from the pool,
        # as enginefacade does, so a server restart or failover meanwhile
        # costs a reconnection, not the command.
        kwargs = {'pool_pre_ping': True}
    if family == 'mysql' and 'charset' not in parsed.query:
        kwargs['connect_args'] = {'charset': 'utf8'}
    engine = sa.create_engine(parsed, **kwargs)
    exc_filters.register_engine(engine)
    if family == 'sqlite':
        _sqlite_transactions(engine)
    elif family == 'mysql' and mysql_sql_mode:
        sa.event.listen(engine, 'connect', lambda dbapi_conn, _rec: (
            _set_sql_mode(dbapi_conn, mysql_sql_mode)))
    return engine


def _set_sql_mode(dbapi_connection, mode):
    with dbapi_connection.cursor() as cursor:
        cursor.execute('SET SESSION sql_mode = %s', [mode])


def _sqlite_transactions(engine):
    """Foreign keys on; BEGIN sent by SQLAlchemy, not deferred by sqlite3.

    Python's sqlite3 opens a transaction only at the first write, so a
    read-then-write (an insert-if-absent conditioned on what was read)
    would read outside it.
    """
    @sa.event.listens_for(engine, 'connect')
    def connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute('PRAGMA foreign_keys = ON')

    @sa.event.listens_for(engine, 'begin')
    def begin(connection):
        connection.exec_driver_sql('BEGIN')


def _first_connection(engine, max_retries, retry_interval):
    """Connect once, retrying as enginefacade does; raise its last error.

    ``max_retries`` attempts, at least one (enginefacade's -1, retry
    forever, would hang a command: one attempt).
    """
    attempts = max(max_retries, 1)
    for attempt in range(1, attempts + 1):
        try:
            engine.connect().close()
            return
        except db_exc.DBConnectionError as exc:
            LOG.warning('cannot connect to %s (attempt %d of %d): %s',
                        db_utils.mask_url(str(engine.url)), attempt,
                        attempts, db_utils.describe_db_error(exc))
            if attempt == attempts:
                raise
            time.sleep(retry_interval)
