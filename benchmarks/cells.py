"""Many cells: the cross-cell commands beside their SQL run cell after cell.

For each backend: an API database and --cells cell databases on the one
server (all named cellsbench_<pid>_..., dropped at the end), mapped with
``nova-manage cell_v2 create_cell``. The first cell is seeded with
--instances-per-cell instances by benchmarks/seed.py (the shape of a
cloud half way through the upgrade); every other cell is a copy of it
made on the server (MariaDB: INSERT ... SELECT across databases;
PostgreSQL: COPY out of one database into the other), with the uuids'
first eight hex digits replaced by the cell's number, so that no two
cells share an instance uuid, plus its instance mappings.

Then each cross-cell command runs in a process of its own (wall time and
peak RSS through GNU time, as benchmarks/scale.py measures), beside its
lower bound: the same per-cell SQL run one cell after another through
the bare driver in one process (benchmarks/probes.py ``cells``). Every
command and bound runs --repeat times, in rounds (each round runs them
all once, so that a machine busy for a while slows both sides); the
table gives each one's median wall time, and the ratio of the medians:

  nova-status upgrade check        unrecorded by host, refused, drift
  list_unset_machine_type          the anti-join, streamed to a file
  machine_type_summary             GROUP BY type, vm_state
  bulk_update_machine_type         GROUP BY then UPDATE, then undone
    (--from pc-q35-7.2 --to pc-q35-8.2; the --dry-run too)
  db online_data_migrations        INSERT ... SELECT, then undone

Then the failure scenario: one cell "stopped" (its mapping points at a
port of 127.0.0.1 that nothing listens on, so every connection is
refused, as with a database server that is stopped on a live host) and
one made slow (another session holds LOCK TABLES instances WRITE on
MariaDB, LOCK TABLE instances IN ACCESS EXCLUSIVE MODE in an open
transaction on PostgreSQL, for as long as the commands run). Each
command runs again, with --format json (--json for nova-status), and is
checked: its exit code is the documented one, the failing cells cost
it at most its documented time-out, [DEFAULT]cell_timeout
(--cell-timeout, 60 s by default), plus MARGIN seconds (its wall time
is at most that beyond its wall time without the failures, which
covers the interpreter's start-up, seconds on a loaded machine), it
reported the other cells in full (the same figures as without the
failures) and it named both failing cells.

    python benchmarks/cells.py --backend mysql --backend postgresql \\
        --cells 20 --instances-per-cell 50000 --json cells.json

Prints a table per backend; writes every figure to --json.
"""

import argparse
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sqlalchemy as sa  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks import probes  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import seed as seeding  # noqa: E402
from nova import config  # noqa: E402

BULK_OLD, BULK_NEW = 'pc-q35-7.2', 'pc-q35-8.2'
# Seconds the failing cells may cost a command beyond its documented
# time-out: the lock-wait time-out fires just after the cell time-out.
MARGIN = 5
log = harness.log


# -- the cells ----------------------------------------------------------------

def quote(dialect, name):
    return '`%s`' % name if dialect == 'mysql' else '"%s"' % name


def copy_columns(dialect, table, uuid_column, prefix):
    """(column list, SELECT list) copying ``table`` with new uuids.

    Every column but a system metadata row's id (its sequence numbers the
    copy); ``uuid_column`` gets ``prefix`` for its first eight characters.
    """
    names = [c.name for c in table.columns
             if not (table is seeding.SYSMETA and c.name == 'id')]
    concat = ("CONCAT('%s', SUBSTRING(%s, 9))" if dialect == 'mysql' else
              "'%s' || substr(%s, 9)")
    select = [concat % (prefix, quote(dialect, name))
              if name == uuid_column else quote(dialect, name)
              for name in names]
    return ', '.join(quote(dialect, n) for n in names), ', '.join(select)


# (table, its uuid column) copied from the seeded cell.
COPIED = ((seeding.INSTANCES, 'uuid'),
          (seeding.SYSMETA, 'instance_uuid'))


def copy_cell_mysql(server, src, dst, api, number, cell_id):
    """Copy cell ``src`` into ``dst`` and map its instances, on MariaDB.

    One INSERT ... SELECT per table, across databases of one server.
    """
    prefix = '%08x' % number
    engine = sa.create_engine(server)
    with engine.begin() as conn:
        for table, uuid_column in COPIED:
            columns, select = copy_columns('mysql', table, uuid_column,
                                           prefix)
            # INSERT INTO dst.t (cols) SELECT cols, uuid rewritten
            #   FROM src.t
            conn.execute(sa.text('INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s'
                                 % (dst, table.name, columns, select, src,
                                    table.name)))
        conn.execute(sa.text(
            'INSERT INTO %s.instance_mappings (instance_uuid, cell_id, '
            'project_id, deleted) SELECT uuid, %d, project_id, 0 FROM %s.'
            'instances' % (api, cell_id, dst)))
    engine.dispose()


def _copy_pg(src_url, select, dst_url, table, columns):
    """COPY (``select``) out of one PostgreSQL database into another."""
    buffer = tempfile.TemporaryFile()
    source, _ = probes.connect(src_url)
    source.cursor().copy_expert('COPY (%s) TO STDOUT' % select, buffer)
    source.close()
    buffer.seek(0)
    target, _ = probes.connect(dst_url)
    target.cursor().copy_expert('COPY %s (%s) FROM STDIN' % (table, columns),
                                buffer)
    target.commit()
    target.close()
    buffer.close()


def copy_cell_postgresql(src_url, dst_url, api_url, number, cell_id):
    """Copy cell ``src_url`` into ``dst_url`` and map its instances.

    PostgreSQL has no statement across databases: each table goes
    through COPY, out of one and into the other.
    """
    prefix = '%08x' % number
    for table, uuid_column in COPIED:
        columns, select = copy_columns('postgresql', table, uuid_column,
                                       prefix)
        _copy_pg(src_url, 'SELECT %s FROM %s' % (select, table.name),
                 dst_url, table.name, columns)
    _copy_pg(dst_url, 'SELECT uuid, %d, project_id, 0 FROM instances'
             % cell_id, api_url, 'instance_mappings',
             'instance_uuid, cell_id, project_id, deleted')


def seed_cells(cloud, per_cell):
    """Seed the first cell, copy it into the others; seconds taken."""
    started = time.perf_counter()
    cloud.seed(per_cell)
    cell_ids = _cell_ids(cloud)
    server = harness.SERVERS[cloud.backend]
    for number, url in enumerate(cloud.cell_urls[1:], start=2):
        if cloud.backend == 'mysql':
            copy_cell_mysql(server, _db(cloud.cell_url), _db(url),
                            _db(cloud.api_url), number, cell_ids[number - 1])
        else:
            copy_cell_postgresql(cloud.cell_url, url, cloud.api_url,
                                 number, cell_ids[number - 1])
        harness.analyze(url)
        log('  copied into cell%02d' % number)
    return time.perf_counter() - started


def _cell_ids(cloud):
    """The API database ids of the cells, in cloud.cells' order."""
    engine = sa.create_engine(cloud.api_url)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(
            seeding.CELLS.c.uuid, seeding.CELLS.c.id)).all())
    engine.dispose()
    return [ids[uuid] for _, uuid in cloud.cells]


def max_sysmeta_ids(cloud):
    """The highest system metadata id of each cell."""
    return [_scalar(url, 'SELECT max(id) FROM instance_system_metadata')
            for url in cloud.cell_urls]


def delete_sysmeta_after(cloud, max_ids):
    """Delete every system metadata row above ``max_ids`` (per cell)."""
    for url, top in zip(cloud.cell_urls, max_ids):
        probes.execute(url, 'DELETE FROM instance_system_metadata '
                       'WHERE id > %d' % top)
        harness.analyze(url)


def set_value(cloud, old, new):
    """Move every hw_machine_type ``old`` back to ``new``, every cell."""
    for url in cloud.cell_urls:
        probes.execute(url, "UPDATE instance_system_metadata SET value "
                       "= %(new)s WHERE {key} = 'hw_machine_type' AND "
                       "value = %(old)s", {'old': old, 'new': new})
        harness.analyze(url)


def _db(url):
    return sa.engine.make_url(url).database


def _scalar(url, sql):
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql)).scalar()
    engine.dispose()
    return value


# -- the measurements ---------------------------------------------------------

def lower_bound(cloud, kind, *params):
    """Run probes.py ``cells kind`` over every cell; its figures."""
    out = os.path.join(cloud.workdir, 'lower-%s.txt' % kind)
    measured = harness.run_child(harness.probe('cells', kind, out,
                                               *cloud.cell_urls, *params))
    counted = harness.probe_result(measured)
    measured.update(counted)
    return measured


def command(cloud, script, *argv, expect=(0,)):
    measured = harness.run_child(cloud.nova(script, *argv), expect=expect)
    measured.pop('stdout')
    return measured


def measure(cloud):
    """Every cross-cell command beside its lower bound: table rows."""
    rows = []
    status = command(cloud, 'nova-status', 'upgrade', 'check', expect=(1,))
    rows.append(harness.pair('nova-status upgrade check', status,
                             lower_bound(cloud, 'status'), rows=0))
    listed = os.path.join(cloud.workdir, 'unset.txt')
    op = harness.run_child(cloud.nova('nova-manage', 'libvirt',
                                      'list_unset_machine_type'), out=listed,
                           expect=(3,))
    lower = lower_bound(cloud, 'list')
    if harness.count_lines(listed) != lower['rows']:
        raise SystemExit('list_unset_machine_type listed %d instances, the '
                         'anti-join %d' % (harness.count_lines(listed),
                                           lower['rows']))
    rows.append(harness.pair('list_unset_machine_type', op, lower,
                             rows=lower['rows']))
    rows.append(harness.pair(
        'machine_type_summary',
        command(cloud, 'nova-manage', 'libvirt', 'machine_type_summary'),
        lower_bound(cloud, 'summary'), rows=0))
    rows.append(harness.pair(
        'bulk_update_machine_type --dry-run',
        command(cloud, 'nova-manage', 'libvirt', 'bulk_update_machine_type',
                '--from', BULK_OLD, '--to', BULK_NEW, '--dry-run',
                expect=(3,)),
        lower_bound(cloud, 'bulk_dry_run', BULK_OLD), rows=0))
    rows.append(measure_bulk_update(cloud))
    rows.append(measure_migration(cloud))
    return rows


def median_rows(rounds):
    """One table of rows from ``rounds`` of measure(): median walls.

    Each row's op and lower_bound keep their samples in ``walls``; the
    peak RSS and load are the highest seen; the ratio is of the medians.
    """
    rows = []
    for samples in zip(*rounds):
        row = dict(samples[-1])
        for side in ('op', 'lower_bound'):
            measured = dict(row[side])
            measured['walls'] = [s[side]['wall'] for s in samples]
            measured['wall'] = statistics.median(measured['walls'])
            for peak in ('rss_mib', 'load'):
                measured[peak] = max(s[side][peak] for s in samples)
            row[side] = measured
        rows.append(harness.pair(row.pop('operation'), row.pop('op'),
                                 row.pop('lower_bound'),
                                 **{k: v for k, v in row.items()
                                    if k != 'ratio'}))
    return rows


def measure_bulk_update(cloud):
    """The real bulk update vs GROUP BY + UPDATE; both undone after."""
    lower = lower_bound(cloud, 'bulk', BULK_OLD, BULK_NEW)
    set_value(cloud, BULK_NEW, BULK_OLD)
    op = harness.run_child(cloud.nova(
        'nova-manage', 'libvirt', 'bulk_update_machine_type', '--from',
        BULK_OLD, '--to', BULK_NEW, '--format', 'json'), expect=(3,))
    updated = json.loads(op.pop('stdout'))['updated']
    set_value(cloud, BULK_NEW, BULK_OLD)
    if updated != lower['rows']:
        raise SystemExit('bulk_update_machine_type updated %d instances, '
                         'the UPDATE %d' % (updated, lower['rows']))
    return harness.pair('bulk_update_machine_type', op, lower, rows=updated)


def measure_migration(cloud):
    """online_data_migrations vs INSERT ... SELECT; both undone after."""
    before = max_sysmeta_ids(cloud)
    lower = lower_bound(cloud, 'insert_select')
    delete_sysmeta_after(cloud, before)
    op = command(cloud, 'nova-manage', 'db', 'online_data_migrations')
    recorded = [_scalar(url, 'SELECT count(*) FROM instance_system_metadata '
                        'WHERE id > %d' % top)
                for url, top in zip(cloud.cell_urls, before)]
    delete_sysmeta_after(cloud, before)
    if recorded != lower['per_cell']:
        raise SystemExit('online_data_migrations recorded %s, the INSERT '
                         '... SELECT %s' % (recorded, lower['per_cell']))
    return harness.pair('db online_data_migrations', op, lower,
                        rows=sum(recorded))


# -- one cell stopped, one slow -----------------------------------------------

def free_port():
    """A port of 127.0.0.1 that nothing listens on (just released)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Failures:
    """One cell stopped and one slow, while the ``with`` block runs.

    The stopped cell's mapping points at a port nothing listens on (its
    real URL is put back on exit); the slow cell's ``instances`` table is
    locked by a session of this process until exit.
    """

    def __init__(self, cloud, stopped, slow):
        self.cloud = cloud
        self.stopped, self.slow = stopped, slow
        self.lock = None

    def _map(self, index, url):
        """Point cell ``index``'s mapping at ``url``."""
        engine = sa.create_engine(self.cloud.api_url)
        with engine.begin() as conn:
            # UPDATE cell_mappings SET database_connection = :url
            #  WHERE uuid = :uuid
            conn.execute(seeding.CELLS.update().where(
                seeding.CELLS.c.uuid == self.cloud.cells[index][1]).values(
                database_connection=url))
        engine.dispose()

    def __enter__(self):
        refused = sa.engine.make_url(self.cloud.cell_urls[self.stopped]).set(
            port=free_port()).render_as_string(hide_password=False)
        self._map(self.stopped, refused)
        self.lock, dialect = probes.connect(self.cloud.cell_urls[self.slow])
        # psycopg2 opens a transaction, which holds the lock until its end.
        self.lock.cursor().execute(
            'LOCK TABLES instances WRITE' if dialect == 'mysql' else
            'LOCK TABLE instances IN ACCESS EXCLUSIVE MODE')
        return self

    def __exit__(self, *exc):
        self.lock.rollback()
        self.lock.close()
        self._map(self.stopped, self.cloud.cell_urls[self.stopped])


def _by_cell(entries, figures):
    """{cell_uuid: figures(entry)} of a JSON document's cell entries."""
    return {entry['cell_uuid']: figures(entry) for entry in entries}


def status_cells(document):
    """{cell_uuid: every check's data of that cell} of nova-status."""
    cells = {}
    for check in document['checks']:
        for entry in check['data'].get('cells', []):
            cells.setdefault(entry['cell_uuid'], []).append(entry)
    return cells


def unset_cells(document):
    """{cell_uuid: instances listed} of list_unset_machine_type."""
    counts = {}
    for entry in document['instances']:
        counts[entry['cell_uuid']] = counts.get(entry['cell_uuid'], 0) + 1
    return counts


def summary_cells(document):
    return _by_cell(document['cells'], lambda e: e['counts'])


def bulk_cells(document):
    return _by_cell(document['cells'],
                    lambda e: (e['updated'], e['refused']))


# (name, argv after the script, documented exit code, {cell_uuid:
# figures} of its stdout).
FAILURE_COMMANDS = (
    ('nova-status upgrade check', ('nova-status', 'upgrade', 'check',
                                   '--json'), 2, status_cells),
    ('list_unset_machine_type', ('nova-manage', 'libvirt',
                                 'list_unset_machine_type', '--format',
                                 'json'), 1, unset_cells),
    ('machine_type_summary', ('nova-manage', 'libvirt',
                              'machine_type_summary', '--format', 'json'),
     1, summary_cells),
    ('bulk_update_machine_type --dry-run',
     ('nova-manage', 'libvirt', 'bulk_update_machine_type', '--from',
      BULK_OLD, '--to', BULK_NEW, '--dry-run', '--format', 'json'), 1,
     bulk_cells),
    ('bulk_update_machine_type',
     ('nova-manage', 'libvirt', 'bulk_update_machine_type', '--from',
      BULK_OLD, '--to', BULK_NEW, '--format', 'json'), 1, bulk_cells),
)


def references(cloud):
    """{command: {cell_uuid: figures}} of every cell, nothing failing.

    The real bulk update is expected to update what the dry run says.
    """
    refs = {}
    for name, argv, _, figures in FAILURE_COMMANDS:
        if name == 'bulk_update_machine_type':
            refs[name] = refs[name + ' --dry-run']
            continue
        done = harness.run_child(cloud.nova(*argv), expect=None)
        refs[name] = figures(json.loads(done['stdout']))
    return refs


def check_failure_run(name, measured, code, timeout, healthy, reference,
                      reported, failing):
    """One line of the failure table, from a finished run.

    ``healthy`` is the command's wall time without the failures.
    """
    others = {uuid: figures for uuid, figures in reference.items()
              if uuid not in failing}
    full = sum(reported.get(uuid) == figures
               for uuid, figures in others.items())
    output = measured.get('stdout', '') + measured['stderr']
    cost = measured['wall'] - healthy
    return {'command': name, 'wall': measured['wall'], 'healthy': healthy,
            'cost': cost, 'load': measured['load'], 'rc': measured['rc'],
            'expected_rc': code, 'timeout': timeout,
            'in_time': cost <= timeout + MARGIN,
            'cells_reported': full, 'other_cells': len(others),
            'named': all(uuid in output for uuid in failing),
            'errors': [line for line in measured['stderr'].splitlines()
                       if line.startswith('ERROR')][:4]}


def measure_failures(cloud, timeout, healthy, migrated):
    """Every command with one cell stopped and one slow: table rows.

    ``healthy`` maps a command to its wall time without the failures,
    ``migrated`` is what the online migration records in each cell.
    """
    refs = references(cloud)
    stopped, slow = len(cloud.cells) // 3, 2 * len(cloud.cells) // 3
    failing = {cloud.cells[stopped][1], cloud.cells[slow][1]}
    rows = []
    before = max_sysmeta_ids(cloud)
    with Failures(cloud, stopped, slow):
        for name, argv, code, figures in FAILURE_COMMANDS:
            done = harness.run_child(cloud.nova(*argv), expect=None,
                                     keep_stderr=True)
            reported = figures(json.loads(done['stdout']))
            rows.append(check_failure_run(name, done, code, timeout,
                                          healthy[name], refs[name],
                                          reported, failing))
            log('  %s: %.1f s, exit %d' % (name, done['wall'], done['rc']))
        done = harness.run_child(cloud.nova('nova-manage', 'db',
                                            'online_data_migrations'),
                                 expect=None, keep_stderr=True)
    # Read after the lock is gone; the failing cells must be untouched.
    recorded = [_scalar(url, 'SELECT count(*) FROM instance_system_metadata '
                        'WHERE id > %d' % top)
                for url, top in zip(cloud.cell_urls, before)]
    cells = [uuid for _, uuid in cloud.cells]
    rows.append(check_failure_run(
        'db online_data_migrations', done, 2, timeout,
        healthy['db online_data_migrations'], dict(zip(cells, migrated)),
        dict(zip(cells, recorded)), failing))
    delete_sysmeta_after(cloud, before)
    set_value(cloud, BULK_NEW, BULK_OLD)
    return rows, [cloud.cells[stopped], cloud.cells[slow]]


# -- running it ---------------------------------------------------------------

def bench(backend, args):
    """Everything on one backend; a dict of its figures."""
    workdir = tempfile.mkdtemp(prefix='cellsbench-%s-' % backend,
                               dir=args.workdir)
    log('== %s, %d cells of %d instances (work directory %s)' % (
        backend, args.cells, args.instances_per_cell, workdir))
    cloud = harness.Deployment(backend, workdir, 'cells_%d' % os.getpid(),
                               cells=args.cells,
                               cell_timeout=args.cell_timeout)
    try:
        cloud.create()
        result = {'backend': backend, 'cells': args.cells,
                  'instances_per_cell': args.instances_per_cell,
                  'cell_timeout': args.cell_timeout,
                  'seed_seconds': seed_cells(cloud, args.instances_per_cell)}
        log('  seeded in %.0f s' % result['seed_seconds'])
        result['rows'] = median_rows(
            [measure(cloud) for _ in range(args.repeat)])
        healthy = {row['operation']: row['op']['wall']
                   for row in result['rows']}
        migrated = next(row['lower_bound']['per_cell']
                        for row in result['rows']
                        if row['operation'] == 'db online_data_migrations')
        result['failures'], failing = measure_failures(
            cloud, args.cell_timeout, healthy, migrated)
        result['failing_cells'] = {'stopped': failing[0],
                                   'slow': failing[1]}
    finally:
        if args.keep:
            log('  kept: %s, %s' % (workdir, cloud.urls()))
        else:
            cloud.drop()
            subprocess.run(['rm', '-rf', workdir])
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', action='append',
                        choices=('mysql', 'postgresql'),
                        help='repeatable; default: both')
    parser.add_argument('--cells', type=int, default=20)
    parser.add_argument('--instances-per-cell', type=int, default=50000,
                        metavar='N')
    parser.add_argument('--repeat', type=int, default=3, metavar='N',
                        help='rounds of measurements; the table gives '
                        'medians (default: 3)')
    parser.add_argument('--cell-timeout', type=int, default=60,
                        metavar='SECONDS', help='[DEFAULT]cell_timeout of '
                        'the commands (their documented default: 60)')
    parser.add_argument('--json', default='cells-results.json',
                        help='where to write every figure')
    parser.add_argument('--workdir', help='parent of the work directories')
    parser.add_argument('--keep', action='store_true',
                        help='keep the databases and files afterwards')
    args = parser.parse_args(argv)
    args.backend = args.backend or ['mysql', 'postgresql']
    if args.cells < 3:
        parser.error('--cells must be at least 3 (one stopped, one slow)')
    if args.repeat < 1:
        parser.error('--repeat must be at least 1')
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config.parse_args([], configure_logging=False)
    return harness.record_results(
        'cells', (functools.partial(bench, backend, args)
                  for backend in args.backend),
        args.json, report.cells_table)


if __name__ == '__main__':
    sys.exit(main())
