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


def _reader(f):
    @functools.wraps(f)
    def wrapper(context, *args, **kwargs):
        with get_context_manager().reader.using(context):
            return f(context, *args, **kwargs)
    return wrapper


reader = _reader
# Writers (cell, host and instance mappings) replay a deadlock, as the
# cell database's do: two cells mapped, or hosts discovered, at once.
writer = db_utils.replayed_writer(lambda context: get_context_manager()
                                  .writer)


def get_engine():
    return get_context_manager().writer.get_engine()
