"""New indexes for a large table on a Galera cluster, by copying it.

On a MariaDB Galera cluster an ``ALTER TABLE`` runs in total order
(``wsrep_OSU_method=TOI``): while any node builds an index, no node of
the cluster commits anything, in any schema, and a transaction that holds
the table on a node when the ``ALTER`` reaches it is aborted. Instead the
table is rebuilt beside itself, as DBAs do on such clusters:

1. a shadow table ``_<table>_new`` with the table's definition (columns,
   indexes, foreign keys, next id) and the new indexes, created empty in
   one statement, which takes milliseconds in total order;
2. triggers on the table mirror every insert, update and delete into the
   shadow from then on (they run where the client writes, and their rows
   replicate with the client's own);
3. the rows present before the triggers existed are copied in chunks of
   at most COPY_CHUNK ids (fewer when a chunk takes longer than
   CHUNK_SECONDS), each chunk one ``INSERT ... SELECT`` replicated as
   an ordinary transaction; a row a trigger already wrote is left as
   the trigger wrote it;
4. one ``RENAME TABLE`` swaps the two tables (in total order, in an
   instant), and the old table is dropped, its foreign keys first.

The statements that run in total order (creating the shadow, the
triggers, the rename, the drop) each hold the cluster for milliseconds
(the rename: 0.3-0.4 s at a million instances), not for the length of
a build, but for the drop: every node deletes the old table's file
meanwhile (0.27 s for 1.4 GB on the test machine's root file system, 2
ms on a fresh ext4 one). db sync pauses after each of them
(sync_waits.pace_total_order), so that the client statements one
aborted are replayed before the next arrives.

The new indexes include a unique key over columns ending in ``deleted``
(Nova's soft delete: a deleted row has ``deleted = id``). A live row that
would break it in the shadow (a duplicate written after the table was
de-duplicated) is resolved as the de-duplication resolves it: the newest
of the two stays live, the other is copied soft-deleted. The shadow never
loses a row the table has.

An interrupted copy (kill -9, a node lost) leaves the shadow, the
triggers or the old table behind; ``drop_leftovers`` removes them and
the copy starts again from the beginning.
"""

import datetime
import os
import re
import socket
import time

import sqlalchemy as sa

from nova.db import online_schema
from nova.db import sync_waits
from nova.db import sysmeta_dedup
from nova import exception

# Ids per chunk of the copy: one replicated transaction of at most that
# many rows (about 150 KB of write set for system metadata rows).
COPY_CHUNK = 1000
# Seconds a chunk should take, and the fewest ids a chunk has. Every
# node applies a chunk in about the time db sync's node took, and
# commits nothing else of that node meanwhile: on the test machine's
# slower disk, the last chunks at a million instances (rows of
# instances all over the unique key, the seeded duplicates) took
# 0.4-0.8 s each and so did every client write through another node.
# A chunk slower than the target makes the next one smaller, a faster
# one the next one larger again, up to COPY_CHUNK.
CHUNK_SECONDS = 0.1
MIN_CHUNK = 50
_TRIGGER_EVENTS = ('insert', 'update', 'delete')


# Free disk asked for, in times the table's size: the shadow holds the
# table's rows and indexes once more, plus its new indexes. For system
# metadata the new table took 2.2 times the old one (143 MiB, then 312
# MiB at 100,000 instances, benchmarks/RESULTS.md).
SPACE_FACTOR = 3
_GIB = 1024 ** 3


def shadow_name(table):
    return '_%s_new' % table


def old_name(table):
    return '_%s_old' % table


def trigger_name(table, event):
    return '%s_copy_%s' % (table, event)


def drop_leftovers(connection, table, report=None):
    """Remove what an interrupted copy of ``table`` left: its triggers
    (first, so that no write goes to the shadow any more), the shadow,
    and the old table a swap left. Returns whether there was any."""
    found = drop_triggers(connection, table)
    for leftover in (shadow_name(table), old_name(table)):
        if sa.inspect(connection).has_table(leftover):
            _drop_table(connection, leftover)
            found = True
    if found and report is not None:
        report('  removed what an interrupted copy of %s left' % table)
    return found


def drop_triggers(connection, table):
    """Drop the copy's triggers on ``table``; returns whether there were
    any."""
    found = False
    for event in _TRIGGER_EVENTS:
        name = trigger_name(table, event)
        if connection.execute(sa.text(
                'SELECT 1 FROM information_schema.triggers'
                ' WHERE trigger_schema = DATABASE()'
                '   AND trigger_name = :name'), {'name': name}).scalar():
            connection.execute(sa.text('DROP TRIGGER IF EXISTS %s' % name))
            found = True
    return found


def _drop_table(connection, name):
    """Drop a table no client uses, its foreign keys first.

    Dropping a table that has a foreign key aborts clients' transactions
    on the table it references (instances), and takes as long as
    deleting the table's file (0.3 s for 1.3 GB on the test machine's
    disk): at a million instances the statements it aborted failed
    after waiting for it. Dropping the keys first (a change of metadata,
    though 0.3 s there too) moves those aborts to a shorter statement;
    it does not avoid them. The drop itself then aborts no client.
    """
    for key in connection.execute(sa.text(
            'SELECT constraint_name'
            '  FROM information_schema.referential_constraints'
            ' WHERE constraint_schema = DATABASE() AND table_name = :name'),
            {'name': name}).scalars().all():
        connection.execute(sa.text('ALTER TABLE %s DROP FOREIGN KEY %s,'
                                   ' ALGORITHM=INPLACE' % (name, key)))
    connection.execute(sa.text('DROP TABLE %s' % name))


def table_bytes(connection, table):
    """Bytes of ``table``'s rows and indexes, as InnoDB counts them."""
    return int(connection.execute(sa.text(
        'SELECT data_length + index_length FROM information_schema.tables'
        ' WHERE table_schema = DATABASE() AND table_name = :table'),
        {'table': table}).scalar() or 0)


def _disks(connection):
    """[(mount point, bytes available)] as MariaDB's DISKS plugin reports
    the server's file systems; [] when the plugin is not loaded (or the
    user lacks the FILE privilege it asks for)."""
    if not connection.execute(sa.text(
            "SELECT 1 FROM information_schema.plugins"
            " WHERE plugin_name = 'DISKS' AND plugin_status = 'ACTIVE'"
            )).scalar():
        return []
    return [(path, available * 1024) for path, available in
            connection.execute(sa.text(
                'SELECT path, available FROM information_schema.disks'))]


def free_space(connection):
    """(bytes free, how it was learnt) in the server's data directory, or
    (None, why not).

    The server says it through the DISKS plugin, if loaded. Otherwise the
    directory is only looked at when the server runs on this machine
    (same host name); a remote server's file systems cannot be seen.
    """
    datadir = connection.execute(sa.text('SELECT @@datadir')).scalar()
    mounts = [(path, free) for path, free in _disks(connection)
              if datadir.startswith(path.rstrip('/') + '/')]
    if mounts:
        path, free = max(mounts, key=lambda mount: len(mount[0]))
        return free, 'the server (information_schema.DISKS, %s)' % path
    host = connection.execute(sa.text('SELECT @@hostname')).scalar()
    if host == socket.gethostname():
        try:
            stat = os.statvfs(datadir)
        except OSError as exc:
            return None, 'its data directory: %s' % exc
        return stat.f_bavail * stat.f_frsize, datadir
    return None, ("the server (%s) is not this machine and does not load "
                  "MariaDB's DISKS plugin (INSTALL SONAME 'disks')" % host)


def check_space(connection, table, report=None):
    """Stop before the copy of ``table`` if the server's data directory
    lacks SPACE_FACTOR times the table's size; say so when that cannot
    be learnt. Returns the bytes needed."""
    size = table_bytes(connection, table)
    needed = SPACE_FACTOR * size
    free, source = free_space(connection)
    if free is not None and free < needed:
        raise exception.MigrationError(reason=(
            'not enough disk for the copy of %s: it needs about %.1f GiB '
            '(the table takes %.1f GiB), %.1f GiB is free (%s); free disk '
            'on every node and run db sync again' % (
                table, needed / _GIB, size / _GIB, free / _GIB, source)))
    if free is None:
        line = ('  WARNING: free disk not checked (%s): the copy of %s '
                'needs about %.1f GiB free in the data directory of every '
                'node' % (source, table, needed / _GIB))
    else:
        line = ('  the copy of %s needs about %.1f GiB of disk; %.1f GiB '
                'is free (%s)' % (table, needed / _GIB, free / _GIB, source))
    if report is not None:
        report(line)
    return needed


def columns_of(connection, table):
    """``table``'s column names, in order."""
    return connection.execute(sa.text(
        'SELECT column_name FROM information_schema.columns'
        ' WHERE table_schema = DATABASE() AND table_name = :table'
        ' ORDER BY ordinal_position'), {'table': table}).scalars().all()


def _shadow_definition(connection, table, indexes):
    """``CREATE TABLE`` of the shadow: the table's own definition, as
    the server shows it, with ``indexes`` added.

    The next id (``AUTO_INCREMENT``) is kept: an id of a row deleted
    before the copy is never given again (the archive tables keep ids).

    Its foreign keys lose their names: foreign key names are unique in
    a schema, and the server names them after the shadow, names that
    the swap turns into the table's.
    """
    definition = connection.execute(sa.text(
        'SHOW CREATE TABLE %s' % table)).one()[1]
    _, *body, tail = definition.splitlines()
    body = [re.sub(r'^CONSTRAINT `[^`]+` FOREIGN KEY', 'FOREIGN KEY',
                   line.strip().rstrip(',')) for line in body]
    body += ['%sKEY %s (%s)' % ('UNIQUE ' if unique else '', name,
                                online_schema.quoted(connection, columns))
             for unique, name, columns in indexes]
    return 'CREATE TABLE %s (\n  %s\n%s' % (
        shadow_name(table), ',\n  '.join(body), tail)


def create_shadow(connection, table, indexes):
    """The empty shadow with ``indexes``, in one statement: creating a
    table with a foreign key aborts no client's transaction on the
    referenced table, adding one to an existing table does."""
    connection.execute(sa.text(_shadow_definition(connection, table,
                                                  indexes)))


def _live_duplicate_of(row, unique_columns):
    """SQL: the shadow's other live rows with ``row``'s unique key."""
    return ' AND '.join(['%s = %s.%s' % (c, row, c)
                         for c in unique_columns if c != 'deleted'] +
                        ['deleted = 0', 'id <> %s.id' % row])


def create_triggers(connection, table, columns, unique_columns):
    """Mirror every write to ``table`` into the shadow.

    A live row written now is the newest of its unique key: any other
    live row of that key in the shadow is soft-deleted first, as the
    de-duplication would have done, then the row is written by id.

    The row is first simply inserted, and looked for by its key only
    when that fails (its copy, or a live row of its key, is there).
    Looking first would lock the shadow's gap where the key would be
    (InnoDB's next-key locks), and the copy's chunks insert rows in
    every such gap: on a Galera node the chunk arriving from db sync's
    node aborts the client statement holding the gap (a client insert
    or update failed so once or twice per 100,000 instances). An
    insert that succeeds locks no gap, and a key that is found locks
    only its rows.
    """
    shadow = shadow_name(table)
    quoted = [online_schema.quoted(connection, [c]) for c in columns]
    unique = [online_schema.quoted(connection, [c]) for c in unique_columns]
    write = (
        'BEGIN'
        ' DECLARE taken INT DEFAULT 0;'
        ' DECLARE CONTINUE HANDLER FOR {duplicate_entry} SET taken = 1;'
        ' INSERT INTO {shadow} ({columns}) VALUES ({values});'
        ' IF taken THEN'
        '  IF NEW.deleted = 0 THEN'
        '   UPDATE {shadow} SET deleted = id, deleted_at = UTC_TIMESTAMP()'
        '    WHERE {duplicate};'
        '  END IF;'
        '  REPLACE INTO {shadow} ({columns}) VALUES ({values});'
        ' END IF;'
        ' END').format(
            duplicate_entry=online_schema.MYSQL_DUPLICATE, shadow=shadow,
            duplicate=_live_duplicate_of('NEW', unique),
            columns=', '.join(quoted),
            values=', '.join('NEW.%s' % c for c in quoted))
    bodies = {
        'insert': write,
        'update': write,
        'delete': 'DELETE FROM %s WHERE id = OLD.id' % shadow,
    }
    for event in _TRIGGER_EVENTS:
        connection.execute(sa.text(
            'CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW %s'
            % (trigger_name(table, event), event.upper(), table,
               bodies[event])))


def _copy_chunk(connection, table, columns, low, high, report):
    """Copy the rows with ids in (low, high] that the shadow lacks.

    The rows read are share-locked until the chunk commits, so that a
    delete or update of one waits for the copy (on another node, aborts
    the copy, which is sent again) and its trigger then finds the row in
    the shadow: a stale copy never overwrites what a trigger wrote.

      INSERT INTO _t_new (...) SELECT ... FROM t FORCE INDEX (PRIMARY)
       WHERE id > :low AND id <= :high LOCK IN SHARE MODE
      ON DUPLICATE KEY UPDATE id = _t_new.id   -- no change
    """
    sync_waits.run_when_table_free(connection,
                                   chunk_statement(connection, table, columns),
                                   '%s rows' % table, report,
                                   {'low': low, 'high': high})


def chunk_statement(connection, table, columns):
    """The statement that copies a chunk, ids in (:low, :high]."""
    names = online_schema.quoted(connection, columns)
    return sa.text(
        'INSERT INTO {shadow} ({names}) SELECT {names} FROM {table}'
        ' FORCE INDEX (PRIMARY) WHERE id > :low AND id <= :high'
        ' LOCK IN SHARE MODE'
        ' ON DUPLICATE KEY UPDATE id = {shadow}.id'.format(
            shadow=shadow_name(table), names=names, table=table))


def _missing_ids(connection, table, low, high):
    """Ids in (low, high] of the table's rows that the shadow lacks."""
    return connection.execute(sa.text(
        'SELECT t.id FROM {table} t LEFT JOIN {shadow} s ON s.id = t.id'
        ' WHERE t.id > :low AND t.id <= :high AND s.id IS NULL'.format(
            table=table, shadow=shadow_name(table))),
        {'low': low, 'high': high}).scalars().all()


# Attempts at placing one row that met a live duplicate: each is only
# repeated when a client's write changed the pair meanwhile.
PLACE_ATTEMPTS = 10


def _place_duplicate(connection, table, columns, unique_columns, row_id):
    """Copy row ``row_id``, which met a live row of its unique key in the
    shadow: the newer of the two stays live, the other is soft-deleted
    (deleted = id), as the de-duplication decides."""
    shadow = shadow_name(table)
    quoted = online_schema.quoted(connection, columns)
    key = [c for c in unique_columns if c != 'deleted']
    for _ in range(PLACE_ATTEMPTS):
        row = connection.execute(sa.text(
            'SELECT * FROM %s WHERE id = :id' % table), {'id': row_id}).first()
        if row is None or connection.execute(sa.text(
                'SELECT 1 FROM %s WHERE id = :id' % shadow),
                {'id': row_id}).scalar():
            return
        live = connection.execute(sa.text(
            'SELECT id, created_at, updated_at FROM {shadow} WHERE {where}'
            .format(shadow=shadow, where=' AND '.join(
                ['%s = :%s' % (online_schema.quoted(connection, [c]), c)
                 for c in key] + ['deleted = 0', 'id <> :id']))),
            dict({c: row._mapping[c] for c in key}, id=row_id)).first()
        now = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None)
        values = dict(row._mapping)
        if live is not None and row.deleted == 0:
            if (sysmeta_dedup.newest_first(live) >
                    sysmeta_dedup.newest_first(row)):
                values.update(deleted=row_id, deleted_at=now)
            else:
                connection.execute(sa.text(
                    'UPDATE %s SET deleted = id, deleted_at = :now'
                    ' WHERE id = :id AND deleted = 0' % shadow),
                    {'now': now, 'id': live.id})
        try:
            connection.execute(sa.text(
                'INSERT INTO %s (%s) VALUES (%s)' % (
                    shadow, quoted, ', '.join(':%s' % c for c in columns))),
                values)
            return
        except sa.exc.IntegrityError:
            continue   # a client wrote the pair meanwhile: look again
    # Swapping now would lose the row: stop, the rerun copies again.
    raise exception.MigrationError(reason=(
        'row %d of %s could not be copied: clients kept writing its key '
        '%d times while it was placed; run db sync again' % (
            row_id, table, PLACE_ATTEMPTS)))


def next_chunk_size(size, seconds):
    """The ids of the chunk after one of ``size`` ids that took
    ``seconds``: scaled towards CHUNK_SECONDS, at most halved or doubled
    at a time, within MIN_CHUNK and COPY_CHUNK."""
    factor = CHUNK_SECONDS / max(seconds, 1e-6)
    return int(min(COPY_CHUNK, max(MIN_CHUNK,
                                   size * min(2.0, max(0.5, factor)))))


def rebuild(connection, table, indexes, unique_columns, report=None):
    """Give ``table`` the ``indexes`` [(unique, name, columns)] by
    copying it into a shadow that has them, then swapping the two.

    ``unique_columns``: the unique key (ending in ``deleted``) that live
    duplicates are resolved for. Call drop_leftovers first.
    """
    columns = columns_of(connection, table)
    rows = online_schema.table_rows(connection, table)
    progress = online_schema.Progress(report, rows)
    progress.say('copying %s into a table with %s (about %d rows)', table,
                 ', '.join(name for _, name, _ in indexes), rows, force=True)
    create_shadow(connection, table, indexes)
    create_triggers(connection, table, columns, unique_columns)
    # Read after the triggers exist: a row written after this is theirs.
    low, high = connection.execute(sa.text(
        'SELECT min(id) - 1, max(id) FROM %s' % table)).one()
    start, high, size = low or 0, high or 0, COPY_CHUNK
    while start < high:
        end = min(start + size, high)
        began = time.monotonic()
        _copy_chunk(connection, table, columns, start, end, report)
        size = next_chunk_size(size, time.monotonic() - began)
        for row_id in _missing_ids(connection, table, start, end):
            _place_duplicate(connection, table, columns, unique_columns,
                             row_id)
        progress.say('  copied ids up to %d of %d', end, high)
        start = end
    connection.execute(sa.text('RENAME TABLE {table} TO {old},'
                               ' {shadow} TO {table}'.format(
                                   table=table, old=old_name(table),
                                   shadow=shadow_name(table))))
    # The old table takes its triggers with it.
    _drop_table(connection, old_name(table))
    progress.say('copied %s; its new indexes are in place', table,
                 force=True)
