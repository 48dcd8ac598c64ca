"""The lower bounds of the benchmark, and init_host counted in-process.

Each probe runs in a process of its own, started by benchmarks/run.py
exactly as the nova command it is compared with, so that wall time and
peak RSS (read from that child's rusage) compare like with like:

    python -m benchmarks.probes list URL OUT        anti-join, streamed
    python -m benchmarks.probes count_by_host URL OUT
    python -m benchmarks.probes insert_select URL   the online migration
    python -m benchmarks.probes undo_insert_select URL | undo_migration URL
    python -m benchmarks.probes update URL OLD NEW  the bulk update
    python -m benchmarks.probes domains URI         listing + XML alone
    python -m benchmarks.probes get API_URL UUID    one machine type
    python -m benchmarks.probes init_host HOST CONF...   (prints JSON)

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


def connect(url):
    """(DB-API connection, dialect name) of an SQLAlchemy URL.

    Only the driver is used: the URL is parsed by SQLAlchemy, nothing else.
    """
    from sqlalchemy.engine import make_url
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    if dialect == 'sqlite':
        import sqlite3
        return sqlite3.connect(parsed.database), dialect
    if dialect == 'mysql':
        import pymysql
        return pymysql.connect(
            host=parsed.host, user=parsed.username,
            password=parsed.password, database=parsed.database,
            port=parsed.port or 3306), dialect
    import psycopg2
    return psycopg2.connect(
        host=parsed.host, user=parsed.username, password=parsed.password,
        dbname=parsed.database, port=parsed.port or 5432), dialect


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
    """``sql`` with %(name)s parameters in the driver's style."""
    return sql.replace('%(new)s', ':new').replace('%(old)s', ':old') \
        if dialect == 'sqlite' else sql


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
    elif kind == 'init_host':
        result = init_host(args[0], args[1:])
    else:
        raise SystemExit('unknown probe %r' % kind)
    print(json.dumps(result))


if __name__ == '__main__':
    main(sys.argv[1:])
