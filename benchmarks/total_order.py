"""Client statements aborted by the statements Galera runs in total order.

    python -m benchmarks total_order [--rows N] [--rounds R]
        [--retry-autocommit K ...] --json F

On the cluster of tools/galera.sh, a table shaped like
instance_system_metadata (N rows) gets the shadow db sync's copy makes
(table_copy.create_shadow); then node 1 creates the copy's three
triggers on the table and drops them again, R times, through a
connection paced as db sync's is (sync_waits.pace_total_order): each of
those statements changes only the table's definition and runs in total
order, like the copy's rename. Meanwhile three clients (clients.py: one
statement in autocommit every 50 ms, no retry) insert and update rows
through node 2 and read them through node 3.

What it measures is what no choice of technique removes: a statement in
total order aborts the client statements that hold its table on the
other nodes when it arrives (``Deadlock found``, 1213). The clients
count those that reached them. ``--retry-autocommit K`` runs once with
the nodes' ``wsrep_retry_autocommit`` set to K (the server replays an
aborted autocommit write up to K times; 1 by default; 0 shows every
abort) and sets it back afterwards; without it, one run with the nodes'
own setting.
"""

import argparse
import functools
import sys
import time

import sqlalchemy as sa

from benchmarks import clients
from benchmarks import harness
from benchmarks import report
from benchmarks import upgrade
from nova.db import sync_waits
from nova.db import table_copy

DATABASE = 'bench_total_order'
TABLE = 'instance_system_metadata'
UNIQUE_COLUMNS = ['instance_uuid', 'key', 'deleted']
SHADOW_INDEXES = [(True, 'uniq_sysmeta', UNIQUE_COLUMNS)]
KEYS_PER_INSTANCE = 10
# Seconds between a round's triggers created and dropped, and between
# two rounds: the clients' requests meet the table with and without them.
SETTLE = 0.5


def node(role, database=DATABASE):
    """An engine on the Galera node of ``role`` (upgrade.GALERA_PORTS),
    in autocommit."""
    return sa.create_engine(upgrade.node_url('galera', database, role),
                            isolation_level='AUTOCOMMIT',
                            poolclass=sa.pool.NullPool)


def create_table(rows):
    """The table with ``rows`` rows of rows // 10 instances, and its
    shadow, in a database of its own."""
    with node('sync', None).connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS %s' % DATABASE))
        conn.execute(sa.text('CREATE DATABASE %s' % DATABASE))
    with node('sync').connect() as conn:
        conn.execute(sa.text(
            'CREATE TABLE %s (created_at datetime, updated_at datetime,'
            ' deleted_at datetime, id int NOT NULL AUTO_INCREMENT,'
            ' instance_uuid varchar(36) NOT NULL, `key` varchar(255)'
            ' COLLATE utf8mb4_bin NOT NULL, value text, deleted int,'
            ' PRIMARY KEY (id), KEY instance_uuid (instance_uuid))'
            ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4' % TABLE))
        # MariaDB's sequence tables: rows in chunks of 10,000 ids, each an
        # ordinary replicated transaction.
        for low in range(0, rows, 10000):
            conn.execute(sa.text(
                "INSERT INTO %s (created_at, instance_uuid, `key`, value,"
                " deleted) SELECT UTC_TIMESTAMP(), concat('inst-', seq DIV"
                " %d), concat('k', seq MOD %d), 'v', 0 FROM seq_%d_to_%d"
                % (TABLE, KEYS_PER_INSTANCE, KEYS_PER_INSTANCE, low + 1,
                   min(low + 10000, rows))))
        table_copy.create_shadow(conn, TABLE, SHADOW_INDEXES)


def insert_row(cursor, key, rng, rows, n):
    """A new row (a key of its own) of a random instance."""
    cursor.execute('INSERT INTO %s (created_at, instance_uuid, %s, value,'
                   " deleted) VALUES (UTC_TIMESTAMP(), %%s, %%s, 'v', 0)"
                   % (TABLE, key), ('inst-%d' % rng.randrange(
                       rows // KEYS_PER_INSTANCE), 'bench-%d' % n))


def update_row(cursor, key, rng, rows, n):
    """A new value of a random row, by id."""
    cursor.execute('UPDATE %s SET value = %%s, updated_at = UTC_TIMESTAMP()'
                   ' WHERE id = %%s' % TABLE,
                   ('v%d' % n, rng.randrange(1, rows)))


def read_rows(cursor, key, rng, rows, n):
    """The live rows of a random instance."""
    cursor.execute('SELECT id, %s, value FROM %s WHERE instance_uuid = %%s'
                   ' AND deleted = 0' % (key, TABLE),
                   ('inst-%d' % rng.randrange(rows // KEYS_PER_INSTANCE),))
    cursor.fetchall()


CLIENTS = (('insert', 'writers', insert_row),
           ('update', 'writers', update_row),
           ('read', 'readers', read_rows))


NODES = ('writers', 'readers')


def global_value(role, sql):
    """The one value ``sql`` reads on the node of ``role``."""
    with node(role).connect() as conn:
        return conn.execute(sa.text(sql)).one()[-1]


def set_retry_autocommit(values):
    """Set wsrep_retry_autocommit, {role: value}, on nodes 2 and 3 (a
    node's own setting, not replicated); returns the previous values."""
    previous = {}
    for role, value in values.items():
        previous[role] = global_value(
            role, 'SELECT @@global.wsrep_retry_autocommit')
        with node(role).connect() as conn:
            conn.execute(sa.text('SET GLOBAL wsrep_retry_autocommit = %d'
                                 % value))
    return previous


class StatementClock:
    """The seconds each statement in total order takes on a connection,
    from its start to its end (db sync's pause after it excluded: the
    clock's listener runs first, being registered first)."""

    def __init__(self, conn):
        self.seconds = []
        self._began = 0.0
        sa.event.listen(conn, 'before_cursor_execute', self._start)
        sa.event.listen(conn, 'after_cursor_execute', self._stop)

    def _start(self, *args):
        self._began = time.perf_counter()

    def _stop(self, conn, cursor, statement, *args):
        if sync_waits.in_total_order(statement):
            self.seconds.append(time.perf_counter() - self._began)


def flip_triggers(rounds):
    """Create and drop the copy's triggers ``rounds`` times on node 1,
    paced as db sync is; returns each statement's seconds."""
    with node('sync').connect() as conn:
        clock = StatementClock(conn)
        sync_waits.pace_total_order(conn)
        columns = table_copy.columns_of(conn, TABLE)
        for _ in range(rounds):
            table_copy.create_triggers(conn, TABLE, columns, UNIQUE_COLUMNS)
            time.sleep(SETTLE)
            table_copy.drop_triggers(conn, TABLE)
            time.sleep(SETTLE)
    return clock.seconds


def bench(rows, rounds, retry):
    """One run; ``retry``: the nodes' wsrep_retry_autocommit for it, or
    None to leave theirs."""
    harness.log('== total_order, %d rows, %d rounds, wsrep_retry_autocommit '
                '%s' % (rows, rounds, 'as set' if retry is None else retry))
    create_table(rows)
    previous = None
    if retry is not None:
        previous = set_retry_autocommit({role: retry for role in NODES})
    try:
        in_effect = [int(global_value(
            role, 'SELECT @@global.wsrep_retry_autocommit'))
            for role in NODES]
        begun = time.time()
        seconds, records = clients.run_beside(
            [(name, upgrade.node_url('galera', DATABASE, role), request)
             for name, role, request in CLIENTS],
            rows, functools.partial(flip_triggers, rounds))
        ended = time.time()
    finally:
        if previous is not None:
            set_retry_autocommit(previous)
        with node('sync', None).connect() as conn:
            conn.execute(sa.text('DROP DATABASE IF EXISTS %s' % DATABASE))
    return {'backend': 'galera', 'rows': rows, 'rounds': rounds,
            'retry_autocommit': in_effect, 'statements': len(seconds),
            'statement_median_ms': 1000 * clients.percentile(seconds, 0.5),
            'statement_worst_ms': 1000 * max(seconds),
            'seconds': ended - begun,
            'clients': [clients.summarize(record, begun, ended)
                        for record in records]}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rows', type=int, default=100000,
                        help='rows of the table (default: 100000)')
    parser.add_argument('--rounds', type=int, default=25,
                        help='times the three triggers are created and '
                        'dropped (default: 25, 150 statements)')
    parser.add_argument('--retry-autocommit', action='append', type=int,
                        metavar='K', help='repeatable: one run with the '
                        "nodes' wsrep_retry_autocommit set to K (default: "
                        'one run with their own setting)')
    parser.add_argument('--json', default='bench-total-order.json',
                        help='where to write every figure')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return harness.record_results(
        'total_order', (functools.partial(bench, args.rows, args.rounds, k)
                        for k in args.retry_autocommit or [None]),
        args.json, report.total_order_table)


if __name__ == '__main__':
    sys.exit(main())
