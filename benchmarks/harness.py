"""What every benchmark of benchmarks/ shares.

Server URLs, running and timing a child command (run_child: wall time,
peak RSS, load), medians of rounds (run_repeated), the lower-bound
probes of benchmarks/probes.py, databases made and dropped on the test
servers, and one line of a results table (pair). run.py, upgrade.py,
cells.py and commands.py import it; it imports none of them.
"""

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


# -- one deployment: databases, configuration, cell ---------------------------

def create_database(server_url, name):
    """Create database ``name`` afresh on the server of ``server_url``.

    A database of that name left by an earlier run is dropped first.
    Returns the new database's URL.
    """
    admin = sa.create_engine(server_url, isolation_level='AUTOCOMMIT')
    with admin.connect() as conn:
        _terminate(conn, name)
        conn.execute(sa.text('DROP DATABASE IF EXISTS %s' % name))
        conn.execute(sa.text('CREATE DATABASE %s' % name))
    admin.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(
        hide_password=False)


def drop_databases(server_url, urls):
    """Drop the databases of ``urls`` from the server of ``server_url``."""
    admin = sa.create_engine(server_url, isolation_level='AUTOCOMMIT')
    with admin.connect() as conn:
        for url in urls:
            name = sa.engine.make_url(url).database
            _terminate(conn, name)
            conn.execute(sa.text('DROP DATABASE IF EXISTS %s' % name))
    admin.dispose()


def _terminate(conn, db_name):
    """End PostgreSQL's other sessions on ``db_name``: they block a DROP."""
    if conn.dialect.name == 'postgresql':
        conn.execute(sa.text(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
            'WHERE datname = :name AND pid <> pg_backend_pid()'),
            {'name': db_name})


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
