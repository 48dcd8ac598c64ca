"""Databases made and dropped on a MariaDB or PostgreSQL server.

Not used by the services or the commands: the upgrade rehearsal
(tools/rehearse_upgrade.py), the benchmarks and the tests make the
databases of their deployments (an API database and its cells) with
these, through an administrator's URL of the server (its database part
is the one the connection logs in to).
"""

import os

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


class DeploymentDatabases:
    """The new, empty databases of one deployment: an API database and
    its cells, named ``names`` (``urls``: {name: URL}, in that order).

    On the server of ``server_url`` as ``<prefix>_<name>``, replacing
    those an earlier, interrupted run left; with no ``server_url``,
    SQLite files ``<name>.sqlite`` in ``directory``, which go with it.
    """

    def __init__(self, server_url, prefix, names, directory):
        self.server_url = server_url
        if server_url:
            self.urls = {name: create_database(
                server_url, '%s_%s' % (prefix, name), replace=True)
                for name in names}
        else:
            self.urls = {name: 'sqlite:///%s' % os.path.join(
                directory, '%s.sqlite' % name) for name in names}

    def drop(self):
        """Drop the server's databases (nothing to do for SQLite)."""
        if self.server_url:
            drop_databases(self.server_url, [
                sa.engine.make_url(url).database
                for url in self.urls.values()])
