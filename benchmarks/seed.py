"""Seed a cell database (and its instance mappings) with N instances, fast.

The shape follows a real cloud in the middle of the upgrade:
about ten system metadata rows per instance (image_* properties, flavor
keys), 70% of instances with a recorded hw_machine_type and 30% without,
5% shelved offloaded (no host), 2% deleted, spread over 1,000 hosts.

Rows are written by the driver alone, the fastest way each server has
(``BulkLoader``: PostgreSQL's COPY, MariaDB's LOAD DATA LOCAL INFILE,
SQLite's executemany), CHUNK instances at a time, with explicit instance
ids so that soft-deleted rows can carry ``deleted = id`` without a
second pass. The upgrade scenario loads its own rows through the same
loader.

    python -m benchmarks.seed --cell-url URL --api-url URL -n 100000
"""

import argparse
import datetime
import io
import os
import sqlite3
import tempfile
import time
import uuid as uuid_lib

import sqlalchemy as sa

from benchmarks import clients
from benchmarks import probes
from nova.db.api import models as api_models
from nova.db.main import models as main_models

INSTANCES = main_models.INSTANCES
SYSMETA = main_models.INSTANCE_SYSTEM_METADATA
MAPPINGS = api_models.INSTANCE_MAPPINGS
CELLS = api_models.CELL_MAPPINGS

HOSTS = 1000
CHUNK = 5000
STATES = ('active',) * 80 + ('stopped',) * 10 + ('paused',) * 3 + \
    ('error',) * 2 + ('shelved',) * 5
RECORDED_TYPES = ('pc-i440fx-7.2',) * 6 + ('pc-q35-7.2',) * 3 + ('q35',)


def instance_shape(i):
    """Deterministic attributes of the i-th instance (0-based).

    Returns (vm_state, host, recorded machine type or None, deleted).
    """
    deleted = i % 50 == 7                       # 2%
    offloaded = i % 20 == 3                     # 5%
    # 70%, and 70% within each other group too: (i * 7) % 10 alone is the
    # same for every offloaded instance (i % 20 == 3), leaving none of
    # them for the online data migration.
    recorded = (i * 7 + i // 20) % 10 < 7
    vm_state = 'shelved_offloaded' if offloaded else STATES[i % len(STATES)]
    host = None if offloaded else 'compute%04d' % (i % HOSTS)
    machine_type = RECORDED_TYPES[i % len(RECORDED_TYPES)] if recorded \
        else None
    return vm_state, host, machine_type, deleted


def str_uuid(i):
    """The uuid of the i-th instance (0-based), as seeded."""
    return str(uuid_lib.UUID(int=i + 1))


def sysmeta_items(i, machine_type):
    """The i-th instance's system metadata: [(key, value)]."""
    image_props = {
        'image_disk_format': 'qcow2',
        'image_container_format': 'bare',
        'image_min_disk': '1',
        'image_min_ram': '0',
        'image_base_image_ref': 'image-%d' % (i % 40),
        'instance_type_name': 'm1.small',
        'instance_type_memory_mb': '2048',
        'instance_type_vcpus': '1',
        'instance_type_root_gb': '20',
    }
    if i % 4 == 0:
        image_props['image_hw_machine_type'] = 'q35' if i % 8 == 0 else 'pc'
    if machine_type:
        image_props['hw_machine_type'] = machine_type
    return list(image_props.items())


class BulkLoader:
    """Rows into one database by its driver alone, as fast as it goes.

    ``load(table, columns, rows)`` writes ``rows`` (tuples of values in
    ``columns``' order; None is NULL; no value holds a tab, a newline or
    a backslash) in one transaction: PostgreSQL's COPY from
    memory, with foreign key triggers off (the rows are consistent by
    construction; they halve COPY's speed; needs a superuser, as
    openstack_citest is); MariaDB's LOAD DATA LOCAL INFILE from a file
    in a temporary directory (the server must have local_infile ON);
    SQLite's executemany. ``close()`` moves PostgreSQL's id sequences
    past the explicit ids written, then closes the connection.
    """

    def __init__(self, url):
        self.dialect = clients.dialect_of(url)
        self.explicit_ids = set()
        if self.dialect == 'sqlite':
            self.conn = sqlite3.connect(sa.engine.make_url(url).database)
            self.cursor = self.conn.cursor()
        elif self.dialect == 'mysql':
            self.conn = clients.connect(url, local_infile=True)
            self.cursor = self.conn.cursor()
            self.cursor.execute('SELECT @@local_infile')
            if not self.cursor.fetchone()[0]:
                raise SystemExit('the MariaDB server has local_infile OFF: '
                                 'SET GLOBAL local_infile = 1')
            self.workdir = tempfile.TemporaryDirectory(prefix='nova-seed-')
        else:
            self.conn = clients.connect(url)
            self.cursor = self.conn.cursor()
            self.cursor.execute('SET session_replication_role = replica')

    def load(self, table, columns, rows):
        if 'id' in columns:
            self.explicit_ids.add(table)
        if self.dialect == 'sqlite':
            with self.conn:  # one transaction
                self.cursor.executemany('INSERT INTO %s (%s) VALUES (%s)' % (
                    table, ', '.join('"%s"' % c for c in columns),
                    ', '.join('?' * len(columns))), rows)
        elif self.dialect == 'mysql':
            path = os.path.join(self.workdir.name, 'rows.tsv')
            with open(path, 'w') as f:
                f.writelines(_tsv(row) for row in rows)
            self.cursor.execute(
                "LOAD DATA LOCAL INFILE %%s INTO TABLE %s "
                "CHARACTER SET utf8mb4 (%s)" % (
                    table, ', '.join('`%s`' % c for c in columns)), (path,))
        else:
            self.cursor.copy_expert('COPY %s (%s) FROM STDIN' % (
                table, ', '.join(columns)),
                io.StringIO(''.join(_tsv(row) for row in rows)))

    def close(self):
        if self.dialect == 'postgresql':
            for table in sorted(self.explicit_ids):
                self.cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                    "(SELECT max(id) FROM " + table + '))', (table,))
        if self.dialect == 'mysql':
            self.workdir.cleanup()
        self.conn.close()


def _tsv(row):
    """``row`` as a line of COPY / LOAD DATA text (tabs, \\N for NULL)."""
    return '\t'.join('\\N' if v is None else str(v) for v in row) + '\n'


INSTANCE_COLUMNS = ('id', 'uuid', 'user_id', 'project_id', 'image_ref',
                    'host', 'node', 'vm_state', 'architecture',
                    'created_at', 'deleted')
SYSMETA_COLUMNS = ('instance_uuid', 'key', 'value', 'created_at', 'deleted')
MAPPING_COLUMNS = ('instance_uuid', 'cell_id', 'project_id',
                   'queued_for_delete', 'created_at', 'deleted')


def instance_row(i, host, vm_state, deleted_id, now):
    """The i-th instance's row, in INSTANCE_COLUMNS' order."""
    return (i + 1, str_uuid(i), 'user', 'project-%d' % (i % 100),
            'image-%d' % (i % 40), host, host, vm_state, 'x86_64', now,
            deleted_id)


def seed(cell_url, api_url, count, cell_uuid=None, start=0, log=print,
         shape=instance_shape):
    """Insert ``count`` instances (ids start+1...) and their mappings.

    ``shape(i)`` gives the i-th instance's (vm_state, host, machine type,
    deleted), instance_shape by default; the benchmark passes others for
    the instances of one host or the stopped ones of a bulk update.
    Returns the number of system metadata rows written.
    """
    cell_id = None
    if api_url and cell_uuid:
        api_engine = sa.create_engine(api_url)
        with api_engine.connect() as conn:
            cell_id = conn.execute(sa.select(CELLS.c.id).where(
                CELLS.c.uuid == cell_uuid)).scalar_one()
        api_engine.dispose()
    # As SQLAlchemy writes a DateTime on SQLite (compared as text there).
    now = datetime.datetime.fromisoformat(probes.SEEDED_AT).strftime(
        '%Y-%m-%d %H:%M:%S.%f')
    started = time.monotonic()
    cell = BulkLoader(cell_url)
    api = BulkLoader(api_url) if api_url else None
    sysmeta_rows = 0
    for chunk_start in range(start, start + count, CHUNK):
        chunk = range(chunk_start, min(chunk_start + CHUNK, start + count))
        instances, sysmeta, mappings = [], [], []
        for i in chunk:
            vm_state, host, machine_type, deleted = shape(i)
            uuid = str_uuid(i)
            deleted_id = i + 1 if deleted else 0
            instances.append(instance_row(i, host, vm_state, deleted_id, now))
            sysmeta.extend((uuid, key, value, now, deleted_id)
                           for key, value in sysmeta_items(i, machine_type))
            mappings.append((uuid, cell_id, 'project-%d' % (i % 100), 0,
                             now, 0))
        cell.load('instances', INSTANCE_COLUMNS, instances)
        cell.load('instance_system_metadata', SYSMETA_COLUMNS, sysmeta)
        if api is not None:
            api.load('instance_mappings', MAPPING_COLUMNS, mappings)
        sysmeta_rows += len(sysmeta)
        done = chunk.stop - start
        if done % (CHUNK * 20) == 0 or done == count:
            elapsed = time.monotonic() - started
            log('seeded %d/%d instances (%.0f/s)' % (done, count,
                                                     done / elapsed))
    cell.close()
    if api is not None:
        api.close()
    return sysmeta_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cell-url', required=True)
    parser.add_argument('--api-url')
    parser.add_argument('--cell-uuid')
    parser.add_argument('-n', '--instances', type=int, default=100000)
    args = parser.parse_args()
    seed(args.cell_url, args.api_url, args.instances, args.cell_uuid)


if __name__ == '__main__':
    main()
