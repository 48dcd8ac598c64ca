"""The API database's transaction context manager.

Configured from ``[api_database]`` on first use; object modules
(``nova.objects.cell_mapping`` ...) query through its reader and writer.
"""

from oslo_config import cfg
from oslo_db.sqlalchemy import enginefacade

from nova.db import utils as db_utils

CONF = cfg.CONF

context_manager = enginefacade.transaction_context()
_configured = False


def configure():
    """Apply ``[api_database]`` to the context manager, once."""
    global _configured
    if not _configured:
        opts = dict(CONF.api_database.items())
        db_utils.ensure_sqlite_directory(opts['connection'])
        context_manager.configure(sqlite_fk=True, **opts)
        _configured = True


def _wrap(transaction):
    def decorator(f):
        def wrapper(context, *args, **kwargs):
            configure()
            with transaction.using(context):
                return f(context, *args, **kwargs)
        wrapper.__name__ = f.__name__
        wrapper.__doc__ = f.__doc__
        return wrapper
    return decorator


reader = _wrap(context_manager.reader)
writer = _wrap(context_manager.writer)


def get_engine():
    configure()
    return context_manager.writer.get_engine()
