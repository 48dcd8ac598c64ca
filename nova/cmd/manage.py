"""nova-manage: database, cell and machine type administration.

Each command returns its exit code; the codes are documented in
doc/source/cli/nova-manage.rst and each one has a test.
"""

import sys
import uuid as uuid_lib

import prettytable

from nova.cmd import common
from nova.cmd.common import args
from nova import context
import nova.conf
from nova.db.main import api as main_db
from nova.db import migration
from nova.db import utils as db_utils
from nova import exception
from nova import objects
from nova.objects import cell_mapping as cell_mapping_obj
from nova.objects import host_mapping as host_mapping_obj
from nova.objects import instance_mapping as instance_mapping_obj

CONF = nova.conf.CONF


def _print_table(headers, rows):
    table = prettytable.PrettyTable(headers)
    table.align = 'l'
    for row in rows:
        table.add_row(row)
    print(table)


class DbCommands:
    """Cell database schema (and its online data migrations)."""

    @args('--version', metavar='REVISION',
          help='Revision to upgrade to (default: the newest).')
    @args('--local_cell', action='store_true',
          help='Only sync [database], not cell0.')
    def sync(self, version=None, local_cell=False):
        """Upgrade the cell database (and cell0) schema.

        Exit codes: 0 done (or already there), 1 error.
        """
        migration.db_sync(migration.MAIN, version=version)
        if not local_cell:
            for url in _cell0_urls():
                migration.db_sync(migration.MAIN, version=version, url=url)
        return 0

    def version(self):
        """Print the cell database's current schema revision."""
        print(migration.db_version(migration.MAIN) or 'None')
        return 0


def _cell0_urls():
    """cell0's database URL if cell0 is mapped and is not [database]."""
    ctxt = context.get_admin_context()
    try:
        cell0 = objects.CellMapping.get_by_uuid(
            ctxt, cell_mapping_obj.CELL0_UUID)
    except exception.CellMappingNotFound:
        return []
    except Exception:
        # No API database yet: db sync must work before api_db sync.
        return []
    if cell0.database_connection == CONF.database.connection:
        return []
    return [cell0.database_connection]


class ApiDbCommands:
    """API database schema."""

    @args('--version', metavar='REVISION',
          help='Revision to upgrade to (default: the newest).')
    def sync(self, version=None):
        """Upgrade the API database schema.

        Exit codes: 0 done (or already there), 1 error.
        """
        migration.db_sync(migration.API, version=version)
        return 0

    def version(self):
        """Print the API database's current schema revision."""
        print(migration.db_version(migration.API) or 'None')
        return 0


class CellV2Commands:
    """Cells: their mappings and the hosts and instances mapped to them."""

    @args('--transport-url', metavar='URL', default='none:///',
          help='Message queue URL of cell1.')
    def simple_cell_setup(self, transport_url='none:///'):
        """Create cell0 and cell1, sync their databases, map their hosts.

        Exit codes: 0 done (or already set up), 1 error.
        """
        ctxt = context.get_admin_context()
        existing = {c.uuid: c for c in objects.CellMappingList.get_all(ctxt)}
        if cell_mapping_obj.CELL0_UUID not in existing:
            objects.CellMapping(
                ctxt, uuid=cell_mapping_obj.CELL0_UUID, name='cell0',
                database_connection=_cell0_url(CONF.database.connection),
                transport_url='none:///').create()
        if not any(c.database_connection == CONF.database.connection
                   for c in existing.values()):
            objects.CellMapping(
                ctxt, uuid=str(uuid_lib.uuid4()), name='cell1',
                database_connection=CONF.database.connection,
                transport_url=transport_url).create()
        for cell in objects.CellMappingList.get_all(ctxt):
            migration.db_sync(migration.MAIN,
                              url=cell.database_connection)
        mapped = self._discover(ctxt, None)
        print('Cells ready; %d host(s) newly mapped.' % len(mapped))
        return 0

    @args('--name', required=True, help='Name of the new cell.')
    @args('--database_connection', required=True, metavar='URL',
          help='SQLAlchemy URL of the cell database.')
    @args('--transport-url', metavar='URL', default='none:///',
          help='Message queue URL of the cell.')
    def create_cell(self, name, database_connection, transport_url):
        """Map a new cell and print its UUID.

        Exit codes: 0 created, 1 error, 2 a cell with this database
        connection already exists, 127 malformed database URL.
        """
        try:
            db_utils.validate_url(database_connection)
        except ValueError as exc:
            return common.print_error(exc, common.EXIT_USAGE)
        ctxt = context.get_admin_context()
        for cell in objects.CellMappingList.get_all(ctxt):
            if cell.database_connection == database_connection:
                return common.print_error(
                    'cell %s already uses database %s'
                    % (cell.identity, cell.masked_database_connection), 2)
        cell = objects.CellMapping(
            ctxt, uuid=str(uuid_lib.uuid4()), name=name,
            database_connection=database_connection,
            transport_url=transport_url)
        cell.create()
        print(cell.uuid)
        return 0

    def list_cells(self):
        """List the cells; passwords in URLs are masked.

        Exit codes: 0.
        """
        ctxt = context.get_admin_context()
        _print_table(
            ['Name', 'UUID', 'Transport URL', 'Database Connection',
             'Disabled'],
            [[c.name, c.uuid, db_utils.mask_url(c.transport_url),
              c.masked_database_connection, c.disabled]
             for c in objects.CellMappingList.get_all(ctxt)])
        return 0

    @args('--cell_uuid', required=True, metavar='UUID',
          help='Cell whose instances to map.')
    @args('--max-count', type=int, metavar='N',
          help='Map at most N instances (default: all).')
    def map_instances(self, cell_uuid, max_count=None):
        """Map the instances of a cell that have no instance mapping yet.

        Exit codes: 0 all mapped, 1 --max-count reached and more remain,
        2 no such cell, 127 invalid --max-count.
        """
        if max_count is not None and max_count < 1:
            return common.print_error('--max-count must be at least 1',
                                      common.EXIT_USAGE)
        ctxt = context.get_admin_context()
        try:
            cell = objects.CellMapping.get_by_uuid(ctxt, cell_uuid)
        except exception.CellMappingNotFound as exc:
            return common.print_error(exc.format_message(), 2)
        mapped = 0
        with context.target_cell(ctxt, cell) as cctxt:
            for page in _instance_pages(cctxt):
                if max_count is not None:
                    page = page[:max_count - mapped]
                mapped += instance_mapping_obj.map_instances(ctxt, cell, page)
                if max_count is not None and mapped >= max_count:
                    print('%d instance(s) mapped; more may remain.' % mapped)
                    return 1
        print('%d instance(s) mapped to cell %s.' % (mapped, cell.identity))
        return 0

    @args('--cell_uuid', metavar='UUID',
          help='Only look in this cell (default: every cell).')
    @args('--verbose', action='store_true', help='Print each mapped host.')
    def discover_hosts(self, cell_uuid=None, verbose=False):
        """Map compute hosts that are not mapped to a cell yet.

        Exit codes: 0 done, 1 error, 2 no such cell.
        """
        ctxt = context.get_admin_context()
        try:
            mapped = self._discover(ctxt, cell_uuid)
        except exception.CellMappingNotFound as exc:
            return common.print_error(exc.format_message(), 2)
        for host, cell in mapped:
            if verbose:
                print('Mapped host %s to cell %s' % (host, cell.identity))
        print('%d host(s) newly mapped.' % len(mapped))
        return 0

    @staticmethod
    def _discover(ctxt, cell_uuid):
        """Map unmapped nova-compute hosts; return [(host, cell)] mapped."""
        if cell_uuid:
            cells = [objects.CellMapping.get_by_uuid(ctxt, cell_uuid)]
        else:
            cells = [c for c in objects.CellMappingList.get_all(ctxt)
                     if not c.is_cell0]
        mapped = []
        for cell in cells:
            with context.target_cell(ctxt, cell) as cctxt:
                hosts = {s.host for s in objects.ServiceList.get_by_binary(
                    cctxt, 'nova-compute')}
            for host in sorted(
                    hosts - host_mapping_obj.get_mapped_hosts(ctxt, hosts)):
                objects.HostMapping(ctxt, host=host, cell_mapping=cell).create()
                mapped.append((host, cell))
        return mapped


def _cell0_url(connection):
    """cell0's database URL: the [database] one with ``_cell0`` appended."""
    url = db_utils.validate_url(connection)
    database = url.database or 'nova'
    if url.get_backend_name() == 'sqlite':
        base, dot, ext = database.rpartition('.')
        database = '%s_cell0.%s' % (base, ext) if dot else database + '_cell0'
    else:
        database += '_cell0'
    return url.set(database=database).render_as_string(hide_password=False)


def _instance_pages(cctxt, page_size=1000):
    """Yield pages of (uuid, project_id, user_id) dicts of a cell's instances."""
    marker = None
    while True:
        rows = main_db.instance_get_page(cctxt, {}, page_size, marker)
        if not rows:
            return
        yield rows
        marker = rows[-1]['id']


CATEGORIES = {
    'api_db': ApiDbCommands,
    'cell_v2': CellV2Commands,
    'db': DbCommands,
}


def main(argv=None):
    sys.exit(common.run('nova-manage', CATEGORIES, argv))
