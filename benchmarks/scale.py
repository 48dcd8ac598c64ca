"""Benchmark the machine type commands at cloud scale, beside lower bounds.

For each backend and number of instances N: build an API and a cell
database, seed N instances in the shape of a real cloud
(benchmarks/seed.py), then measure each operation and its lower bound
side by side, each in a process of its own (wall time, and peak RSS of
that process as GNU time reports it from wait4):

  list_unset_machine_type      vs  the anti-join, streamed to a file
  nova-status upgrade check    vs  the anti-join counted per host
  db online_data_migrations    vs  one INSERT ... SELECT (then undone)
  bulk_update_machine_type     vs  one UPDATE (then undone), over
                                   100,000 stopped instances
  init_host (2,000 domains)    vs  listing the domains and their XML,
                                   plus its database round trips
  get_machine_type             vs  the two lookups with the DB driver

    python benchmarks/scale.py --backend mysql --backend postgresql \\
        --instances 100000 --instances 1000000 --domains 2000

Prints a table per backend and N; writes every figure to --json.
"""

import argparse
import contextlib
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from xml.etree import ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sqlalchemy as sa  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    Deployment, analyze, count_lines, log, mysql_buffer_pool, pair, probe,
    probe_result, record_results, run_child, run_repeated)
from benchmarks import clients  # noqa: E402
from benchmarks import probes  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import seed as seeding  # noqa: E402
from nova import config  # noqa: E402

BACKENDS = ('sqlite', 'mysql', 'postgresql')
# The bulk update moves --bulk-instances stopped instances from OLD to
# NEW (types the main seed never records, so only they match).
BULK_OLD, BULK_NEW = 'pc-q35-6.2', 'pc-q35-7.1'
INIT_HOST = 'bench-host'
# A second, smaller host: init_host's round trips must not grow with it.
INIT_HOST_SMALL = 'bench-host-small'
# Instances of the init_host hosts: every 10th already recorded, every
# 20th without a domain (its machine type is computed).
DOMAIN_MACHINE = 'pc-i440fx-7.2'


def count_recorded(dep):
    """How many live hw_machine_type rows the cell holds."""
    engine = sa.create_engine(dep.cell_url)
    # SELECT count(*) FROM instance_system_metadata
    #  WHERE key = 'hw_machine_type' AND deleted = 0
    sysmeta = seeding.SYSMETA
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).where(
            sysmeta.c.key == probes.KEY,
            sysmeta.c.deleted == 0)).scalar()
    engine.dispose()
    return count


def host_conf(dep, host, node_file):
    """A configuration file for nova-compute on ``host``."""
    path = os.path.join(dep.workdir, '%s.conf' % host)
    config.write_config_file(path, {
        'DEFAULT': {'host': host},
        'libvirt': {'connection_uri': 'test://%s' % node_file}})
    return path


# -- the measurements ---------------------------------------------------------

def measure_listing(dep, repeat):
    """list_unset_machine_type and nova-status vs the anti-join."""
    listed = os.path.join(dep.workdir, 'unset.txt')
    lower_listed = os.path.join(dep.workdir, 'unset-lower.txt')
    op = run_repeated(dep.nova('nova-manage', 'libvirt',
                               'list_unset_machine_type', '--cell-uuid',
                               dep.cell_uuid), repeat, listed, expect=(0, 3))
    lower = run_repeated(probe('list', dep.cell_url, lower_listed),
                         repeat)
    rows = count_lines(listed)
    if rows != count_lines(lower_listed):
        raise SystemExit('list_unset_machine_type listed %d instances, the '
                         'anti-join %d' % (rows, count_lines(lower_listed)))
    status = run_repeated(dep.nova('nova-status', 'upgrade', 'check'),
                          repeat, expect=(1,))
    status.pop('stdout', None)
    by_host = os.path.join(dep.workdir, 'unset-by-host.txt')
    status_lower = run_repeated(probe('count_by_host', dep.cell_url,
                                      by_host), repeat)
    lower.pop('stdout')
    status_lower.pop('stdout')
    return [pair('list_unset_machine_type', op, lower, rows=rows),
            pair('nova-status upgrade check', status, status_lower,
                 rows=rows)]


def measure_migration(dep, count, repeat):
    """online_data_migrations vs one INSERT ... SELECT, from one state;
    then the --max-count loop vs that uninterrupted run.

    The INSERT ... SELECT runs first, its rows (marked by their
    created_at) are deleted again, and the statistics refreshed; then
    the command records the same rows while a writer saves the
    instances it records (``count`` seeded), which are deleted in turn
    (the rows created after the seed), and the loop records them once
    more.
    """
    before = count_recorded(dep)
    lower = run_child(probe('insert_select', dep.cell_url))
    rows = probe_result(lower)['rows']
    undo_records(dep, 'undo_insert_select', before)
    op, writer = run_with_writer(dep, dep.nova(
        'nova-manage', 'db', 'online_data_migrations'), touch_instance,
        migrated_uuids(count))
    op.pop('stdout')
    check_recorded(dep, before, rows, 'online_data_migrations')
    undo_records(dep, 'undo_migration', before)
    loop = run_migration_loop(dep, LOOP_MAX_COUNT)
    check_recorded(dep, before, rows, 'the --max-count loop')
    analyze(dep.cell_url)
    startup = run_repeated(dep.nova('nova-manage', '--help'),
                           max(repeat, 5))
    floor = run_repeated(probe('floor_start', dep.conf), max(repeat, 5))
    for measured in (startup, floor):
        measured.pop('stdout')
    return [pair('db online_data_migrations', op, lower, rows=rows,
                 **writer),
            loop_pair(loop, op, startup, floor, rows)]


def migrated_uuids(count):
    """The uuids of the ``count`` seeded instances the online migration
    records: live, host-less (shelved offloaded) and unrecorded."""
    return [seeding.str_uuid(i) for i in range(count)
            if seeding.instance_shape(i)[1:] == (None, None, False)]


# --max-count of the loop operators run (Nova's upgrade notes suggest
# batches of this size).
LOOP_MAX_COUNT = 1000
# Seconds a --max-count call may cost beyond the floor of a fresh process
# (probes.py floor_start): the loop's bound.
LOOP_CALL_ALLOWANCE = 0.15


def undo_records(dep, undo, before):
    """Delete the records probe ``undo`` names; refresh the statistics."""
    run_child(probe(undo, dep.cell_url))
    analyze(dep.cell_url)
    if count_recorded(dep) != before:
        raise SystemExit('%s left rows behind' % undo)


def check_recorded(dep, before, rows, what):
    """SystemExit unless ``what`` recorded the ``rows`` expected."""
    done = count_recorded(dep) - before
    if done != rows:
        raise SystemExit('%s recorded %d rows, the INSERT ... SELECT %d'
                         % (what, done, rows))


def run_migration_loop(dep, max_count):
    """online_data_migrations --max-count N until it exits 0.

    Returns run_child's figures for the whole loop: wall (the sum of
    the calls'), rss_mib (the highest), load (when it started), calls
    and call_walls (each call's, in order: where a loop's time goes).
    """
    calls = []
    while not calls or calls[-1]['rc'] == 1:
        call = run_child(dep.nova('nova-manage', 'db',
                                  'online_data_migrations', '--max-count',
                                  str(max_count)), expect=(0, 1))
        call.pop('stdout')
        calls.append(call)
        log('  --max-count call %d: %.2f s, exit %d'
            % (len(calls), call['wall'], call['rc']))
    return {'wall': sum(c['wall'] for c in calls),
            'rss_mib': max(c['rss_mib'] for c in calls),
            'load': calls[0]['load'], 'rc': 0, 'calls': len(calls),
            'call_walls': [c['wall'] for c in calls]}


def loop_pair(loop, op, startup, floor, rows):
    """The loop beside one uninterrupted run, with its start-up share.

    ``startup`` is the median ``nova-manage --help``: a process that
    imports what the command does and works on nothing. The work ratio
    sets the loop less a start-up per call against the run less one.
    ``floor`` is the median floor_start probe, what any Python call over
    the cells pays before its work; the floor ratio is the best a loop
    of as many calls could do: one run plus a floor per extra call.
    """
    startup_total = loop['calls'] * startup['wall']
    work = loop['wall'] - startup_total
    floor_loop = op['wall'] + (loop['calls'] - 1) * floor['wall']
    # What a loop may cost at most: the run, and per further call the
    # floor of a fresh process plus LOOP_CALL_ALLOWANCE.
    bound = op['wall'] + (loop['calls'] - 1) * (floor['wall']
                                                + LOOP_CALL_ALLOWANCE)
    return pair('online_data_migrations loop', loop, op, rows=rows,
                loop={'max_count': LOOP_MAX_COUNT, 'calls': loop['calls'],
                      'call_walls': loop['call_walls'],
                      'startup_s': startup['wall'],
                      'startup_total_s': startup_total, 'work_s': work,
                      'work_ratio': work / (op['wall'] - startup['wall']),
                      'floor_start_s': floor['wall'],
                      'floor_ratio': floor_loop / op['wall'],
                      'bound_s': bound,
                      'within_bound': loop['wall'] <= bound})


def bulk_shape(i):
    """Shape of the stopped instances the bulk update moves."""
    return 'stopped', 'compute%04d' % (i % seeding.HOSTS), BULK_OLD, False


def touch_record(cursor, key, rng, uuids, n):
    """The bulk update's rows: a random instance's hw_machine_type record
    stamped, as a service saving it would."""
    cursor.execute('UPDATE instance_system_metadata SET updated_at = '
                   "updated_at WHERE instance_uuid = %%s AND %s = "
                   "'hw_machine_type' AND deleted = 0" % key,
                   (rng.choice(uuids),))


def touch_instance(cursor, key, rng, uuids, n):
    """The online migration's rows: a random instance saved (a user's
    unshelve, a task state change)."""
    cursor.execute('UPDATE instances SET updated_at = updated_at '
                   'WHERE uuid = %s', (rng.choice(uuids),))


def run_with_writer(dep, argv, request, uuids):
    """run_child(argv) while one client runs ``request`` every 50 ms on
    ``uuids``: (run_child's dict, the writer's figures for the table).

    SQLite, the embedded single-writer database, locks the whole file:
    other services' writes during a command are a server's matter, so
    there the command runs alone.
    """
    if dep.backend == 'sqlite':
        return run_child(argv), {}
    window = {}

    def command():
        window['start'] = time.time()
        try:
            return run_child(argv)
        finally:
            window['end'] = time.time()
    op, [record] = clients.run_beside(
        [('writer', dep.cell_url, request)], uuids, command)
    seen = clients.summarize(record, window['start'], window['end'])
    return op, {'writer_requests': seen['requests'],
                'writer_worst_ms': round(seen['worst_ms'], 1),
                'writer_p99_ms': round(seen['p99_ms'], 1),
                'writer_failures': seen['first_errors'],
                'writer_failed': seen['failures']}


def measure_bulk_update(dep, start, count):
    """bulk_update_machine_type vs one UPDATE over ``count`` instances.

    The UPDATE runs first and is reverted (not timed), then the command
    makes the same change while a writer saves the same rows; its
    worst wait and failures are reported with the command. Returns (rows
    of the table, seconds seeding).
    """
    seeded = dep.seed(count, start=start, shape=bulk_shape)
    lower = run_child(probe('update', dep.cell_url, BULK_OLD, BULK_NEW))
    rows = probe_result(lower)['rows']
    run_child(probe('update', dep.cell_url, BULK_NEW, BULK_OLD))
    analyze(dep.cell_url)
    op, writer = run_with_writer(dep, dep.nova(
        'nova-manage', 'libvirt', 'bulk_update_machine_type', '--from',
        BULK_OLD, '--to', BULK_NEW, '--cell-uuid', dep.cell_uuid),
        touch_record, [seeding.str_uuid(i)
                       for i in range(start, start + count)])
    output = op.pop('stdout')
    updated = re.search(r'updated\s*\|\s*(\d+)', output)
    if not updated or int(updated.group(1)) != rows:
        raise SystemExit('bulk_update_machine_type did not update the %d '
                         'rows the UPDATE did:\n%s' % (rows, output))
    return [pair('bulk_update_machine_type', op, lower, rows=rows,
                 **writer)], seeded


def host_shape(host):
    """Shape of the instances of an init_host host: active, mostly unset."""
    def shape(i):
        return 'active', host, DOMAIN_MACHINE if i % 10 == 0 else None, False
    return shape


def write_node_file(path, uuids):
    """A libvirt test driver node file defining one domain per uuid."""
    node = ElementTree.Element('node')
    for uuid in uuids:
        domain = ElementTree.SubElement(node, 'domain', type='test')
        ElementTree.SubElement(domain, 'name').text = 'instance-%s' % uuid
        ElementTree.SubElement(domain, 'uuid').text = uuid
        ElementTree.SubElement(domain, 'memory', unit='MiB').text = '64'
        ElementTree.SubElement(domain, 'vcpu').text = '1'
        os_el = ElementTree.SubElement(domain, 'os')
        ElementTree.SubElement(os_el, 'type', arch='i686',
                               machine=DOMAIN_MACHINE).text = 'hvm'
    ElementTree.ElementTree(node).write(path)


def prepare_host(dep, host, domains, start):
    """Seed ``domains`` instances on ``host`` and its node file.

    Every 20th instance has no domain. Returns (host conf path, node uri).
    """
    dep.seed(domains, start=start, shape=host_shape(host))
    uuids = [seeding.str_uuid(i) for i in range(start, start + domains)
             if i % 20 != 0]
    node_file = os.path.join(dep.workdir, 'node-%s.xml' % host)
    write_node_file(node_file, uuids)
    return host_conf(dep, host, node_file), 'test://%s' % node_file


def measure_init_host(dep, domains, start):
    """init_host on a host of ``domains`` domains vs listing their XML.

    Round trips are counted in the init_host process; a host a tenth the
    size shows whether they grow with the host.
    """
    conf, uri = prepare_host(dep, INIT_HOST, domains, start)
    small = max(domains // 10, 1)
    small_conf, _ = prepare_host(dep, INIT_HOST_SMALL, small, start + domains)
    lower = run_child(probe('domains', uri))
    listed = probe_result(lower)['domains']
    op = run_child(probe('init_host', INIT_HOST, dep.conf, conf))
    trips = probe_result(op)
    small_op = run_child(probe('init_host', INIT_HOST_SMALL, dep.conf,
                               small_conf))
    small_trips = probe_result(small_op)
    return [pair('init_host (%d domains)' % listed, op, lower, rows=domains,
                 round_trips=trips, round_trips_small_host={
                     'domains': small, **small_trips})]


def measure_get(dep, repeat):
    """get_machine_type's latency vs the two lookups through the driver."""
    uuid = seeding.str_uuid(0)
    op = run_repeated(dep.nova('nova-manage', 'libvirt', 'get_machine_type',
                               uuid), repeat)
    machine_type = op.pop('stdout').strip()
    lower = run_repeated(probe('get', dep.api_url, uuid), repeat)
    if probe_result(lower)['machine_type'] != machine_type:
        raise SystemExit('get_machine_type printed %r' % machine_type)
    return [pair('get_machine_type', op, lower, rows=1)]


def bench(backend, count, args):
    """Every measurement on one backend at ``count`` instances.

    Returns a dict of backend, instances, seed times and rows.
    """
    workdir = tempfile.mkdtemp(prefix='bench-%s-%d-' % (backend, count),
                               dir=args.workdir)
    log('== %s, %d instances (work directory %s)'
        % (backend, count, workdir))
    # Unique per run: several runs may share a database server.
    dep = Deployment(backend, workdir, tag='%d_%d' % (count, os.getpid()))
    pool = mysql_buffer_pool(args.mysql_buffer_pool) \
        if backend == 'mysql' else contextlib.nullcontext()
    try:
        with pool as pool_mib:
            result = measure_all(dep, count, args)
        if pool_mib:
            result['buffer_pool_mib'] = pool_mib
    finally:
        if not args.keep:
            dep.drop()
            subprocess.run(['rm', '-rf', workdir])
        else:
            log('  kept: %s, %s' % (workdir, dep.urls()))
    return result


def measure_all(dep, count, args):
    """Create and seed the deployment, then take every measurement."""
    dep.create()
    result = {'backend': dep.backend, 'instances': count, 'rows': [],
              'seed_seconds': dep.seed(count)}
    log('  seeded in %.1f s' % result['seed_seconds'])
    result['rows'] += measure_listing(dep, args.repeat)
    result['rows'] += measure_migration(dep, count, args.repeat)
    rows, result['bulk_seed_seconds'] = measure_bulk_update(
        dep, count, args.bulk_instances)
    result['rows'] += rows
    result['rows'] += measure_init_host(dep, args.domains,
                                        count + args.bulk_instances)
    result['rows'] += measure_get(dep, max(args.repeat, 5))
    return result


# -- command line ------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', action='append', choices=BACKENDS,
                        help='sqlite, mysql or postgresql (repeatable; '
                             'default: all three)')
    parser.add_argument('--instances', action='append', type=int,
                        metavar='N', help='instances to seed (repeatable; '
                        'default: 100000)')
    parser.add_argument('--domains', type=int, default=2000,
                        help='libvirt domains on the init_host host')
    parser.add_argument('--bulk-instances', type=int, default=100000,
                        metavar='N', help='stopped instances the bulk '
                        'update changes (seeded besides --instances)')
    parser.add_argument('--repeat', type=int, default=1,
                        help='runs of each read-only measurement (median)')
    parser.add_argument('--json', default='bench-scale.json',
                        help='where to write every figure')
    parser.add_argument('--workdir', help='parent of the work directories')
    parser.add_argument('--mysql-buffer-pool', type=int, metavar='MIB',
                        help="MariaDB's InnoDB buffer pool for the run, "
                        'put back afterwards (default: as the server has '
                        'it)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the databases and files afterwards')
    args = parser.parse_args(argv)
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    args.backend = args.backend or list(BACKENDS)
    args.instances = args.instances or [100000]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return record_results(
        'runs', (functools.partial(bench, backend, count, args)
                 for backend in args.backend for count in args.instances),
        args.json, report.run_table)


if __name__ == '__main__':
    sys.exit(main())
