"""The API database's transaction context manager.

Created and configured from ``[api_database]`` on first use; object
modules (``nova.objects.cell_mapping`` ...) query through ``reader`` and
``writer``.
"""

import functools

from oslo_config import cfg
from oslo_db.sqlalchemy import enginefacade

from nova.db import utils as db_utils

CONF = cfg.CONF

_context_manager = None


def get_context_manager():
    """The API database's context manager, configured on first use."""
    global _context_manager
    if _context_manager is None:
        opts = dict(CONF.api_database.items())
        db_utils.ensure_sqlite_directory(opts['connection'])
        manager = enginefacade.transaction_context()
        manager.configure(sqlite_fk=True, **opts)
        _context_manager = manager
    return _context_manager


def reset():
    """Forget the context manager (tests switch databases between cases)."""
    global _context_manager
    if _context_manager is not None:
        _context_manager.dispose_pool()
    _context_manager = None


def _using(kind):
    def decorator(f):
        @functools.wraps(f)
        def wrapper(context, *args, **kwargs):
            transaction = getattr(get_context_manager(), kind)
            with transaction.using(context):
                return f(context, *args, **kwargs)
        return wrapper
    return decorator


reader = _using('reader')
writer = _using('writer')


def get_engine():
    return get_context_manager().writer.get_engine()
