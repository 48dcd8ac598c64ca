"""Schema migrations of the cell ("main") and API databases, with Alembic.

``db_sync`` upgrades a database to a revision (the head by default) and
``db_version`` reports where it is. Each database has its own revision
tree under ``nova/db/<database>/migrations``.

Alembic is imported where it is used, not here: every nova-manage
command imports this module, and Alembic's import is a tenth of the
start-up of a command such as ``libvirt get_machine_type``.
"""

import os

from oslo_config import cfg
from oslo_db import exception as db_exc
import sqlalchemy as sa

from nova.db import sync_waits
from nova.db import utils as db_utils
from nova import exception

CONF = cfg.CONF

MAIN = 'main'
API = 'api'
DATABASES = (MAIN, API)


def _migrations_dir(database):
    return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        database, 'migrations')


def _default_url(database):
    return (CONF.api_database.connection if database == API
            else CONF.database.connection)


def _alembic_config(database, connection, progress):
    from alembic import config as alembic_config
    config = alembic_config.Config()
    config.set_main_option('script_location', _migrations_dir(database))
    config.attributes['connection'] = connection
    config.attributes['progress'] = progress
    return config


def run_alembic_env(target_metadata):
    """Body of both env.py files: migrate on the connection we were given.

    Each revision commits on its own (with its version): a revision that
    works online commits as it goes, and an interrupted sync resumes at
    the first revision that did not finish.
    """
    from alembic import context as alembic_context
    config = alembic_context.config
    connection = config.attributes['connection']
    alembic_context.configure(connection=connection,
                              target_metadata=target_metadata,
                              render_as_batch=True,
                              transaction_per_migration=True)
    with alembic_context.begin_transaction():
        alembic_context.run_migrations()


def progress_reporter():
    """The progress callback of the running sync, for revisions to call.

    Called with one line of text; does nothing unless the caller of
    db_sync asked for progress.
    """
    from alembic import context as alembic_context
    return (alembic_context.config.attributes.get('progress')
            or (lambda message: None))


def _engine(database, url):
    url = url or _default_url(database)
    try:
        db_utils.validate_url(url)
    except ValueError as exc:
        raise exception.DBConnectionError(url=db_utils.mask_url(url),
                                          reason=str(exc))
    db_utils.ensure_sqlite_directory(url)
    return url, sa.create_engine(url)


def _connect(engine, url):
    try:
        return engine.connect()
    except (sa.exc.DBAPIError, db_exc.DBError) as exc:
        raise exception.DBConnectionError(
            url=db_utils.mask_url(url), reason=db_utils.describe_db_error(exc))


def head_revision(database):
    """The newest revision of ``database``'s migrations."""
    from alembic import script as alembic_script
    script = alembic_script.ScriptDirectory(_migrations_dir(database))
    return script.get_current_head()


def db_sync(database=MAIN, version=None, url=None, progress=None):
    """Upgrade ``database`` at ``url`` (default: configured) to ``version``.

    ``progress``, if given, is called with a line of text as revisions
    that work on many rows advance.

    One sync at a time per database: a second one waits for the first
    (sync_waits.sync_lock) and then finds its revisions done.

    Raises DBVersionNotFound for a revision that does not exist,
    DBConnectionError when the database cannot be reached and
    DBSyncWaitTimeout when another session held it up for longer than
    [database]sync_wait_timeout; a database already at ``version`` is
    left untouched.
    """
    from alembic import command as alembic_command
    from alembic import script as alembic_script
    from alembic.util import exc as alembic_exc
    url, engine = _engine(database, url)
    target = version or 'head'
    script = alembic_script.ScriptDirectory(_migrations_dir(database))
    try:
        script.get_revision(target)
    except (alembic_exc.CommandError, KeyError):
        raise exception.DBVersionNotFound(version=version, database=database)
    try:
        with _connect(engine, url) as lock_connection, \
                sync_waits.sync_lock(
                    lock_connection.execution_options(
                        isolation_level='AUTOCOMMIT'), progress), \
                _connect(engine, url) as connection:
            sync_waits.pace_total_order(connection)
            sync_waits.bound_lock_waits(connection)
            config = _alembic_config(database, connection, progress)
            alembic_command.upgrade(config, target)
            connection.commit()
    finally:
        engine.dispose()


def db_version(database=MAIN, url=None):
    """The current revision of ``database`` at ``url``, or None if empty."""
    from alembic import migration as alembic_migration
    url, engine = _engine(database, url)
    try:
        with _connect(engine, url) as connection:
            ctxt = alembic_migration.MigrationContext.configure(connection)
            return ctxt.get_current_revision()
    finally:
        engine.dispose()
