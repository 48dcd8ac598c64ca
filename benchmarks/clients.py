"""Clients beside a command: what other services see while it runs.

Each client is a process of its own with one DB-API connection in
autocommit (the driver alone, no nova code), starting a request every
INTERVAL seconds and recording each request's start, latency and error,
never retrying. ``run_beside`` runs a command while they run; ``summarize``
turns one client's record into its figures (requests, failures, worst
wait, p99, the worst of the requests that overlapped the command). The
scale scenario's writer and the upgrade scenario's five clients are both
made of these.
"""

import math
import multiprocessing
import random
import time

import sqlalchemy as sa

from benchmarks import probes
from nova.db import utils as db_utils

INTERVAL = 0.05
# Connect, lock and statement time-outs of the clients (seconds): long,
# so that a blocked request shows as a long wait rather than an error.
TIMEOUT = 120
# A request slower than this is counted apart.
SLOW = 1.0
ERRORS_KEPT = 3


def dialect_of(url):
    """'mysql', 'postgresql' or 'sqlite': the kind of server of ``url``
    (a ``mariadb+pymysql://`` URL's is 'mysql')."""
    return db_utils.backend_family(sa.engine.make_url(url).get_backend_name())


def key_column(url):
    """The ``key`` column as it is written in SQL on ``url``'s server."""
    return probes.quoted_key(dialect_of(url))


def connect(url, **options):
    """A DB-API connection of ``url``'s driver, in autocommit.

    SQLAlchemy only turns the URL into the driver's arguments, to which
    ``options`` are added. Waits for locks and statements end after
    TIMEOUT seconds.
    """
    parsed = sa.engine.make_url(url)
    dialect = parsed.get_dialect()()
    args, kwargs = dialect.create_connect_args(parsed)
    kwargs['connect_timeout'] = TIMEOUT
    mysql = dialect_of(url) == 'mysql'
    if mysql:
        kwargs.update(autocommit=True, read_timeout=2 * TIMEOUT,
                      init_command='SET SESSION innodb_lock_wait_timeout = '
                      '%d, lock_wait_timeout = %d, max_statement_time = %d'
                      % ((TIMEOUT,) * 3))
    else:
        kwargs['options'] = '-c lock_timeout=%ds -c statement_timeout=%ds' \
            % (TIMEOUT, TIMEOUT)
    kwargs.update(options)
    conn = dialect.import_dbapi().connect(*args, **kwargs)
    if not mysql:
        conn.autocommit = True
    return conn


def close(conn):
    """Close ``conn`` (if any), ignoring a broken one; return None."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # already broken: nothing left to close
        pass


def _client(name, url, request, context, barrier, stop, results):
    """Run one client until ``stop``; put its record on ``results``.

    ``request(cursor, key, rng, context, n)`` runs the n-th request (one
    statement in autocommit, ``%s`` placeholders, ``key`` the quoted key
    column) and returns a row it wrote that must outlive the command, or
    None. A request starts every INTERVAL seconds, or as soon as the
    previous one ends if that took longer. A failed request is recorded
    with its error and not retried; the connection is then opened again,
    within the next request. The record: name, url, requests as
    [start (epoch s), latency (s), error or None] and the rows written.
    """
    key = key_column(url)
    rng = random.Random(name)
    conn = connect(url)
    requests, written = [], []
    barrier.wait()
    due = time.monotonic()
    while not stop.is_set():
        time.sleep(max(0.0, due - time.monotonic()))
        start, began, error = time.time(), time.perf_counter(), None
        try:
            conn = conn or connect(url)
            row = request(conn.cursor(), key, rng, context, len(requests))
        except Exception as exc:  # every failure counts, whatever it is
            error = '%s: %s' % (type(exc).__name__, exc)
            conn = close(conn)
        else:
            if row:
                written.append(row)
        requests.append((start, time.perf_counter() - began, error))
        due = max(due + INTERVAL, time.monotonic())
    close(conn)
    results.put({'name': name, 'url': url, 'requests': requests,
                 'written': written})


def run_beside(clients, context, command):
    """Run ``command()`` while ``clients`` run; (its result, their records).

    ``clients``: [(name, url, request)] (see _client); ``context`` is
    handed to every request (what the seed wrote that they pick from).
    The clients start and connect before the command starts, and stop
    when it returns; records come back in ``clients``' order.
    """
    ctx = multiprocessing.get_context('fork')
    barrier, stop, results = ctx.Barrier(len(clients) + 1), ctx.Event(), \
        ctx.Queue()
    procs = [ctx.Process(target=_client, args=(
        name, url, request, context, barrier, stop, results))
        for name, url, request in clients]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=TIMEOUT)
        result = command()
    finally:
        stop.set()
    records = {}
    for _ in procs:
        record = results.get(timeout=3 * TIMEOUT)
        records[record['name']] = record
    for proc in procs:
        proc.join()
    return result, [records[name] for name, _, _ in clients]


def percentile(values, fraction):
    """The ``fraction`` quantile of ``values`` (nearest rank); 0 if none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(record, start, end):
    """One client's figures; latencies in ms, times from ``start``.

    ``start`` and ``end`` (epoch s) are the command's: a request counts
    as during the command if it overlapped it at all.
    """
    requests = record['requests']
    latencies = [latency for _, latency, _ in requests]
    during = [latency for began, latency, _ in requests
              if began < end and began + latency > start]
    errors = [error for _, _, error in requests if error]
    return {
        'client': record['name'],
        'port': sa.engine.make_url(record['url']).port,
        'requests': len(requests), 'failures': len(errors),
        'first_errors': list(dict.fromkeys(errors))[:ERRORS_KEPT],
        'worst_ms': 1000 * max(latencies, default=0),
        'p99_ms': 1000 * percentile(latencies, 0.99),
        'sync_requests': len(during),
        'sync_worst_ms': 1000 * max(during, default=0),
        'slow': sum(1 for latency in latencies if latency > SLOW),
        # [s from the command's start, ms, error]: the whole timeline.
        'timeline': [[round(began - start, 3),
                      round(1000 * latency, 1), error]
                     for began, latency, error in requests],
    }
