"""Request context, cell targeting and scatter-gather over cells.

A ``RequestContext`` carries who is asking and which database it talks
to: ``db_connection`` is None for the cell database of ``[database]``,
or the transaction context manager of a cell set by ``target_cell``.
"""

import contextlib
import copy
import functools
import logging
import threading
import uuid as uuid_lib

import nova.conf
from nova.db.main import api as main_db_api
from nova import objects

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


# The result recorded for a cell that did not answer in time.
did_not_respond_sentinel = _Sentinel('did_not_respond')

# One transaction context manager per cell database URL, created once.
_CELL_CACHE = {}
_CELL_CACHE_LOCK = threading.Lock()


class RequestContext:
    """Who asks (user, project, admin) and where (which cell database).

    In a database transaction (``nova.db.transactions.using``, which the
    query functions' reader and writer decorators open) ``session`` is
    what the statements execute on.
    """

    def __init__(self, user_id=None, project_id=None, is_admin=False,
                 request_id=None, db_connection=None, cell_uuid=None):
        self.user_id = user_id
        self.project_id = project_id
        self.is_admin = is_admin
        self.request_id = request_id or 'req-' + str(uuid_lib.uuid4())
        self.db_connection = db_connection
        self.cell_uuid = cell_uuid
        # The transactions the context is in, innermost last, per thread:
        # shared with the copies target_cell makes, as a transaction is
        # by whoever runs in it.
        self._transactions = threading.local()

    def _bound(self):
        if not hasattr(self._transactions, 'stack'):
            self._transactions.stack = []
        return self._transactions.stack

    @property
    def session(self):
        """The session (or connection) of the innermost transaction."""
        stack = self._bound()
        if not stack:
            raise RuntimeError(
                '%r is in no database transaction in this thread: a query '
                'function needs its database\'s reader or writer decorator'
                % self)
        return stack[-1][1]

    def in_transaction(self):
        """True if the context is in a database transaction in this thread."""
        return bool(self._bound())

    def bound_session(self, key):
        """The innermost session bound with ``key``, or None."""
        for bound_key, session in reversed(self._bound()):
            if bound_key == key:
                return session
        return None

    @contextlib.contextmanager
    def bound_to(self, key, session):
        """Make ``session`` the context's session for the block."""
        stack = self._bound()
        stack.append((key, session))
        try:
            yield session
        finally:
            stack.pop()

    def elevated(self):
        ctxt = copy.copy(self)
        ctxt.is_admin = True
        return ctxt

    def __repr__(self):
        return '<RequestContext %s cell=%s>' % (self.request_id,
                                                self.cell_uuid)


def get_admin_context():
    """A context with admin rights on the default cell database."""
    return RequestContext(is_admin=True)


def get_context_manager(database_connection):
    """The (cached) transaction context manager of one cell database URL."""
    with _CELL_CACHE_LOCK:
        manager = _CELL_CACHE.get(database_connection)
        if manager is None:
            manager = main_db_api.create_context_manager(database_connection)
            _CELL_CACHE[database_connection] = manager
        return manager


def reset_cell_cache():
    """Close and forget every cell's context manager (for tests)."""
    with _CELL_CACHE_LOCK:
        for manager in _CELL_CACHE.values():
            manager.dispose_pool()
        _CELL_CACHE.clear()


def set_target_cell(context, cell_mapping):
    """Point ``context`` at ``cell_mapping``'s database (None: the default)."""
    if cell_mapping is None:
        context.db_connection = None
        context.cell_uuid = None
    else:
        context.db_connection = get_context_manager(
            cell_mapping.database_connection)
        context.cell_uuid = cell_mapping.uuid


@contextlib.contextmanager
def target_cell(context, cell_mapping):
    """Yield a copy of ``context`` that talks to ``cell_mapping``'s database.

    The caller's context is left untouched, so contexts for several cells
    can be used side by side (and from several threads).
    """
    cctxt = copy.copy(context)
    set_target_cell(cctxt, cell_mapping)
    yield cctxt


def cell_timeout():
    """Seconds a command that spans cells waits for each cell to answer.

    [DEFAULT]cell_timeout, read when a command runs so that an operator
    (or a test) can change it.
    """
    return CONF.cell_timeout


def scatter_gather_cells(context, cell_mappings, timeout, fn, *args,
                         **kwargs):
    """Run ``fn(cell_context, *args, **kwargs)`` on every cell in parallel.

    Returns {cell_uuid: result}. A cell that does not answer within
    ``timeout`` seconds (None: however long it takes) maps to
    ``did_not_respond_sentinel``; a cell whose call raised maps to the
    exception. Either way the other cells' answers are returned.
    """
    def call(cell_mapping):
        with target_cell(context, cell_mapping) as cctxt:
            return fn(cctxt, *args, **kwargs)

    cell_mappings = list(cell_mappings)
    results = run_in_parallel(
        {cell.uuid: functools.partial(call, cell) for cell in cell_mappings},
        timeout)
    for cell_mapping in cell_mappings:
        result = results[cell_mapping.uuid]
        if result is did_not_respond_sentinel:
            LOG.warning('Cell %s did not respond within %s seconds',
                        cell_mapping.identity, timeout)
        elif isinstance(result, Exception):
            LOG.warning('Error from cell %s: %s', cell_mapping.identity,
                        result)
    return results


def run_in_parallel(calls, timeout):
    """Call every function of ``calls`` ({key: f()}) in a thread of its own.

    Returns {key: what f returned, or the exception it raised}; a call
    still running after ``timeout`` seconds (None: however long they
    take) maps to ``did_not_respond_sentinel``.

    The threads are daemons: a call that never returns must not keep
    the command from exiting once it has reported the others (a
    ThreadPoolExecutor joins its threads at interpreter exit).
    """
    answers = {}
    answered = threading.Condition()

    def run(key, fn):
        try:
            result = fn()
        except Exception as exc:
            result = exc
        with answered:
            answers[key] = result
            answered.notify_all()

    for key, fn in calls.items():
        threading.Thread(target=run, args=(key, fn), daemon=True,
                         name='parallel-%s' % key).start()
    with answered:
        answered.wait_for(lambda: len(answers) == len(calls), timeout)
        # A copy: a call returning later must not change what is returned.
        results = dict(answers)
    for key in calls:
        results.setdefault(key, did_not_respond_sentinel)
    return results


def scatter_gather_all_cells(context, fn, *args, timeout=None, **kwargs):
    """``scatter_gather_cells`` over every cell in the API database.

    ``timeout`` defaults to cell_timeout().
    """
    cells = objects.CellMappingList.get_all(context)
    return scatter_gather_cells(
        context, cells, cell_timeout() if timeout is None else timeout,
        fn, *args, **kwargs)


def is_cell_failure_sentinel(result):
    """True if a scatter-gather result says the cell did not answer."""
    return (result is did_not_respond_sentinel
            or isinstance(result, Exception))
