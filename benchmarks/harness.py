"""What every benchmark of benchmarks/ shares.

Server URLs, running and timing a child command (run_child: wall time,
peak RSS, load), medians of rounds (run_repeated), the lower-bound
probes of benchmarks/probes.py, databases made and dropped on the test
servers, a deployment (an API database and N cells, created with the
real commands and seeded), and one line of a results table (pair).
Every scenario module imports it; it imports none of them.
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sqlalchemy as sa  # noqa: E402

from benchmarks import seed as seeding  # noqa: E402
from nova import config  # noqa: E402
from nova.db import migration  # noqa: E402
from nova.db import provision  # noqa: E402
from nova.db import table_copy  # noqa: E402

BIN = os.path.dirname(os.path.abspath(sys.executable))
CITEST = 'openstack_citest'
SERVERS = {
    'mysql': 'mysql+pymysql://%s:%s@127.0.0.1/%s' % (CITEST, CITEST, CITEST),
    'postgresql': 'postgresql+psycopg2://%s:%s@127.0.0.1/%s'
                  % (CITEST, CITEST, CITEST),
    # Node 1 of the cluster of tools/galera.sh (nodes 2, 3: ports 4307,
    # 4308); only the upgrade measurement uses it.
    'galera': 'mysql+pymysql://%s:%s@127.0.0.1:4306/' % (CITEST, CITEST),
}


def log(message):
    print(message, flush=True)


# -- running and measuring a child process -----------------------------------

# A child's ru_maxrss starts from the RSS of the process that forked it
# (Linux carries the old address space's high-water mark across exec), and
# this process holds seeding batches. So children are started through
# GNU time, a small C program, which reports its own child's peak RSS.
TIME = '/usr/bin/time'
# Children write and read bytecode, as an installed nova does (tox sets
# PYTHONDONTWRITEBYTECODE, and an editable install compiles nothing);
# kept outside the source tree.
CHILD_ENV = dict(os.environ, PYTHONPYCACHEPREFIX=os.path.join(
    tempfile.gettempdir(), 'nova-bench-pycache'))
CHILD_ENV.pop('PYTHONDONTWRITEBYTECODE', None)


def run_child(argv, out=None, expect=(0,), env=CHILD_ENV,
              keep_stderr=False):
    """Run ``argv`` to completion; measure its wall time and peak RSS.

    stdout goes to ``out`` (a path), else it is captured. Returns a dict
    of wall (s), rss_mib, rc, load (the 1-minute load average when it
    started), when captured stdout and, with ``keep_stderr``, stderr.
    ``expect`` None accepts any exit code.
    """
    capture = out is None
    if capture:
        handle, out = tempfile.mkstemp(prefix='bench-out-')
        os.close(handle)
    handle, rss_file = tempfile.mkstemp(prefix='bench-rss-')
    os.close(handle)
    load = os.getloadavg()[0]
    with open(out, 'w') as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.run([TIME, '-f', '%M', '-o', rss_file] + argv,
                              stdout=stdout, stderr=stderr, env=env,
                              cwd=ROOT)
        wall = time.perf_counter() - started
        stderr.seek(0)
        errors = stderr.read().decode(errors='replace')
    with open(rss_file) as f:
        # GNU time writes "Command exited with non-zero status N" first.
        rss_kib = int(f.read().split()[-1])
    os.unlink(rss_file)
    result = {'wall': wall, 'rss_mib': rss_kib / 1024.0,
              'rc': proc.returncode, 'load': load}
    if capture:
        with open(out) as f:
            result['stdout'] = f.read()
        os.unlink(out)
    if keep_stderr:
        result['stderr'] = errors
    if expect is not None and proc.returncode not in expect:
        raise SystemExit('%s exited %d (expected %s):\n%s' % (
            ' '.join(argv), proc.returncode, expect, errors[-3000:]))
    return result


def run_repeated(argv, repeat, out=None, expect=(0,)):
    """run_child ``repeat`` times; the median wall, the highest RSS.

    Only for commands that change nothing. Returns run_child's dict with
    the samples' walls in ``walls``.
    """
    runs = [run_child(argv, out, expect) for _ in range(repeat)]
    result = dict(runs[-1])
    result['walls'] = [r['wall'] for r in runs]
    result['wall'] = statistics.median(result['walls'])
    result['rss_mib'] = max(r['rss_mib'] for r in runs)
    result['load'] = max(r['load'] for r in runs)
    return result


def probe(*args):
    """argv of a lower-bound probe (benchmarks/probes.py)."""
    return [sys.executable, '-m', 'benchmarks.probes'] + list(args)


def probe_result(measured):
    """The JSON a probe printed on its last line."""
    return json.loads(measured.pop('stdout').strip().splitlines()[-1])


# -- databases and deployments ------------------------------------------------

def analyze(cell_url):
    """Refresh the planner's statistics (and reclaim dead rows on PG).

    Done after every bulk change, as autovacuum would be given time to
    do on a real cloud, so that both sides of a comparison start from
    the same planner state.
    """
    statements = {
        'sqlite': ['ANALYZE'],
        'mysql': ['ANALYZE TABLE instances, instance_system_metadata'],
        'postgresql': ['VACUUM ANALYZE instances',
                       'VACUUM ANALYZE instance_system_metadata'],
    }[sa.engine.make_url(cell_url).get_backend_name()]
    engine = sa.create_engine(cell_url, isolation_level='AUTOCOMMIT')
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def table_mib(cell_url, table):
    """MiB of ``table``'s rows and indexes on disk, as the server counts
    them (InnoDB: its statistics, fresh after ``analyze``; the figure
    db sync's disk check starts from)."""
    engine = sa.create_engine(cell_url)
    with engine.connect() as conn:
        if conn.dialect.name == 'postgresql':
            size = conn.execute(sa.text('SELECT pg_total_relation_size(:t)'),
                                {'t': table}).scalar()
        else:
            size = table_copy.table_bytes(conn, table)
    engine.dispose()
    return size / 2 ** 20


@contextlib.contextmanager
def mysql_buffer_pool(mib):
    """The MariaDB server's InnoDB buffer pool resized to ``mib`` MiB
    for the block, then put back as it was (``mib`` None: untouched).

    The server default, 128 MiB, holds a twentieth of a 1M-instance cell:
    every statement that reads the cell reads it from disk (InnoDB reads
    with O_DIRECT, past the OS page cache PostgreSQL reads through). A
    server given such a cell is sized to hold it; both figures are worth
    having. The resize is online; it waits until the server reports it
    done. Yields the size in MiB the block ran with.
    """
    engine = sa.create_engine(SERVERS['mysql'], isolation_level='AUTOCOMMIT')
    size = 'SELECT @@innodb_buffer_pool_size DIV 1048576'
    with engine.connect() as conn:
        before = conn.execute(sa.text(size)).scalar()
    try:
        if mib is not None:
            _resize_buffer_pool(engine, mib)
        yield mib or before
    finally:
        if mib is not None:
            _resize_buffer_pool(engine, before)
        engine.dispose()


def _resize_buffer_pool(engine, mib):
    with engine.connect() as conn:
        conn.execute(sa.text('SET GLOBAL innodb_buffer_pool_size = :size'),
                     {'size': mib * 1048576})
        for _ in range(600):
            status = conn.execute(sa.text(
                "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_resize_status'")
            ).first()
            if not status or not status[1] or \
                    status[1].startswith('Completed'):
                return
            time.sleep(0.1)
    raise SystemExit('the buffer pool was not resized to %d MiB in a minute'
                     % mib)


class Deployment:
    """An API database and ``cells`` cell databases on one backend, with
    their nova.conf: what nova's commands run against.

    ``create`` syncs the schemas and maps the cells; ``seed`` fills the
    first cell (a scenario with more cells copies it into the others).
    """

    def __init__(self, backend, workdir, tag, cells=1, cell_timeout=None):
        self.backend = backend
        self.workdir = workdir
        self.databases = provision.DeploymentDatabases(
            SERVERS.get(backend), 'bench_%s' % tag,
            ['api'] + ['cell%02d' % number for number in range(1, cells + 1)],
            workdir)
        self.api_url, *self.cell_urls = self.databases.urls.values()
        self.cells = []   # [(name, uuid)], in cell_urls' order
        self.conf = os.path.join(workdir, 'nova.conf')
        default = {'state_path': workdir}
        if cell_timeout is not None:
            default['cell_timeout'] = cell_timeout
        config.write_config_file(self.conf, {
            'DEFAULT': default,
            'database': {'connection': self.cell_url},
            'api_database': {'connection': self.api_url},
            'libvirt': {'virt_type': 'test',
                        'connection_uri': 'test:///default'},
            'compute': {'libvirt_connect_retries': 0},
        })

    @property
    def cell_url(self):
        """The first cell's URL: [database] of nova.conf."""
        return self.cell_urls[0]

    @property
    def cell_uuid(self):
        return self.cells[0][1]

    def urls(self):
        return [self.api_url] + self.cell_urls

    def drop(self):
        """Drop the server databases (SQLite files go with the workdir)."""
        self.databases.drop()

    def nova(self, command, *argv):
        """argv of a console script run with this deployment's nova.conf."""
        return [os.path.join(BIN, command), '--config-file', self.conf] + \
            list(argv)

    def create(self):
        """Sync every schema and map every cell.

        The API schema and the mappings with the real commands; the cell
        schemas with the code ``nova-manage db sync`` runs, given each
        cell's URL (the command syncs only the [database] of its file).
        Then import what the measured commands import, so that their
        bytecode is compiled before anything is timed.
        """
        run_child(self.nova('nova-manage', 'api_db', 'sync'))
        for number, url in enumerate(self.cell_urls, start=1):
            migration.db_sync(migration.MAIN, url=url)
            created = run_child(self.nova(
                'nova-manage', 'cell_v2', 'create_cell', '--name',
                'cell%02d' % number, '--database_connection', url))
            self.cells.append(
                ('cell%02d' % number,
                 created['stdout'].strip().splitlines()[-1]))
        run_child([sys.executable, '-c', 'import nova.cmd.manage, '
                   'nova.cmd.status, nova.compute.manager, benchmarks.probes, '
                   'libvirt, pymysql, psycopg2, sqlite3'])

    def seed(self, count, start=0, shape=seeding.instance_shape):
        """Seed ``count`` instances from id start+1 in the first cell,
        then refresh its statistics; returns the seconds taken."""
        started = time.perf_counter()
        seeding.seed(self.cell_url, self.api_url, count,
                     cell_uuid=self.cell_uuid, start=start, shape=shape,
                     log=lambda msg: log('  ' + msg))
        analyze(self.cell_url)
        return time.perf_counter() - started


def record_results(kind, measurements, path, table):
    """Run each of ``measurements`` (functions returning a result) in
    turn, print its ``table`` and rewrite ``path`` with every result so
    far, under ``kind`` (the key report.py reads), so that a run cut
    short keeps what it measured. Returns the exit code, 0."""
    results = {'machine': machine(), kind: []}
    for measure in measurements:
        result = measure()
        results[kind].append(result)
        log(table(result))
        with open(path, 'w') as f:
            json.dump(results, f, indent=1)
    log('\nfigures written to %s' % path)
    return 0


def pair(name, op, lower, **extra):
    """One line of the table: an operation beside its lower bound."""
    row = {'operation': name, 'op': op, 'lower_bound': lower,
           'ratio': op['wall'] / lower['wall'] if lower['wall'] else None}
    row.update(extra)
    return row


def count_lines(path):
    with open(path) as f:
        return sum(1 for _ in f)


def machine():
    """What the figures were measured on."""
    with open('/proc/meminfo') as f:
        mem_kib = int(f.readline().split()[1])
    return {'nproc': os.cpu_count(), 'mem_gib': round(mem_kib / 2 ** 20, 1),
            'python': sys.version.split()[0]}
