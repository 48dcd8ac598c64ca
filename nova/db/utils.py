"""Helpers shared by the cell and API database layers."""

import importlib
import os
import re

from oslo_db import exception as db_exc
import sqlalchemy as sa

from nova import exception


def mask_url(url):
    """``url`` with its password replaced by ``***``, safe to print or log."""
    if not url:
        return url
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        # Not parseable as a URL: print nothing of it that could be secret.
        return '<unparseable database URL>'


# user:password@ in any URL-like text.
_URL_PASSWORD_RE = re.compile(r'(://[^:/@\s]*:)[^@\s]*@')


def scrub_secrets(text):
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_PASSWORD_RE.sub(r'\1***@', text)


def validate_url(url):
    """Raise ValueError with a clear reason if ``url`` is not a usable URL."""
    if not url:
        raise ValueError('no database connection URL is configured')
    try:
        parsed = sa.engine.make_url(url)
    except Exception:
        raise ValueError('malformed database connection URL %s'
                         % mask_url(url))
    try:
        parsed.get_dialect()
    except Exception:
        raise ValueError('unsupported database driver %r in %s'
                         % (parsed.drivername, mask_url(url)))
    return parsed


def ensure_sqlite_directory(url):
    """Create the directory of an SQLite file database if it is missing."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == 'sqlite' and parsed.database \
            and parsed.database != ':memory:':
        directory = os.path.dirname(os.path.abspath(parsed.database))
        os.makedirs(directory, exist_ok=True)


def server_error_code(exc):
    """The database server's code for a SQLAlchemy DBAPI error, or None.

    MySQL's number (1213 for a deadlock, which Galera also gives a
    certification failure) or PostgreSQL's SQLSTATE ('40P01'), read
    from the driver's exception that ``exc`` wraps.
    """
    orig = getattr(exc, 'orig', None)
    pgcode = getattr(orig, 'pgcode', None)
    if pgcode:
        return pgcode
    args = getattr(orig, 'args', ())
    return args[0] if args else None


def describe_db_error(exc):
    """One line for an operator from an oslo.db / SQLAlchemy error.

    Drivers put the URL, the SQL and sometimes credentials in their
    messages; this keeps only the driver's first line of reason.
    """
    inner = getattr(exc, 'inner_exception', None) or exc
    orig = getattr(inner, 'orig', None) or inner
    args = getattr(orig, 'args', ())
    if args and isinstance(args[-1], str):
        text = args[-1]
    else:
        text = str(orig)
    text = (text.strip().splitlines()[0] if text.strip()
            else type(orig).__name__)
    if isinstance(exc, db_exc.DBConnectionError) and 'connect' not in text:
        text = 'cannot connect: ' + text
    return scrub_secrets(text)


def describe_error(exc):
    """One line for an operator about ``exc``, with no secret in it.

    A nova error gives its message, a database error the driver's reason;
    anything else its type and text.
    """
    if isinstance(exc, exception.NovaException):
        return exc.format_message()
    if isinstance(exc, (db_exc.DBError, sa.exc.SQLAlchemyError)):
        return 'database error: %s' % describe_db_error(exc)
    return scrub_secrets('%s: %s' % (type(exc).__name__, exc))


def backend_family(dialect_name):
    """'mysql', 'postgresql' or 'sqlite': the family of a dialect's name.

    SQLAlchemy names its MariaDB dialect ``mariadb`` (URLs such as
    ``mariadb+pymysql://``); everything here treats it as MySQL.
    """
    return 'mysql' if dialect_name == 'mariadb' else dialect_name


def connection_family(connection):
    """backend_family of a SQLAlchemy connection's dialect."""
    return backend_family(connection.dialect.name)


def _dialect_insert(dialect_name, table):
    """The INSERT of ``dialect_name``, which knows its conflict clauses.

    The dialect is imported here, not at the top: importing all three
    costs every nova command 40 ms at start-up (PostgreSQL's brings
    asyncpg's), and the engine has already loaded the one in use.
    """
    family = backend_family(dialect_name)
    if family not in ('mysql', 'postgresql', 'sqlite'):
        raise ValueError('no INSERT for dialect %r' % dialect_name)
    dialect = importlib.import_module('sqlalchemy.dialects.' + family)
    return dialect.insert(table)


def insert_if_absent(dialect_name, table):
    """INSERT that silently skips rows colliding with a unique key.

    MySQL: ``INSERT ... ON DUPLICATE KEY UPDATE id = id`` (a no-op update,
    unlike INSERT IGNORE, which would also hide truncation errors);
    PostgreSQL and SQLite: ``INSERT ... ON CONFLICT DO NOTHING``.
    Its rowcount is not the number of rows inserted on MySQL (a skipped
    row counts as matched): callers count what they insert themselves.
    """
    stmt = _dialect_insert(dialect_name, table)
    if backend_family(dialect_name) == 'mysql':
        return stmt.on_duplicate_key_update(id=table.c.id)
    return stmt.on_conflict_do_nothing()


def upsert(dialect_name, table, conflict_columns, update_columns):
    """INSERT that overwrites columns of a colliding row.

    ``update_columns`` lists the columns to overwrite with the inserted
    row's values, or maps each column to overwrite to the inserted row's
    column to take it from: ``{'value': 'value', 'updated_at':
    'created_at'}`` stamps the overwrite with the new row's creation time.
    """
    if not isinstance(update_columns, dict):
        update_columns = {col: col for col in update_columns}
    stmt = _dialect_insert(dialect_name, table)
    if backend_family(dialect_name) == 'mysql':
        return stmt.on_duplicate_key_update(
            {col: stmt.inserted[src] for col, src in update_columns.items()})
    return stmt.on_conflict_do_update(
        index_elements=conflict_columns,
        set_={col: stmt.excluded[src] for col, src in update_columns.items()})
