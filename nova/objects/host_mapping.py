"""HostMapping: which cell a compute host belongs to."""

import sqlalchemy as sa

from nova.db.api import api as api_db
from nova.db.api import models
from nova import exception
from nova.objects import base
from nova.objects import cell_mapping as cell_mapping_obj

HOSTS = models.HOST_MAPPINGS
CELLS = models.CELL_MAPPINGS


class HostMapping(base.ChangeTracking):
    FIELDS = ('id', 'host', 'cell_mapping', 'created_at', 'updated_at')

    @classmethod
    def get_by_host(cls, context, host):
        row = _host_mapping_get(context, host)
        if row is None:
            raise exception.HostMappingNotFound(name=host)
        mapping = cls(context)
        mapping._load_row(row)
        object.__setattr__(mapping, 'cell_mapping',
                           cell_mapping_obj.CellMapping.get_by_uuid(
                               context, row['cell_uuid']))
        return mapping

    def create(self):
        _host_mapping_create(self._context, self.host, self.cell_mapping.id)
        self.obj_reset_changes()


@api_db.reader
def _host_mapping_get(context, host):
    row = context.session.execute(
        sa.select(HOSTS, CELLS.c.uuid.label('cell_uuid'))
        .join(CELLS, CELLS.c.id == HOSTS.c.cell_id)
        .where(HOSTS.c.host == host)).first()
    return dict(row._mapping) if row else None


@api_db.reader
def get_mapped_hosts(context, hosts):
    """The subset of ``hosts`` that already has a host mapping."""
    if not hosts:
        return set()
    return set(context.session.execute(
        sa.select(HOSTS.c.host).where(HOSTS.c.host.in_(list(hosts))))
        .scalars())


@api_db.writer
def _host_mapping_create(context, host, cell_id):
    context.session.execute(HOSTS.insert().values(
        host=host, cell_id=cell_id, deleted=0))
