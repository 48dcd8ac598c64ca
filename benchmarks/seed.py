"""Seed a cell database (and its instance mappings) with N instances, fast.

The shape follows a real cloud in the middle of the upgrade:
about ten system metadata rows per instance (image_* properties, flavor
keys), 70% of instances with a recorded hw_machine_type and 30% without,
5% shelved offloaded (no host), 2% deleted, spread over 1,000 hosts.

Rows are written with bulk multi-row INSERTs in chunks inside one
transaction per chunk, with explicit ids so that soft-deleted rows can
carry ``deleted = id`` without a second pass.

    python -m benchmarks.seed --cell-url URL --api-url URL -n 100000
"""

import argparse
import datetime
import time
import uuid as uuid_lib

import sqlalchemy as sa

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


def _sysmeta(uuid, i, machine_type, deleted_id, now):
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
    return [{'instance_uuid': uuid, 'key': key, 'value': value,
             'created_at': now, 'deleted': deleted_id}
            for key, value in image_props.items()]


def seed(cell_url, api_url, count, cell_uuid=None, start=0, log=print,
         shape=instance_shape):
    """Insert ``count`` instances (ids start+1...) and their mappings.

    ``shape(i)`` gives the i-th instance's (vm_state, host, machine type,
    deleted), instance_shape by default; the benchmark passes others for
    the instances of one host or the stopped ones of a bulk update.
    Returns the number of system metadata rows written.
    """
    cell_engine = sa.create_engine(cell_url)
    api_engine = sa.create_engine(api_url) if api_url else None
    cell_id = None
    if api_engine is not None and cell_uuid:
        with api_engine.connect() as conn:
            cell_id = conn.execute(sa.select(CELLS.c.id).where(
                CELLS.c.uuid == cell_uuid)).scalar_one()
    now = datetime.datetime.fromisoformat(probes.SEEDED_AT)
    started = time.monotonic()
    sysmeta_rows = 0
    for chunk_start in range(start, start + count, CHUNK):
        chunk = range(chunk_start, min(chunk_start + CHUNK, start + count))
        instances, sysmeta, mappings = [], [], []
        for i in chunk:
            vm_state, host, machine_type, deleted = shape(i)
            uuid = str_uuid(i)
            instance_id = i + 1
            deleted_id = instance_id if deleted else 0
            instances.append({
                'id': instance_id, 'uuid': uuid, 'user_id': 'user',
                'project_id': 'project-%d' % (i % 100),
                'image_ref': 'image-%d' % (i % 40), 'host': host,
                'node': host, 'vm_state': vm_state,
                'architecture': 'x86_64', 'created_at': now,
                'deleted': deleted_id})
            sysmeta.extend(_sysmeta(uuid, i, machine_type, deleted_id, now))
            mappings.append({'instance_uuid': uuid, 'cell_id': cell_id,
                             'project_id': 'project-%d' % (i % 100),
                             'deleted': 0})
        with cell_engine.begin() as conn:
            conn.execute(INSTANCES.insert(), instances)
            conn.execute(SYSMETA.insert(), sysmeta)
        if api_engine is not None:
            with api_engine.begin() as conn:
                conn.execute(MAPPINGS.insert(), mappings)
        sysmeta_rows += len(sysmeta)
        done = chunk.stop - start
        if done % (CHUNK * 20) == 0 or done == count:
            elapsed = time.monotonic() - started
            log('seeded %d/%d instances (%.0f/s)' % (done, count,
                                                     done / elapsed))
    cell_engine.dispose()
    if api_engine is not None:
        api_engine.dispose()
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
