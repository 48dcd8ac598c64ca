"""Databases made and dropped on a MariaDB or PostgreSQL server.

Not used by the services or the commands: the upgrade rehearsal
(tools/rehearse_upgrade.py), the benchmarks and the tests make the
databases of their deployments (an API database and its cells) with
these, through an administrator's URL of the server (its database part
is the one the connection logs in to).
"""

import sqlalchemy as sa

from nova.db import utils as db_utils


def database_url(server_url, name):
    """The URL of database ``name`` on the server of ``server_url``."""
    return sa.engine.make_url(server_url).set(
        database=name).render_as_string(hide_password=False)


def _admin(server_url):
    return sa.create_engine(server_url, isolation_level='AUTOCOMMIT')


def _drop_statement(dialect_name, name):
    # PostgreSQL refuses to drop a database others are connected to
    # (a thread of a test still holding one, a client a benchmark
    # killed); FORCE ends their sessions first.
    force = ' WITH (FORCE)' if db_utils.backend_family(
        dialect_name) == 'postgresql' else ''
    return sa.text('DROP DATABASE IF EXISTS %s%s' % (name, force))


def create_database(server_url, name, template=None, replace=False):
    """CREATE DATABASE ``name``; return its URL.

    ``template``: on PostgreSQL, the database it is a copy of.
    ``replace``: drop a database of that name first (one an earlier,
    interrupted run left). Raises SQLAlchemy's OperationalError when the
    server cannot be reached.
    """
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            if replace:
                conn.execute(_drop_statement(conn.dialect.name, name))
            statement = 'CREATE DATABASE %s' % name
            if template:
                statement += ' TEMPLATE %s' % template
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()
    return database_url(server_url, name)


def drop_databases(server_url, names):
    """Drop the databases ``names`` (those that exist) from the server."""
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(_drop_statement(conn.dialect.name, name))
    finally:
        admin.dispose()
