"""InstanceMapping: which cell holds an instance."""

import sqlalchemy as sa

from nova.db.api import api as api_db
from nova.db.api import models
from nova.db import transactions
from nova.db import utils as db_utils
from nova import exception
from nova.objects import base
from nova.objects import cell_mapping as cell_mapping_obj

MAPPINGS = models.INSTANCE_MAPPINGS
CELLS = models.CELL_MAPPINGS


class InstanceMapping(base.ChangeTracking):
    FIELDS = ('id', 'instance_uuid', 'cell_mapping', 'project_id', 'user_id',
              'queued_for_delete', 'created_at', 'updated_at')

    @classmethod
    def get_by_instance_uuid(cls, context, instance_uuid):
        """The mapping, with its cell; InstanceMappingNotFound if none."""
        row, cell_row = _mapping_get(context, instance_uuid)
        if row is None:
            raise exception.InstanceMappingNotFound(uuid=instance_uuid)
        mapping = cls(context)
        mapping._load_row(row)
        object.__setattr__(
            mapping, 'cell_mapping',
            cell_mapping_obj.CellMapping._from_row(context, cell_row)
            if cell_row else None)
        return mapping

    def create(self):
        values = {name: getattr(self, name) for name in self.obj_what_changed()
                  if name != 'cell_mapping'}
        if self.cell_mapping is not None:
            values['cell_id'] = self.cell_mapping.id
        values.setdefault('queued_for_delete', False)
        _mapping_create(self._context, values)
        self.obj_reset_changes()


@api_db.reader
def _mapping_get(context, instance_uuid):
    row = context.session.execute(sa.select(MAPPINGS).where(
        MAPPINGS.c.instance_uuid == instance_uuid)).first()
    if row is None:
        return None, None
    cell_row = None
    if row.cell_id is not None:
        cell_row = context.session.execute(sa.select(CELLS).where(
            CELLS.c.id == row.cell_id)).first()
    return dict(row._mapping), dict(cell_row._mapping) if cell_row else None


@api_db.writer
def _mapping_create(context, values):
    context.session.execute(MAPPINGS.insert().values(deleted=0, **values))


@api_db.writer
def map_instances(context, cell_mapping, instances):
    """Map ``instances`` (dicts of uuid, project_id, user_id) to a cell.

    Instances already mapped are left alone; returns how many new
    mappings were written. Insert-if-absent, so a concurrent run cannot
    make a duplicate.
    """
    uuids = [inst['uuid'] for inst in instances]
    # SELECT instance_uuid FROM instance_mappings WHERE instance_uuid IN (...)
    mapped = set(context.session.execute(
        sa.select(MAPPINGS.c.instance_uuid)
        .where(MAPPINGS.c.instance_uuid.in_(uuids))).scalars()) \
        if uuids else set()
    rows = [{'instance_uuid': inst['uuid'], 'cell_id': cell_mapping.id,
             'project_id': inst['project_id'] or '',
             'user_id': inst['user_id'], 'queued_for_delete': False,
             'deleted': 0}
            for inst in instances if inst['uuid'] not in mapped]
    if rows:
        stmt = db_utils.insert_if_absent(transactions.backend(context),
                                         MAPPINGS)
        context.session.execute(stmt, rows)
    return len(rows)
