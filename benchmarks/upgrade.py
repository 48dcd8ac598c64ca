"""Measure ``nova-manage db sync`` to head on a big cell database in use.

What an operator meets when upgrading: the schema goes from
001_baseline to the newest revision while clients keep reading and
writing. For each --backend and --instances N:

1. a fresh cell database, brought to 001_baseline by the real command,
   ``nova-manage db sync --local_cell --version 001_baseline``;
2. N instances seeded through the database driver alone, no nova code
   (benchmarks/seed.py's BulkLoader: PostgreSQL COPY, MariaDB LOAD DATA
   LOCAL INFILE, CHUNK instances at a time), in the shape of
   benchmarks/seed.py, plus for 0.5% of the instances a second live row
   of one system metadata key, newer or older than the first, for
   revision 002 to resolve; then ANALYZE;
3. five client processes (CLIENTS), each with its own connection in
   autocommit, starting a request every 50 ms and recording every
   request's start, latency and error, never retrying;
4. ``nova-manage db sync --local_cell`` while they run, --settle
   seconds after they start and before they stop;
5. per client: requests, failures, worst and p99 latency, the worst of
   the requests that overlapped db sync; then the checks (verify): the
   revision reached, no live duplicate left, the newest row of each
   duplicated pair kept, the unique key and indexes of the head schema
   present, every row the inserting client wrote still there.

On Galera (tools/galera.sh) db sync, the seed and the checks go through
node 1, the writing clients through node 2, the reading ones through
node 3. With --nova-tree PATH nova-manage imports the nova package of
that source tree (PYTHONPATH), to measure another commit, for example
a worktree of an older one:

    python benchmarks/upgrade.py --backend mysql --backend postgresql \\
        --instances 100000 --instances 1000000 --json upgrade.json
    git worktree add /tmp/before HEAD~10
    python benchmarks/upgrade.py --backend mysql --instances 100000 \\
        --nova-tree /tmp/before --json upgrade-before.json
"""

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sqlalchemy as sa  # noqa: E402

from benchmarks import clients  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import seed as seeding  # noqa: E402
from nova import config  # noqa: E402
from nova.db import provision  # noqa: E402

BASELINE = '001_baseline'
# The node each role uses on Galera; elsewhere all share one server.
GALERA_PORTS = {'sync': 4306, 'writers': 4307, 'readers': 4308}
CHUNK = 10000
OUTPUT_LINES = 40

# created_at of every seeded row; a duplicate is NEWER (updated_at) or
# OLDER (created_at) than the row it duplicates.
STAMP = '2026-01-01 00:00:00'
NEWER = '2026-01-01 01:00:00'
OLDER = '2025-12-31 00:00:00'
# Instances i with i % DUP_EVERY == DUP_AT (0.5%, never a deleted one:
# those have i % 50 == 7) hold two live rows of DUP_KEY.
DUP_EVERY, DUP_AT = 200, 11
DUP_KEY = 'image_disk_format'
# Instances i with i % LOOKALIKE_EVERY == LOOKALIKE_AT (1%, never a
# deleted one) also hold a key that differs from DUP_KEY only in case or
# a trailing space: a key of its own, which must stay live.
LOOKALIKE_EVERY, LOOKALIKE_AT = 100, 37
LOOKALIKE = 'lookalike'
INSERTED_PREFIX = 'upgrade-client-'
# With explicit ids, and updated_at: the duplicates' timestamps matter.
SYSMETA_COLUMNS = ('id', 'instance_uuid', 'key', 'value', 'created_at',
                   'updated_at', 'deleted')
# What the head schema must have, by table.
HEAD_SCHEMA = {
    'instance_system_metadata': (
        'uniq_instance_system_metadata0instance_uuid0key0deleted',
        'instance_system_metadata_key_value_id_idx'),
    'instances': ('instances_host_deleted_id_idx',),
}

log = harness.log


# -- connections --------------------------------------------------------------

def node_url(backend, database, role):
    """URL of ``database`` on the server (Galera: node) of ``role``."""
    url = sa.engine.make_url(harness.SERVERS[backend]).set(database=database)
    if backend == 'galera':
        url = url.set(port=GALERA_PORTS[role])
    return url.render_as_string(hide_password=False)


# -- seeding, with the driver alone -------------------------------------------

class Population:
    """What the seed wrote that the clients and the checks rely on."""

    def __init__(self, instances):
        self.instances = instances
        self.next_sysmeta_id = 1
        # (instance uuid, id of the row that must stay live, other id)
        self.groups = []
        self.pinned = set()
        self.lookalikes = 0

    def take_id(self):
        """The id of the next instance_system_metadata row."""
        self.next_sysmeta_id += 1
        return self.next_sysmeta_id - 1

    def duplicate(self, i, uuid, original):
        """The row of a second live DUP_KEY row of instance ``i``.

        Every other duplicate is newer than the row it duplicates (and
        has the higher id), the others older: the newest row must win
        on its timestamps, whatever its id.
        """
        row_id = self.take_id()
        newer = (i // DUP_EVERY) % 2 == 0
        self.groups.append((uuid, row_id if newer else original,
                            original if newer else row_id))
        self.pinned.update((row_id, original))
        return (row_id, uuid, DUP_KEY, 'raw', STAMP if newer else OLDER,
                NEWER if newer else None, 0)

    def lookalike(self, i, uuid):
        """The row of a key like DUP_KEY but for case or a space."""
        self.lookalikes += 1
        key = DUP_KEY.upper() if (i // LOOKALIKE_EVERY) % 2 else \
            DUP_KEY + ' '
        row_id = self.take_id()
        # Left alone by the updating client, so that it is still there.
        self.pinned.add(row_id)
        return (row_id, uuid, key, LOOKALIKE, STAMP, None, 0)

    def live_uuid(self, rng):
        """A random seeded instance that is not deleted."""
        while True:
            i = rng.randrange(self.instances)
            if not seeding.instance_shape(i)[3]:
                return seeding.str_uuid(i)

    def free_sysmeta_id(self, rng):
        """A random seeded system metadata row outside the duplicates.

        Those keep the timestamps the seed gave them, so that which row
        is the newest stays known.
        """
        while True:
            row_id = rng.randrange(1, self.next_sysmeta_id)
            if row_id not in self.pinned:
                return row_id


def instance_rows(i, population, instances, sysmeta):
    """Append the i-th instance's row and its system metadata's."""
    vm_state, host, machine_type, deleted = seeding.instance_shape(i)
    uuid = seeding.str_uuid(i)
    deleted_id = i + 1 if deleted else 0
    instances.append(seeding.instance_row(i, host, vm_state, deleted_id,
                                          STAMP))
    # The rows benchmarks/seed.py writes (their created_at is ours).
    for key, value in seeding.sysmeta_items(i, machine_type):
        row_id = population.take_id()
        sysmeta.append((row_id, uuid, key, value, STAMP, None, deleted_id))
        if key == DUP_KEY and i % DUP_EVERY == DUP_AT:
            sysmeta.append(population.duplicate(i, uuid, row_id))
    if i % LOOKALIKE_EVERY == LOOKALIKE_AT:
        sysmeta.append(population.lookalike(i, uuid))


def seed(url, count):
    """Seed ``count`` instances on ``url`` with the driver alone.

    Returns (Population, seconds taken).
    """
    started = time.perf_counter()
    population = Population(count)
    loader = seeding.BulkLoader(url)
    for first in range(0, count, CHUNK):
        instances, sysmeta = [], []
        for i in range(first, min(first + CHUNK, count)):
            instance_rows(i, population, instances, sysmeta)
        loader.load('instances', seeding.INSTANCE_COLUMNS, instances)
        loader.load('instance_system_metadata', SYSMETA_COLUMNS, sysmeta)
        done = first + len(instances)
        if done % (CHUNK * 10) == 0 or done == count:
            log('  seeded %d/%d instances (%.0f/s)' % (
                done, count, done / (time.perf_counter() - started)))
    loader.close()
    return population, time.perf_counter() - started


# -- the clients --------------------------------------------------------------
# Each request is one statement in autocommit; it returns what it wrote
# that must outlive the upgrade, or None.

def insert_sysmeta(cursor, key, rng, population, n):
    """A new system metadata row (a key of its own) of a live instance."""
    row = (population.live_uuid(rng), INSERTED_PREFIX + str(n))
    cursor.execute('INSERT INTO instance_system_metadata (instance_uuid, '
                   '%s, value, created_at, deleted) VALUES (%%s, %%s, '
                   "'v', CURRENT_TIMESTAMP, 0)" % key, row)
    return row


def update_sysmeta(cursor, key, rng, population, n):
    """A new value of a random system metadata row, by id."""
    cursor.execute('UPDATE instance_system_metadata SET value = %s, '
                   'updated_at = CURRENT_TIMESTAMP WHERE id = %s',
                   ('v%d' % n, population.free_sysmeta_id(rng)))


def read_sysmeta(cursor, key, rng, population, n):
    """The live system metadata of a random instance."""
    cursor.execute('SELECT id, %s, value FROM instance_system_metadata '
                   'WHERE instance_uuid = %%s AND deleted = 0' % key,
                   (population.live_uuid(rng),))
    cursor.fetchall()


def update_instance(cursor, key, rng, population, n):
    """A task state change of a random instance, by uuid."""
    cursor.execute('UPDATE instances SET task_state = %s, '
                   'updated_at = CURRENT_TIMESTAMP WHERE uuid = %s',
                   (('rebooting', None)[n % 2], population.live_uuid(rng)))


def read_instance(cursor, key, rng, population, n):
    """A random instance's row, by uuid."""
    cursor.execute('SELECT * FROM instances WHERE uuid = %s',
                   (population.live_uuid(rng),))
    cursor.fetchall()


# name: (role, request)
CLIENTS = {
    'insert sysmeta': ('writers', insert_sysmeta),
    'update sysmeta': ('writers', update_sysmeta),
    'read sysmeta': ('readers', read_sysmeta),
    'update instance': ('writers', update_instance),
    'read instance': ('readers', read_instance),
}


def run_sync(argv, env):
    """Run the measured db sync to completion, whatever its exit code.

    Returns argv, wall (s), rc, start and end (epoch s), load (the
    1-minute load average at the start and at the end: the machine is
    shared) and the last OUTPUT_LINES lines of its stdout and stderr.
    """
    load = os.getloadavg()[0]
    start, began = time.time(), time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, cwd=harness.ROOT)
    wall = time.perf_counter() - began
    output = proc.stdout.decode(errors='replace').splitlines()
    return {'argv': argv, 'wall': wall, 'rc': proc.returncode,
            'start': start, 'end': start + wall,
            'load': [load, os.getloadavg()[0]],
            'output_tail': output[-OUTPUT_LINES:]}


UNIQUE_BUILD = '%uniq_instance_system_metadata0instance_uuid0key0deleted%'


def _building_unique(cursor, mysql):
    """Whether the server is building revision 002's unique key."""
    if mysql:
        cursor.execute("SELECT COUNT(*) FROM information_schema.processlist "
                       "WHERE info LIKE 'ALTER TABLE%%' AND info LIKE %s",
                       (UNIQUE_BUILD,))
    else:
        cursor.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE query "
                       "LIKE 'CREATE UNIQUE INDEX%%' AND query LIKE %s",
                       (UNIQUE_BUILD,))
    return cursor.fetchone()[0] > 0


def hold_during_unique_build(url, seconds, stop, log_to):
    """Another client's transaction, opened on instance_system_metadata
    while the unique key is built and held ``seconds``: an online ALTER
    must wait for it at its end, a concurrent build in its last phase.
    Appends (opened at, closed at) to ``log_to``."""
    mysql = clients.dialect_of(url) == 'mysql'
    watch = clients.connect(url)
    holder = clients.connect(url)
    cursor = watch.cursor()
    while not stop.is_set() and not _building_unique(cursor, mysql):
        time.sleep(0.05)
    if stop.is_set():
        return
    held = holder.cursor()
    held.execute('START TRANSACTION' if mysql else 'BEGIN')
    held.execute('SELECT COUNT(*) FROM instance_system_metadata '
                 'WHERE id < 100')
    opened = time.time()
    stop.wait(seconds)
    holder.rollback()
    log_to.append((opened, time.time()))
    clients.close(holder)
    clients.close(watch)


def backup_argv(url):
    """The server's own consistent dump of the cell, as a backup runs."""
    parsed = sa.engine.make_url(url)
    if clients.dialect_of(url) == 'mysql':
        return ['mysqldump', '--single-transaction', '-h', parsed.host,
                '-P', str(parsed.port or 3306), '-u', parsed.username,
                '-p' + parsed.password, parsed.database]
    return ['pg_dump', '-h', parsed.host, '-U', parsed.username,
            parsed.database]


def alter_statements(url):
    """The server's count of ALTER TABLE statements (MySQL; else None)."""
    if clients.dialect_of(url) != 'mysql':
        return None
    conn = clients.connect(url)
    cursor = conn.cursor()
    cursor.execute("SHOW GLOBAL STATUS LIKE 'Com_alter_table'")
    count = int(cursor.fetchone()[1])
    clients.close(conn)
    return count


def beside_sync(url, args):
    """Start what runs beside db sync (a held transaction, a backup);
    returns a function that ends it and returns what it measured."""
    stop = threading.Event()
    held = []
    threads, procs = [], []
    if args.hold:
        threads.append(threading.Thread(
            target=hold_during_unique_build,
            args=(url, args.hold, stop, held), daemon=True))
    if args.backup:
        password = {'PGPASSWORD': sa.engine.make_url(url).password or ''}
        procs.append(subprocess.Popen(
            backup_argv(url), stdout=subprocess.DEVNULL,
            env=dict(os.environ, **password)))
    for thread in threads:
        thread.start()
    started = time.time()
    alters = alter_statements(url)

    def end():
        alters_after = alter_statements(url)
        stop.set()
        for thread in threads:
            thread.join()
        backups = [(proc.wait(), time.time() - started) for proc in procs]
        return {'held': held, 'backups': backups,
                'alter_statements': None if alters is None
                else alters_after - alters}
    return end


def under_load(urls, population, argv, env, settle, args=None):
    """Run db sync (``argv``) while the clients run.

    The clients start, connect, run ``settle`` seconds, then db sync
    runs, then they run ``settle`` seconds more. Returns (run_sync's
    dict, the clients' records). With ``args.hold`` or ``args.backup``
    (see beside_sync) run_sync's dict gains 'beside'.
    """
    def sync_settled():
        time.sleep(settle)
        log('  db sync: %s' % ' '.join(argv))
        end = beside_sync(urls['sync'], args) if args else None
        sync = run_sync(argv, env)
        if end is not None:
            sync['beside'] = end()
        log('  db sync exited %d after %.1f s' % (sync['rc'], sync['wall']))
        time.sleep(settle)
        return sync
    return clients.run_beside(
        [(name, urls[role], request)
         for name, (role, request) in CLIENTS.items()],
        population, sync_settled)


# -- checks after the upgrade -------------------------------------------------

def scalar(cursor, sql, params=()):
    """The single value ``sql`` returns."""
    cursor.execute(sql, params)
    return cursor.fetchone()[0]


def wrong_survivors(cursor, key, groups):
    """The duplicated pairs that did not end as (newest live, other not).

    Returns the uuids of those pairs.
    """
    wrong = []
    for first in range(0, len(groups), 1000):
        batch = groups[first:first + 1000]
        cursor.execute(
            'SELECT instance_uuid, id, deleted FROM instance_system_metadata'
            ' WHERE %s = %%s AND instance_uuid IN (%s)' % (
                key, ', '.join(['%s'] * len(batch))),
            [DUP_KEY] + [uuid for uuid, _, _ in batch])
        found = {}
        for uuid, row_id, deleted in cursor.fetchall():
            found.setdefault(uuid, {})[row_id] = deleted != 0
        wrong += [uuid for uuid, survivor, other in batch
                  if found.get(uuid) != {survivor: False, other: True}]
    return wrong


def schema_of(url):
    """The revision and HEAD_SCHEMA's names as ``url``'s server has them.

    Returns {'port', 'revision', 'schema': {index or unique key: present}}.
    """
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    inspector = sa.inspect(engine)
    present = {}
    for table, names in HEAD_SCHEMA.items():
        found = {i['name'] for i in inspector.get_indexes(table)} | {
            c['name'] for c in inspector.get_unique_constraints(table)}
        present.update((name, name in found) for name in names)
    with engine.connect() as conn:
        revision = conn.execute(sa.text(
            'SELECT version_num FROM alembic_version')).scalar()
    engine.dispose()
    return {'port': engine.url.port, 'revision': revision, 'schema': present}


def sync_wait(cursor):
    """Make this Galera session's reads wait for every committed write.

    (wsrep_sync_wait = 1: a SELECT first waits until the node has
    applied what the cluster committed before it.)
    """
    cursor.execute('SET SESSION wsrep_sync_wait = 1')


def catch_up(urls):
    """Wait until each Galera node has applied the seed and ANALYZE.

    Else the clients' first writes meet the seed's replicated rows
    still being applied, and fail on certification before db sync
    starts.
    """
    for url in dict.fromkeys(urls.values()):
        conn = clients.connect(url)
        cursor = conn.cursor()
        sync_wait(cursor)
        scalar(cursor, 'SELECT count(*) FROM alembic_version')
        conn.close()


def verify(urls, population, written, head, galera):
    """Check the database after db sync (through the node of db sync).

    Returns a dict of the figures and ``ok``; ``nodes`` holds each
    server's (Galera: node's) revision and schema.
    """
    conn = clients.connect(urls['sync'])
    cursor = conn.cursor()
    if galera:
        sync_wait(cursor)
    key = clients.key_column(urls['sync'])
    result = {'head': head}
    result['live_duplicates'] = scalar(cursor, (
        'SELECT count(*) FROM (SELECT instance_uuid FROM '
        'instance_system_metadata WHERE deleted = 0 GROUP BY '
        'instance_uuid, %s HAVING count(*) > 1) AS d') % key)
    result.update(lookalikes=population.lookalikes, lookalikes_live=scalar(
        cursor, 'SELECT count(*) FROM instance_system_metadata '
        'WHERE value = %s AND deleted = 0', (LOOKALIKE,)))
    wrong = wrong_survivors(cursor, key, population.groups)
    result.update(groups=len(population.groups), wrong_survivors=len(wrong),
                  wrong_examples=wrong[:clients.ERRORS_KEPT])
    cursor.execute('SELECT instance_uuid, %s FROM instance_system_metadata '
                   'WHERE %s LIKE %%s AND deleted = 0' % (key, key),
                   (INSERTED_PREFIX + '%',))
    present = {tuple(row) for row in cursor.fetchall()}
    conn.close()
    written = set(written)
    result.update(inserted=len(written), missing=len(written - present),
                  unexpected=len(present - written))
    nodes = [schema_of(url) for url in dict.fromkeys(urls.values())]
    result.update(revision=nodes[0]['revision'], nodes=nodes)
    result['ok'] = (not result['live_duplicates'] and not wrong
                    and not result['missing']
                    and result['lookalikes_live'] == population.lookalikes
                    and all(node['revision'] == head
                            and all(node['schema'].values())
                            for node in nodes))
    return result


# -- one measurement ----------------------------------------------------------

# What nova-manage will import: printed by a child run as nova-manage is.
TREE_PROBE = """
import json, nova
from nova.db import migration
print(json.dumps({'nova_file': nova.__file__,
                  'head': migration.head_revision(migration.MAIN)}))
"""


def nova_env(tree):
    """The nova commands' environment: ``tree``'s nova package first."""
    if not tree:
        return harness.CHILD_ENV
    return dict(harness.CHILD_ENV, PYTHONPATH=os.path.abspath(tree))


def describe_tree(env, tree):
    """Which nova the commands import, and what its newest revision is.

    Returns nova_file, head, the source tree's commit and its changed
    files under nova/ (a tree being edited is not its commit). Raises
    SystemExit if ``tree`` was asked for and another nova is imported.
    """
    # -P: not the working directory first on the path, as for a script.
    found = json.loads(harness.run_child(
        [sys.executable, '-P', '-c', TREE_PROBE], env=env)['stdout'])
    source = os.path.dirname(os.path.dirname(found['nova_file']))
    if tree and source != os.path.abspath(tree):
        raise SystemExit('--nova-tree %s: nova-manage imports %s instead'
                         % (tree, found['nova_file']))
    git = ['git', '-C', source]
    found['commit'] = subprocess.run(git + ['rev-parse', 'HEAD'],
                                     capture_output=True,
                                     text=True).stdout.strip()
    found['changed'] = subprocess.run(
        git + ['status', '--porcelain', '--', 'nova'], capture_output=True,
        text=True).stdout.splitlines()
    return found


def bench(backend, count, args):
    """The upgrade measurement on ``backend`` at ``count`` instances.

    Returns a dict of everything measured, as report.upgrade_table
    shows it.
    """
    workdir = tempfile.mkdtemp(prefix='upgrade-%s-%d-' % (backend, count),
                               dir=args.workdir)
    log('== upgrade, %s, %d instances (work directory %s)'
        % (backend, count, workdir))
    env = nova_env(args.nova_tree)
    result = {'backend': backend, 'instances': count,
              'nova': describe_tree(env, args.nova_tree)}
    log('  nova-manage imports %(nova_file)s, commit %(commit)s, '
        'head %(head)s' % result['nova'])
    # Unique per run: several runs may share a database server.
    database = 'bench_upgrade_%d_%d' % (count, os.getpid())
    provision.create_database(harness.SERVERS[backend], database,
                              replace=True)
    urls = {role: node_url(backend, database, role) for role in GALERA_PORTS}
    conf = os.path.join(workdir, 'nova.conf')
    config.write_config_file(conf, {'database': {'connection': urls['sync']}})
    sync = [os.path.join(harness.BIN, 'nova-manage'), '--config-file', conf,
            'db', 'sync', '--local_cell']
    try:
        result['baseline_seconds'] = harness.run_child(
            sync + ['--version', BASELINE], env=env)['wall']
        population, result['seed_seconds'] = seed(urls['sync'], count)
        result.update(sysmeta_rows=population.next_sysmeta_id - 1,
                      duplicated_pairs=len(population.groups))
        started = time.perf_counter()
        harness.analyze(urls['sync'])
        result['analyze_seconds'] = time.perf_counter() - started
        if backend == 'galera':
            catch_up(urls)
        before = harness.table_mib(urls['sync'], 'instance_system_metadata')
        result['sync'], records = under_load(urls, population, sync, env,
                                             args.settle, args)
        harness.analyze(urls['sync'])
        # On Galera the copy held both tables until the old one's drop.
        result['sysmeta_mib'] = [before, harness.table_mib(
            urls['sync'], 'instance_system_metadata')]
        result['clients'] = [clients.summarize(
            r, result['sync']['start'], result['sync']['end'])
            for r in records]
        result['verify'] = verify(
            urls, population, [tuple(row) for r in records
                               for row in r['written']],
            result['nova']['head'], backend == 'galera')
        if args.dba_bound and backend != 'galera':
            result['dba'] = dba_bound(backend, count, workdir, env)
    finally:
        if args.keep:
            log('  kept: %s, %s' % (workdir, urls['sync']))
        else:
            provision.drop_databases(harness.SERVERS[backend], [database])
            subprocess.run(['rm', '-rf', workdir])
    return result


# -- the DBA's bound ----------------------------------------------------------
# What a DBA would run for the same end state, alone, one statement after
# another, through the database's own client: one de-duplicating UPDATE
# and the CREATE [UNIQUE] INDEX of each index db sync builds (on MySQL
# the instances index is a rename there too). db sync is held to
# report.DBA_BOUND times their sum.

_NEWEST_FIRST = ('ROW_NUMBER() OVER (PARTITION BY instance_uuid, {k} '
                 'ORDER BY COALESCE(updated_at, created_at) DESC, id DESC)')
DBA_STATEMENTS = {
    'mysql': [
        ('collation', 'ALTER TABLE instance_system_metadata MODIFY `key` '
         'VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin '
         'NOT NULL, ALGORITHM=INSTANT'),
        ('de-duplicating UPDATE',
         'UPDATE instance_system_metadata s JOIN (SELECT id FROM (SELECT '
         'id, ' + _NEWEST_FIRST.format(k='`key`') + ' AS n FROM '
         'instance_system_metadata WHERE deleted = 0) r WHERE n > 1) d '
         'ON d.id = s.id SET s.deleted = s.id, '
         's.deleted_at = UTC_TIMESTAMP()'),
        ('unique key', 'CREATE UNIQUE INDEX '
         'uniq_instance_system_metadata0instance_uuid0key0deleted ON '
         'instance_system_metadata (instance_uuid, `key`, deleted)'),
        ('key/value index', 'CREATE INDEX '
         'instance_system_metadata_key_value_id_idx ON '
         'instance_system_metadata (`key`, deleted, value, id)'),
        ('instances index', 'ALTER TABLE instances RENAME INDEX '
         'instances_host_deleted_idx TO instances_host_deleted_id_idx'),
    ],
    'postgresql': [
        ('de-duplicating UPDATE',
         'UPDATE instance_system_metadata s SET deleted = s.id, '
         'deleted_at = now() FROM (SELECT id, '
         + _NEWEST_FIRST.format(k='"key"') + ' AS n FROM '
         'instance_system_metadata WHERE deleted = 0) r '
         'WHERE r.id = s.id AND r.n > 1'),
        ('unique key', 'CREATE UNIQUE INDEX '
         'uniq_instance_system_metadata0instance_uuid0key0deleted ON '
         'instance_system_metadata (instance_uuid, "key", deleted)'),
        ('key/value index', 'CREATE INDEX '
         'instance_system_metadata_key_value_id_idx ON '
         'instance_system_metadata ("key", deleted, value, id)'),
        ('instances index', 'CREATE INDEX instances_host_deleted_id_idx '
         'ON instances (host, deleted, id)'),
    ],
}


def client_argv(url, statement):
    """The database's own command-line client running ``statement``."""
    parsed = sa.engine.make_url(url)
    if clients.dialect_of(url) == 'mysql':
        return ['mysql', '-h', parsed.host, '-P', str(parsed.port or 3306),
                '-u', parsed.username, '-p' + parsed.password,
                parsed.database, '-e', statement]
    return ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', parsed.host,
            '-U', parsed.username, '-d', parsed.database, '-c', statement]


def dba_bound(backend, count, workdir, env):
    """Seed a second, identical cell and time the DBA's statements on it.

    Returns {'statements': [(what, seconds)], 'seconds': their sum}.
    """
    database = 'bench_dba_%d_%d' % (count, os.getpid())
    provision.create_database(harness.SERVERS[backend], database,
                              replace=True)
    url = node_url(backend, database, 'sync')
    conf = os.path.join(workdir, 'dba.conf')
    config.write_config_file(conf, {'database': {'connection': url}})
    try:
        harness.run_child([os.path.join(harness.BIN, 'nova-manage'),
                           '--config-file', conf, 'db', 'sync',
                           '--local_cell', '--version', BASELINE], env=env)
        seed(url, count)
        harness.analyze(url)
        timed = []
        password = {'PGPASSWORD': sa.engine.make_url(url).password or ''}
        for what, statement in DBA_STATEMENTS[clients.dialect_of(url)]:
            started = time.perf_counter()
            subprocess.run(client_argv(url, statement), check=True,
                           env=dict(os.environ, **password),
                           stdout=subprocess.DEVNULL)
            timed.append((what, time.perf_counter() - started))
            log('  DBA: %s %.1f s' % (what, timed[-1][1]))
    finally:
        provision.drop_databases(harness.SERVERS[backend], [database])
    return {'statements': timed, 'seconds': sum(t for _, t in timed)}


# -- command line -------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backend', action='append',
                        choices=('mysql', 'postgresql', 'galera'),
                        help='repeatable; default: mysql and postgresql '
                             '(galera: the cluster of tools/galera.sh)')
    parser.add_argument('--instances', action='append', type=int,
                        metavar='N', help='instances to seed (repeatable; '
                        'default: 100000)')
    parser.add_argument('--json', default='bench-upgrade.json',
                        help='where to write every figure')
    parser.add_argument('--workdir', help='parent of the work directories')
    parser.add_argument('--keep', action='store_true',
                        help='keep the database and files afterwards')
    parser.add_argument('--nova-tree', metavar='PATH',
                        help='run nova-manage with the nova package of this '
                        'source tree')
    parser.add_argument('--dba-bound', action='store_true',
                        help='also time, on a second identical cell, the '
                        'bare statements a DBA would run for the same end '
                        'state')
    parser.add_argument('--hold', type=float, metavar='SECONDS',
                        help='another client opens a transaction on '
                        'instance_system_metadata while the unique key is '
                        'built and holds it this long')
    parser.add_argument('--backup', action='store_true',
                        help='mysqldump --single-transaction (pg_dump) of '
                        'the cell runs beside db sync')
    parser.add_argument('--settle', type=float, default=5.0,
                        help='seconds the clients run before db sync '
                        'starts and after it ends')
    args = parser.parse_args(argv)
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    args.backend = args.backend or ['mysql', 'postgresql']
    args.instances = args.instances or [100000]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return harness.record_results(
        'upgrades', (functools.partial(bench, backend, count, args)
                     for backend in args.backend
                     for count in args.instances),
        args.json, report.upgrade_table)


if __name__ == '__main__':
    sys.exit(main())
