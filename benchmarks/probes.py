"""The lower bounds of the benchmark, and init_host counted in-process.

Each probe runs in a process of its own, started by a scenario
exactly as the nova command it is compared with, so that wall time and
peak RSS (read from that child's rusage) compare like with like:

    python -m benchmarks.probes list URL OUT        anti-join, streamed
    python -m benchmarks.probes count_by_host URL OUT
    python -m benchmarks.probes insert_select URL   the online migration
    python -m benchmarks.probes undo_insert_select URL | undo_migration URL
    python -m benchmarks.probes update URL OLD NEW  the bulk update
    python -m benchmarks.probes domains URI         listing + XML alone
    python -m benchmarks.probes get API_URL UUID    one machine type
    python -m benchmarks.probes update_one API_URL UUID OLD NEW
    python -m benchmarks.probes floor_get CONF UUID      (SQLAlchemy Core
    python -m benchmarks.probes floor_update CONF UUID OLD NEW  + oslo.config)
    python -m benchmarks.probes floor_start CONF    a call that does nothing
    python -m benchmarks.probes init_host HOST CONF...   (prints JSON)
    python -m benchmarks.probes cells KIND OUT URL...   (see run_cells)

The lower bounds use the database's own client library (sqlite3,
PyMySQL, psycopg2) and the SQL a DBA would type, with no ORM, so they
are the floor a nova command can approach, not a rival implementation.
Each prints one JSON line: what it counted.
"""

import json
import sys

KEY = 'hw_machine_type'
IMAGE_KEY = 'image_hw_machine_type'
# created_at of the rows the INSERT ... SELECT writes, so that the
# benchmark can remove exactly them before the online migration runs.
SENTINEL = '1999-01-01 00:00:00'

# Live, non-building instances without a live hw_machine_type row: what
# list_unset_machine_type and nova-status look for.
UNRECORDED = """
  FROM instances i
 WHERE i.deleted = 0 AND i.vm_state != 'building'
   AND NOT EXISTS (SELECT 1 FROM instance_system_metadata s
                    WHERE s.instance_uuid = i.uuid
                      AND s.key = 'hw_machine_type' AND s.deleted = 0)"""

LIST_SQL = 'SELECT i.uuid' + UNRECORDED
COUNT_BY_HOST_SQL = 'SELECT i.host, count(*)' + UNRECORDED + \
    ' GROUP BY i.host'

# What the online migration records: host-less instances get the image's
# machine type, else the built-in default of their arch (all x86_64 in
# the seed, and [libvirt]hw_machine_type is unset in the benchmark).
INSERT_SELECT_SQL = """
INSERT INTO instance_system_metadata
       (instance_uuid, {key}, value, deleted, created_at)
SELECT i.uuid, 'hw_machine_type', COALESCE(p.value, 'pc'), 0,
       '""" + SENTINEL + """'
  FROM instances i
  LEFT JOIN instance_system_metadata p
         ON p.instance_uuid = i.uuid AND p.key = 'image_hw_machine_type'
            AND p.deleted = 0
 WHERE i.deleted = 0 AND i.host IS NULL AND i.vm_state != 'building'
   AND NOT EXISTS (SELECT 1 FROM instance_system_metadata s
                    WHERE s.instance_uuid = i.uuid
                      AND s.key = 'hw_machine_type' AND s.deleted = 0)"""

UNDO_INSERT_SQL = ("DELETE FROM instance_system_metadata "
                   "WHERE {key} = 'hw_machine_type' AND created_at = '"
                   + SENTINEL + "'")

# created_at of every seeded row (benchmarks/seed.py): the records made
# later, by the online migration, are the ones created from the next day
# on (compared as text on SQLite, where the seed's is stored with
# microseconds: '2026-01-01 00:00:00.000000' > '2026-01-01 00:00:00').
SEEDED_AT = '2026-01-01 00:00:00'
UNDO_MIGRATION_SQL = ("DELETE FROM instance_system_metadata "
                      "WHERE {key} = 'hw_machine_type' "
                      "AND created_at >= '2026-01-02 00:00:00'")

UPDATE_SQL = """
UPDATE instance_system_metadata SET value = %(new)s
 WHERE {key} = 'hw_machine_type' AND deleted = 0 AND value = %(old)s
   AND instance_uuid IN (SELECT uuid FROM instances
                          WHERE deleted = 0 AND vm_state = 'stopped')"""


# The statements of nova-status upgrade check per cell: unrecorded
# instances by host, recorded types their host refuses, drift.
REFUSED_SQL = """
SELECT i.host, s.value, count(*)
  FROM instances i
  JOIN instance_system_metadata s
    ON s.instance_uuid = i.uuid AND s.key = 'hw_machine_type'
       AND s.deleted = 0
 WHERE i.deleted = 0
   AND EXISTS (SELECT 1 FROM host_machine_types h WHERE h.host = i.host)
   AND NOT EXISTS (SELECT 1 FROM host_machine_types h
                    WHERE h.host = i.host AND h.name = s.value
                      AND NOT h.deprecated)
 GROUP BY i.host, s.value"""
DRIFT_SQL = """
SELECT d.host, d.instance_uuid, s.value, d.running
  FROM machine_type_drift d
  JOIN instances i ON i.uuid = d.instance_uuid AND i.deleted = 0
                  AND i.host = d.host
  JOIN instance_system_metadata s
    ON s.instance_uuid = i.uuid AND s.key = 'hw_machine_type'
       AND s.deleted = 0
 WHERE s.value != d.running"""
# machine_type_summary: instances by recorded type and vm_state.
SUMMARY_SQL = """
SELECT s.value, i.vm_state, count(*)
  FROM instances i
  LEFT JOIN instance_system_metadata s
         ON s.instance_uuid = i.uuid AND s.key = 'hw_machine_type'
            AND s.deleted = 0
 WHERE i.deleted = 0
 GROUP BY s.value, i.vm_state"""
# bulk_update_machine_type: its report, then its change (all the states
# it may change, as one statement).
BULK_GROUPS_SQL = """
SELECT i.vm_state, i.host, count(*)
  FROM instances i
  JOIN instance_system_metadata s
    ON s.instance_uuid = i.uuid AND s.key = 'hw_machine_type'
       AND s.deleted = 0
 WHERE i.deleted = 0 AND s.value = %(old)s
 GROUP BY i.vm_state, i.host"""
BULK_UPDATE_SQL = """
UPDATE instance_system_metadata SET value = %(new)s
 WHERE {key} = 'hw_machine_type' AND deleted = 0 AND value = %(old)s
   AND instance_uuid IN (
       SELECT uuid FROM instances
        WHERE deleted = 0
          AND vm_state IN ('stopped', 'shelved', 'shelved_offloaded'))"""

# What each cross-cell command runs in one cell: [(SQL, writes?)]; the
# last statement's rows (or rowcount) are what the command reports.
CELL_STATEMENTS = {
    'status': [(REFUSED_SQL, False), (DRIFT_SQL, False),
               (COUNT_BY_HOST_SQL, False)],
    'list': [(LIST_SQL, False)],
    'summary': [(SUMMARY_SQL, False)],
    'bulk_dry_run': [(BULK_GROUPS_SQL, False)],
    'bulk': [(BULK_GROUPS_SQL, False), (BULK_UPDATE_SQL, True)],
    'insert_select': [(INSERT_SELECT_SQL, True)],
}


def connect(url):
    """(DB-API connection, dialect name) of an SQLAlchemy URL.

    Only the driver is imported: the URL is split by urllib, as the
    benchmark writes it (driver://user:password@host[:port]/database or
    sqlite:///path), so that no probe pays for importing SQLAlchemy.
    """
    from urllib import parse
    parsed = parse.urlsplit(url)
    dialect = parsed.scheme.split('+')[0]
    database = parse.unquote(parsed.path[1:])
    if dialect == 'sqlite':
        import sqlite3
        return sqlite3.connect(database), dialect
    user = parse.unquote(parsed.username or '') or None
    password = parse.unquote(parsed.password or '') or None
    if dialect in ('mysql', 'mariadb'):
        import pymysql
        return pymysql.connect(
            host=parsed.hostname, user=user, password=password,
            database=database, port=parsed.port or 3306), 'mysql'
    import psycopg2
    return psycopg2.connect(
        host=parsed.hostname, user=user, password=password,
        dbname=database, port=parsed.port or 5432), dialect


def quoted_key(dialect):
    """The column ``key`` where it stands unqualified (reserved in MySQL)."""
    return '`key`' if dialect == 'mysql' else 'key'


def streaming_cursor(conn, dialect):
    """A cursor that streams a result instead of buffering it whole."""
    if dialect == 'mysql':
        import pymysql.cursors
        return conn.cursor(pymysql.cursors.SSCursor)
    if dialect == 'postgresql':
        cursor = conn.cursor(name='probe')
        cursor.itersize = 10000
        return cursor
    return conn.cursor()


def paramstyle(sql, dialect):
    """``sql`` with %(name)s parameters in the driver's style (sqlite3 and
    SQLAlchemy's text(): :name)."""
    return named_params(sql) if dialect == 'sqlite' else sql


def named_params(sql):
    """``sql`` with each %(name)s parameter written :name."""
    import re
    return re.sub(r'%\((\w+)\)s', r':\1', sql)


def stream_to_file(url, sql, out):
    """Run ``sql`` and write its rows to ``out``, one a line.

    Returns the number of rows.
    """
    conn, dialect = connect(url)
    cursor = streaming_cursor(conn, dialect)
    cursor.execute(sql)
    rows = 0
    with open(out, 'w') as f:
        for row in cursor:
            f.write('\t'.join(str(v) for v in row) + '\n')
            rows += 1
    conn.close()
    return rows


def execute(url, sql, params=None):
    """Run one writing statement and commit; return its rowcount."""
    conn, dialect = connect(url)
    cursor = conn.cursor()
    sql = paramstyle(sql.format(key=quoted_key(dialect)), dialect)
    cursor.execute(sql, params or {})
    count = cursor.rowcount
    conn.commit()
    conn.close()
    return count


def run_cell(url, kind, out, params):
    """Run CELL_STATEMENTS[kind] on one cell, rows appended to ``out``.

    Returns the last statement's row count (rowcount for a write).
    """
    conn, dialect = connect(url)
    counts = []
    for sql, writes in CELL_STATEMENTS[kind]:
        sql = paramstyle(sql.format(key=quoted_key(dialect)), dialect)
        cursor = (conn.cursor() if writes
                  else streaming_cursor(conn, dialect))
        cursor.execute(sql, params)
        if writes:
            counts.append(cursor.rowcount)
        else:
            rows = 0
            for row in cursor:
                out.write('\t'.join(str(v) for v in row) + '\n')
                rows += 1
            counts.append(rows)
        cursor.close()
    conn.commit()
    conn.close()
    return counts[-1]


def run_cells(kind, out, urls, params):
    """The lower bound of a cross-cell command: its SQL, cell after cell.

    One process, one connection at a time, the bare driver: what the
    command does in each cell with none of its parallelism. Returns
    {rows: in all, per_cell: [rows of each cell]}.
    """
    with open(out, 'w') as f:
        per_cell = [run_cell(url, kind, f, params) for url in urls]
    return {'rows': sum(per_cell), 'per_cell': per_cell}


def list_domains(uri):
    """Open libvirt, list every domain once and read each one's XML.

    Returns the number of domains.
    """
    import libvirt
    conn = libvirt.open(uri)
    domains = conn.listAllDomains(0)
    for domain in domains:
        domain.XMLDesc(0)
    conn.close()
    return len(domains)


def get_machine_type(api_url, uuid):
    """The two lookups of get_machine_type: mapping, then the record.

    Returns the machine type (or None).
    """
    conn, dialect = connect(api_url)
    cursor = conn.cursor()
    mark = '?' if dialect == 'sqlite' else '%s'
    cursor.execute('SELECT c.database_connection FROM instance_mappings m '
                   'JOIN cell_mappings c ON c.id = m.cell_id '
                   'WHERE m.instance_uuid = %s' % mark, (uuid,))
    [cell_url] = cursor.fetchone()
    conn.close()
    conn, dialect = connect(cell_url)
    cursor = conn.cursor()
    cursor.execute("SELECT s.value FROM instance_system_metadata s "
                   "WHERE s.instance_uuid = %s AND s.key = '%s' "
                   "AND s.deleted = 0" % (mark, KEY), (uuid,))
    row = cursor.fetchone()
    conn.close()
    return row[0] if row else None


# update_machine_type's write: the record, if it is still what was read.
UPDATE_ONE_SQL = """
UPDATE instance_system_metadata SET value = %(new)s, updated_at = %(now)s
 WHERE instance_uuid = %(uuid)s AND {key} = 'hw_machine_type'
   AND deleted = 0 AND value = %(old)s"""
MAPPING_SQL = ('SELECT c.database_connection FROM instance_mappings m '
               'JOIN cell_mappings c ON c.id = m.cell_id '
               'WHERE m.instance_uuid = %(uuid)s')
INSTANCE_SQL = """
SELECT i.vm_state, i.host, s.value FROM instances i
  LEFT JOIN instance_system_metadata s
         ON s.instance_uuid = i.uuid AND s.{key} = 'hw_machine_type'
            AND s.deleted = 0
 WHERE i.uuid = %(uuid)s AND i.deleted = 0"""


def update_machine_type(api_url, uuid, old, new):
    """update_machine_type's look-ups and write, through the driver.

    Returns the number of rows updated (1).
    """
    conn, dialect = connect(api_url)
    cursor = conn.cursor()
    cursor.execute(paramstyle(MAPPING_SQL, dialect), {'uuid': uuid})
    [cell_url] = cursor.fetchone()
    conn.close()
    conn, dialect = connect(cell_url)
    cursor = conn.cursor()
    cursor.execute(paramstyle(INSTANCE_SQL.format(
        key=quoted_key(dialect)), dialect), {'uuid': uuid})
    cursor.fetchone()
    cursor.execute(paramstyle(UPDATE_ONE_SQL.format(
        key=quoted_key(dialect)), dialect), {
            'uuid': uuid, 'old': old, 'new': new,
            'now': _now()})
    count = cursor.rowcount
    conn.commit()
    conn.close()
    return count


def floor(config_file, uuid, old=None, new=None):
    """What the one-instance commands cannot do without, and nothing more.

    SQLAlchemy's core with the dialect and driver of the URL, and
    oslo.config reading ``[api_database]connection`` from the command's
    configuration file; then get_machine_type's look-ups (and, with
    ``new``, update_machine_type's write) as Core text statements.
    Returns the machine type read, or the number of rows updated.
    """
    from oslo_config import cfg
    import sqlalchemy as sa
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt('connection')], group='api_database')
    conf(['--config-file', config_file], project='nova')

    engines = {}

    def run(url, sql, params, write=False):
        engine = engines.get(url) or engines.setdefault(
            url, sa.create_engine(url))
        family = 'mysql' if engine.dialect.name == 'mariadb' \
            else engine.dialect.name
        with engine.begin() as conn:
            result = conn.execute(sa.text(named_params(
                sql.format(key=quoted_key(family)))), params)
            return result.rowcount if write else result.first()

    [cell_url] = run(conf.api_database.connection, MAPPING_SQL,
                     {'uuid': uuid})
    row = run(cell_url, INSTANCE_SQL, {'uuid': uuid})
    if new is None:
        return row[2]
    return run(cell_url, UPDATE_ONE_SQL, {'uuid': uuid, 'old': old,
                                          'new': new, 'now': _now()},
               write=True)


def floor_start(config_file):
    """What any call of a command over cells pays before its work.

    A fresh Python with SQLAlchemy's core, oslo.config reading
    ``[api_database]connection``, the cells' URLs read from the API
    database, and one connection to each cell. Returns how many cells.
    """
    from oslo_config import cfg
    import sqlalchemy as sa
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt('connection')], group='api_database')
    conf(['--config-file', config_file], project='nova')
    with sa.create_engine(conf.api_database.connection).connect() as conn:
        urls = conn.execute(sa.text(
            'SELECT database_connection FROM cell_mappings')).scalars().all()
    for url in urls:
        with sa.create_engine(url).connect() as conn:
            conn.execute(sa.text('SELECT 1'))
    return len(urls)


def _now():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)


def init_host(host, config_files):
    """Run ComputeManager(host).init_host(), counting database round trips.

    Every statement SQLAlchemy hands the driver, and every COMMIT or
    ROLLBACK. An executemany psycopg2 runs itself is one round trip per
    parameter set (it loops over them), unlike SQLAlchemy's multi-row
    batches (seen here as single statements) or PyMySQL's (which folds
    an INSERT's rows into one). Returns a dict of statements,
    transactions and round_trips.
    """
    import sqlalchemy as sa
    from nova.compute import manager
    from nova import config

    counts = {'statements': 0, 'transactions': 0, 'per_row': 0}

    def statement(conn, cursor, sql, params, context, executemany):
        counts['statements'] += 1
        # A list of parameter sets; SQLAlchemy's own multi-row batches
        # come as one dict per batch.
        if executemany and conn.dialect.driver == 'psycopg2' and \
                isinstance(params, (list, tuple)):
            counts['per_row'] += len(params) - 1

    def transaction(*args, **kwargs):
        counts['transactions'] += 1

    sa.event.listen(sa.engine.Engine, 'before_cursor_execute', statement)
    sa.event.listen(sa.engine.Engine, 'commit', transaction)
    sa.event.listen(sa.engine.Engine, 'rollback', transaction)
    argv = []
    for path in config_files:
        argv += ['--config-file', path]
    config.parse_args(argv, configure_logging=False)
    manager.ComputeManager(host=host).init_host()
    counts['round_trips'] = (counts['statements'] + counts['transactions']
                             + counts.pop('per_row'))
    return counts


def main(argv):
    kind, args = argv[0], argv[1:]
    if kind == 'list':
        result = {'rows': stream_to_file(args[0], LIST_SQL, args[1])}
    elif kind == 'count_by_host':
        result = {'rows': stream_to_file(args[0], COUNT_BY_HOST_SQL, args[1])}
    elif kind == 'insert_select':
        result = {'rows': execute(args[0], INSERT_SELECT_SQL)}
    elif kind == 'undo_insert_select':
        result = {'rows': execute(args[0], UNDO_INSERT_SQL)}
    elif kind == 'undo_migration':
        result = {'rows': execute(args[0], UNDO_MIGRATION_SQL)}
    elif kind == 'update':
        result = {'rows': execute(args[0], UPDATE_SQL,
                                  {'old': args[1], 'new': args[2]})}
    elif kind == 'domains':
        result = {'domains': list_domains(args[0])}
    elif kind == 'get':
        result = {'machine_type': get_machine_type(args[0], args[1])}
    elif kind == 'update_one':
        result = {'rows': update_machine_type(*args)}
    elif kind == 'floor_get':
        result = {'machine_type': floor(*args)}
    elif kind == 'floor_update':
        result = {'rows': floor(*args)}
    elif kind == 'floor_start':
        result = {'cells': floor_start(*args)}
    elif kind == 'cells':
        # cells KIND OUT URL... [OLD NEW]
        urls = [arg for arg in args[2:] if '://' in arg]
        params = dict(zip(('old', 'new'), args[2 + len(urls):]))
        result = run_cells(args[0], args[1], urls, params)
    elif kind == 'init_host':
        result = init_host(args[0], args[1:])
    else:
        raise SystemExit('unknown probe %r' % kind)
    print(json.dumps(result))


if __name__ == '__main__':
    main(sys.argv[1:])
