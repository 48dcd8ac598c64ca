"""CellMapping: where a cell's database is."""

import sqlalchemy as sa

from nova.db.api import api as api_db
from nova.db.api import models
from nova.db import utils as db_utils
from nova import exception
from nova.objects import base

CELLS = models.CELL_MAPPINGS
CELL0_UUID = '00000000-0000-0000-0000-000000000000'


class CellMapping(base.ChangeTracking):
    FIELDS = ('id', 'uuid', 'name', 'transport_url', 'database_connection',
              'disabled', 'created_at', 'updated_at')

    @property
    def identity(self):
        """How messages name the cell: "name (uuid)" or the uuid alone."""
        return '%s (%s)' % (self.name, self.uuid) if self.name else self.uuid

    @property
    def masked_database_connection(self):
        return db_utils.mask_url(self.database_connection)

    @property
    def is_cell0(self):
        return self.uuid == CELL0_UUID

    @classmethod
    def _from_row(cls, context, row):
        cell = cls(context)
        cell._load_row(row)
        return cell

    @classmethod
    def get_by_uuid(cls, context, uuid):
        row = _cell_get_by_uuid(context, uuid)
        if row is None:
            raise exception.CellMappingNotFound(uuid=uuid)
        return cls._from_row(context, row)

    def create(self):
        values = {name: getattr(self, name)
                  for name in self.obj_what_changed()}
        values.setdefault('disabled', False)
        self._load_row(_cell_create(self._context, values))

    def __repr__(self):
        return 'CellMapping(%s, %s)' % (self.identity,
                                        self.masked_database_connection)


class CellMappingList:
    @staticmethod
    def get_all(context):
        """Every cell, cell0 first, then by name."""
        return [CellMapping._from_row(context, row)
                for row in _cell_get_all(context)]


@api_db.reader
def _cell_get_by_uuid(context, uuid):
    row = context.session.execute(
        sa.select(CELLS).where(CELLS.c.uuid == uuid)).first()
    return dict(row._mapping) if row else None


@api_db.reader
def _cell_get_all(context):
    # cell0 (all zeros) sorts first; then by name for a stable listing.
    query = sa.select(CELLS).order_by(
        sa.case((CELLS.c.uuid == CELL0_UUID, 0), else_=1),
        CELLS.c.name, CELLS.c.id)
    return [dict(r._mapping) for r in context.session.execute(query)]


@api_db.writer
def _cell_create(context, values):
    context.session.execute(CELLS.insert().values(deleted=0, **values))
    return _cell_get_by_uuid(context, values['uuid'])
