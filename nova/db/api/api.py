"""The API database's transaction context manager.

Created and configured from ``[api_database]`` on first use; object
modules (``nova.objects.cell_mapping`` ...) query through ``reader`` and
``writer``.
"""

from oslo_config import cfg

from nova.db import transactions

CONF = cfg.CONF

_context_manager = None


def get_context_manager():
    """The API database's context manager, configured on first use."""
    global _context_manager
    if _context_manager is None:
        opts = dict(CONF.api_database.items())
        _context_manager = transactions.create_context_manager(
            opts.pop('connection'), **opts)
    return _context_manager


def reset():
    """Forget the context manager (tests switch databases between cases)."""
    global _context_manager
    if _context_manager is not None:
        _context_manager.dispose_pool()
    _context_manager = None


reader = transactions.reader(lambda context: get_context_manager().reader)
# Writers (cell, host and instance mappings) replay a deadlock, as the
# cell database's do: two cells mapped, or hosts discovered, at once.
writer = transactions.replayed_writer(lambda context: get_context_manager()
                                      .writer)


def get_engine():
    return get_context_manager().writer.get_engine()
