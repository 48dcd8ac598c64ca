"""nova-manage: database, cell and machine type administration.

Each command returns its exit code; the codes are documented in
doc/source/cli/nova-manage.rst and each one has a test.
"""

import argparse
import functools
import json
import sys
import threading
import time
import uuid as uuid_lib

from nova.cmd import common
from nova.cmd.common import args
from nova import context
import nova.conf
from nova.db.main import api as main_db
from nova.db import migration
from nova.db import transactions
from nova.db import utils as db_utils
from nova import exception
from nova import objects
from nova.objects import cell_mapping as cell_mapping_obj
from nova.objects import host_mapping as host_mapping_obj
from nova.objects import instance as instance_obj
from nova.objects import instance_mapping as instance_mapping_obj
from nova.virt.libvirt import machine_type_utils

CONF = nova.conf.CONF


def _print_table(headers, rows):
    # Imported here: the commands that print no table (get_machine_type,
    # update_machine_type) start faster without it.
    import prettytable
    table = prettytable.PrettyTable(headers)
    table.align = 'l'
    for row in rows:
        table.add_row(row)
    print(table)


# Nova's online data migrations, in the order they run: each is
# f(context, max_count, progress=None) -> (found, done) on the cell
# ``context`` targets (max_count None: every row), calling
# progress(found, done, remaining) after each batch (remaining None
# while it is not known).
online_migrations = (
    instance_obj.populate_missing_machine_types,
)
# A larger --max-count is a typo, not a plan.
MAX_COUNT_LIMIT = 2 ** 31 - 1
# Seconds between two progress lines of one cell's bulk update.
BULK_PROGRESS_EVERY = 5


def _max_count(value):
    """argparse type of --max-count: an integer from 1 to MAX_COUNT_LIMIT."""
    try:
        count = int(value)
    except ValueError:
        count = None
    if count is None or not 1 <= count <= MAX_COUNT_LIMIT:
        raise argparse.ArgumentTypeError(
            'must be an integer from 1 to %d, not %.40r'
            % (MAX_COUNT_LIMIT, value))
    return count


def _migration_targets(ctxt):
    """[(name, context)] of every cell; [database] when none is mapped."""
    cells = objects.CellMappingList.get_all(ctxt)
    if not cells:
        return [('[database]', ctxt)]
    targets = []
    for cell in cells:
        with context.target_cell(ctxt, cell) as cctxt:
            targets.append((cell.identity, cctxt))
    return targets


class _MigrationRun:
    """One run of online_data_migrations over cells: totals and progress."""

    def __init__(self, targets):
        self.targets = targets
        self.totals = {m.__name__: [0, 0] for m in online_migrations}
        self.failed = False
        self.last_done = 0
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def run_pass(self, batch, limit_total=False):
        """Run each migration once per cell; return the rows migrated.

        With ``limit_total`` the pass migrates at most ``batch`` rows in
        all, cell after cell. Else up to ``batch`` (None: every row) per
        migration and cell, with every cell at once in a thread of its
        own: a cell's migrations run in order, the cells side by side,
        each on its own database.
        """
        if limit_total:
            done = 0
            for migrate in online_migrations:
                for name, cctxt in self.targets:
                    if done >= batch:
                        break
                    done += self._run_one(migrate, name, cctxt, batch - done)
        else:
            # No time-out: a migration takes as long as its rows do, and
            # _run_one reports its own errors.
            done = sum(context.run_in_parallel(
                {number: functools.partial(self._run_cell, name, cctxt, batch)
                 for number, (name, cctxt) in enumerate(self.targets)},
                None).values())
        self.last_done = done
        return done

    def _run_cell(self, cell_name, cctxt, batch):
        """Every migration on one cell, in order; the rows migrated."""
        return sum(self._run_one(migrate, cell_name, cctxt, batch)
                   for migrate in online_migrations)

    def _run_one(self, migrate, cell_name, cctxt, count):
        """Run ``migrate`` for up to ``count`` rows (None: all) of one cell.

        Returns the rows migrated, including those of the batches that
        were committed before an error.
        """
        migrated = []

        def progress(found, done, remaining):
            migrated.append(done)
            self._batch_done(migrate, cell_name, found, done, remaining)
        try:
            migrate(cctxt, count, progress=progress)
        except Exception as exc:
            self.failed = True
            common.print_error('%s failed in cell %s: %s' % (
                migrate.__name__, cell_name,
                db_utils.describe_error(exc)))
        return sum(migrated)

    def _batch_done(self, migrate, cell_name, found, done, remaining):
        """Count one committed batch and print its progress line (cells
        report from their threads)."""
        with self._lock:
            totals = self.totals[migrate.__name__]
            totals[0] += found
            totals[1] += done
            rate = totals[1] / max(time.monotonic() - self._started, 1e-6)
        # A migration that does not count what is left (counting would
        # cost a pass of its own) says None until its last batch.
        left = 'more may remain' if remaining is None \
            else '%d remaining' % remaining
        print('%s in cell %s: %d rows matched, %d migrated, %s, '
              '%.0f rows/s' % (migrate.__name__, cell_name, found, done,
                               left, rate), flush=True)


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
        migration.db_sync(migration.MAIN, version=version,
                          progress=_print_progress)
        if not local_cell:
            for url in _cell0_urls():
                migration.db_sync(migration.MAIN, version=version, url=url,
                                  progress=_print_progress)
        return 0

    def version(self):
        """Print the cell database's current schema revision."""
        print(migration.db_version(migration.MAIN) or 'None')
        return 0

    @args('--max-count', type=_max_count, metavar='N',
          help='Migrate at most N rows in all, then stop (default: run '
               'batches of %d until nothing is left).'
               % instance_obj.MIGRATION_BATCH)
    def online_data_migrations(self, max_count=None):
        """Run the online data migrations on every cell.

        Exit codes: 0 nothing left to migrate, 1 --max-count given and rows
        were migrated (run again), 2 some migrations failed and nothing
        else progressed, 127 invalid --max-count.
        """
        ctxt = context.get_admin_context()
        try:
            targets = _migration_targets(ctxt)
        except Exception as exc:
            # Not 1, which tells scripts to run again.
            return common.print_error(
                'cannot list the cells: %s'
                % db_utils.describe_error(exc), 2)
        run = _MigrationRun(targets)
        if max_count is None:
            print('Running batches of %d until complete.'
                  % instance_obj.MIGRATION_BATCH)
            # One call per migration and cell walks all its rows; a row
            # it could not resolve stays, so there is no second pass.
            run.run_pass(None)
        else:
            run.run_pass(max_count, limit_total=True)
        _print_table(['Migration', 'Total Needed', 'Completed'],
                     [[name, found, done]
                      for name, (found, done) in run.totals.items()])
        if run.failed and (max_count is None or not run.last_done):
            print('Some migrations failed unexpectedly; see the errors '
                  'above.')
            return 2
        return 1 if max_count is not None and run.last_done else 0


class _BulkProgress:
    """Progress lines of a bulk update: at most one per cell every
    BULK_PROGRESS_EVERY seconds (cells run in parallel threads), on
    ``file`` (stdout; stderr when stdout carries a JSON document)."""

    def __init__(self, file=None):
        self._lock = threading.Lock()
        self._last = {}
        self._file = file

    def __call__(self, cctxt, updated):
        now = time.monotonic()
        with self._lock:
            if now - self._last.setdefault(cctxt.cell_uuid, now) < \
                    BULK_PROGRESS_EVERY:
                return
            self._last[cctxt.cell_uuid] = now
        print('Cell %s: %d instances updated so far' % (
            cctxt.cell_uuid, updated), file=self._file or sys.stdout,
            flush=True)


def _print_progress(message):
    print(message, flush=True)


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
                objects.HostMapping(ctxt, host=host,
                                    cell_mapping=cell).create()
                mapped.append((host, cell))
        return mapped


# The exit code of each refusal of the libvirt commands; any other error
# is 1 (see common.run).
_REFUSAL_EXIT_CODES = (
    (exception.InvalidUUID, 2),
    (exception.InstanceMappingNotFound, 2),
    (exception.InstanceNotFound, 2),
    (exception.CellMappingNotFound, 2),
    (exception.MachineTypeUpdateInvalidState, 3),
    (exception.InvalidMachineTypeUpdate, 4),
    (exception.MachineTypeUnsupported, 5),
)


def _refusals_to_exit_codes(func):
    """Print a refusal raised by ``func`` on one line; return its code."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except tuple(cls for cls, _ in _REFUSAL_EXIT_CODES) as exc:
            code = next(code for cls, code in _REFUSAL_EXIT_CODES
                        if isinstance(exc, cls))
            return common.print_error(exc.format_message(), code)
    return wrapper


def _print_cell_error(result):
    """Print a CellUnavailable result; return True if it was one."""
    if isinstance(result, exception.CellUnavailable):
        common.print_error(result.format_message())
        return True
    return False


# -- output for scripts (--format json) ---------------------------------------
# Each libvirt command that takes --format prints one JSON document on
# stdout (shapes in doc/source/cli/nova-manage.rst); errors stay ERROR:
# lines on stderr with the same exit codes, and a cell that did not
# answer is in the document's "errors" too.

FORMATS = ('table', 'json')


def _format_option(func):
    """The --format option of a command (its ``output_format`` argument)."""
    return args('--format', dest='output_format', choices=FORMATS,
                default='table',
                help='Output format: table (default) or json, one JSON '
                     'document on stdout for scripts.')(func)


def _print_json(document):
    print(json.dumps(document, indent=2), flush=True)


def _cell_json(cell):
    """The keys naming a cell in a JSON document."""
    return {'cell_uuid': cell.uuid, 'cell_name': cell.name}


def _error_json(cell, error):
    """A cell's entry in a document's "errors" (cell None: no cell)."""
    return dict(_cell_json(cell) if cell is not None else
                {'cell_uuid': None, 'cell_name': None},
                error=error.format_message()
                if isinstance(error, exception.NovaException) else
                db_utils.describe_error(error))


def _summary_json(counts):
    """The "counts" of a cell in machine_type_summary's document."""
    return [{'machine_type': mtype, 'vm_state': state, 'count': count}
            for (mtype, state), count in sorted(
                counts.items(), key=lambda item: (
                    item[0][0] is None, item[0][0] or '', item[0][1] or ''))]


def _print_cells_json(document, results, cell_entry):
    """Print the JSON document of a command's [(cell, result)].

    ``document`` holds the command's own keys, then gets "cells" (each
    cell's ``cell_entry(result)`` after its cell_uuid and cell_name) and
    "errors" (the cells that did not answer). A number among the
    document's own keys is the sum of the cells' entries of that key.
    An ERROR line per cell that did not answer follows on stderr.
    Returns True if some did not.
    """
    document.update(cells=[], errors=[])
    failed = []
    for cell, result in results:
        if isinstance(result, exception.CellUnavailable):
            failed.append(result)
            document['errors'].append(_error_json(cell, result))
        else:
            document['cells'].append(dict(_cell_json(cell),
                                          **cell_entry(result)))
    for key, value in document.items():
        if isinstance(value, int) and not isinstance(value, bool):
            document[key] = sum(entry[key] for entry in document['cells'])
    _print_json(document)
    for result in failed:
        common.print_error(result.format_message())
    return bool(failed)


def _stream_unset_json(chunks):
    """Write list_unset_machine_type's document as ``chunks`` arrive.

    ``chunks`` yields (cell, UUIDs or CellUnavailable). Each instance is
    written as soon as its chunk is read, so memory does not grow with
    their number; the document is closed (count and errors) whatever
    happens, so it stays valid JSON when a cell fails part-way or an
    unexpected error ends the listing (then re-raised). Returns (number
    listed, [CellUnavailable]).
    """
    out = sys.stdout
    listed, failed, errors = 0, [], []
    out.write('{\n  "instances": [')
    try:
        for cell, chunk in chunks:
            if isinstance(chunk, exception.CellUnavailable):
                failed.append(chunk)
                errors.append(_error_json(cell, chunk))
                continue
            # '"cell_uuid": ..., "cell_name": ...}' of every item.
            tail = json.dumps(_cell_json(cell))[1:]
            out.write(''.join(
                '%s\n    {"instance_uuid": %s, %s' % (
                    ',' if listed or index else '', json.dumps(uuid), tail)
                for index, uuid in enumerate(chunk)))
            out.flush()
            listed += len(chunk)
    except Exception as exc:
        errors.append(_error_json(None, exc))
        raise
    finally:
        out.write('%s],\n  "count": %d,\n  "errors": %s\n}\n' % (
            '\n  ' if listed else '', listed,
            json.dumps(errors, indent=2).replace('\n', '\n  ')))
        out.flush()
    return listed, failed


class LibvirtCommands:
    """Machine types of libvirt instances (doc: admin/hw-machine-type)."""

    @args('instance_uuid', metavar='INSTANCE_UUID')
    @_format_option
    @_refusals_to_exit_codes
    def get_machine_type(self, instance_uuid, output_format='table'):
        """Print the machine type recorded for an instance.

        With --format json: the instance, its cell, host, vm_state and
        machine type (null when none is recorded, exit code 3).
        Exit codes: 0 printed, 1 unexpected error, 2 no such instance or
        instance mapping (or not a UUID), 3 no machine type recorded.
        """
        ctxt = context.get_admin_context()
        if output_format == 'json':
            record = machine_type_utils.machine_type_record(ctxt,
                                                            instance_uuid)
            _print_json(record)
            machine_type = record['machine_type']
        else:
            machine_type = machine_type_utils.get_machine_type(
                ctxt, instance_uuid)
        if machine_type is None:
            return common.print_error(
                'No machine type is recorded for instance %s.'
                % instance_uuid, 3)
        if output_format == 'table':
            print(machine_type)
        return 0

    @args('instance_uuid', metavar='INSTANCE_UUID')
    @args('machine_type', metavar='MACHINE_TYPE')
    @args('--force', action='store_true',
          help='Skip the vm_state, family, version and host checks (never '
               'the syntax check). The guest sees other hardware at its '
               'next boot and may not boot.')
    @_refusals_to_exit_codes
    def update_machine_type(self, instance_uuid, machine_type, force=False):
        """Set or change the machine type recorded for an instance.

        With nothing recorded the checks compare with what the instance
        would be defined with (image property, configuration, default).
        Exit codes: 0 updated (or already that type), 1 unexpected error,
        2 no such instance or instance mapping, 3 vm_state not stopped,
        shelved or shelved_offloaded, 4 a change of family, between alias
        and versioned, or to an older version, 5 unsupported machine type
        (not a machine type, not of a supported family, or not supported
        by the instance's host).
        """
        ctxt = context.get_admin_context()
        new, previous = machine_type_utils.update_machine_type(
            ctxt, instance_uuid, machine_type, force=force)
        if new == previous:
            print('Instance %s already has machine type %s; nothing changed.'
                  % (instance_uuid, new))
            return 0
        if force:
            print('WARNING: --force skipped the vm_state, family, version '
                  'and host checks; the guest sees %s hardware at its next '
                  'boot.' % new, file=sys.stderr)
        print('Instance %s: machine type updated from %s to %s.'
              % (instance_uuid, previous or 'none (not recorded)', new))
        return 0

    @args('--cell-uuid', dest='cell_uuid', metavar='UUID',
          help='Only look in this cell (default: every cell).')
    @_format_option
    @_refusals_to_exit_codes
    def list_unset_machine_type(self, cell_uuid=None, output_format='table'):
        """List the instances that have no recorded machine type.

        One UUID a line, streamed: live instances that are not building.
        With --format json, one document, streamed too: the instances
        with their cell, their count and the cells that did not answer.
        Exit codes: 0 none, 1 unexpected error (a cell did not answer:
        the others are listed), 2 no such cell, 3 instances listed.
        """
        ctxt = context.get_admin_context()
        if output_format == 'json':
            listed, failed = _stream_unset_json(
                machine_type_utils.list_unset_machine_type_by_cell(
                    ctxt, cell_uuid))
            if failed:
                return common.print_error(
                    ' '.join(exc.format_message() for exc in failed))
            return 3 if listed else 0
        listed = 0
        try:
            for uuids in machine_type_utils.list_unset_machine_type(
                    ctxt, cell_uuid):
                print('\n'.join(uuids))
                listed += len(uuids)
        except exception.CellUnavailable as exc:
            return common.print_error(exc.format_message())
        return 3 if listed else 0

    @args('--from', dest='from_type', required=True, metavar='MACHINE_TYPE',
          help='Change the instances recorded with this machine type.')
    @args('--to', dest='to_type', required=True, metavar='MACHINE_TYPE',
          help='The machine type to record instead.')
    @args('--cell-uuid', dest='cell_uuid', metavar='UUID',
          help='Only change the instances of this cell (default: every '
               'cell).')
    @args('--dry-run', action='store_true',
          help='Change nothing; print what would be changed or refused.')
    @args('--force', action='store_true',
          help='Skip the vm_state, family, version and host checks (never '
               'the syntax check).')
    @_format_option
    @_refusals_to_exit_codes
    def bulk_update_machine_type(self, from_type, to_type, cell_uuid=None,
                                 dry_run=False, force=False,
                                 output_format='table'):
        """Change every instance recorded as one machine type to another.

        The rules of update_machine_type, per instance; a table per cell of
        the instances updated and refused, with the reason.
        Exit codes: 0 all updated (or nothing to do), 1 unexpected error
        (a cell did not answer: the others are done), 2 no such cell,
        3 some instances refused (the others are updated), 4 the change
        itself is refused (family, alias/versioned, older version), 5
        unsupported --to machine type or malformed --from. 3, 4 and 5
        also with --dry-run. With --format json: one document of the
        counts per cell and in all (progress lines go to stderr).
        """
        ctxt = context.get_admin_context()
        as_json = output_format == 'json'
        results = machine_type_utils.bulk_update_machine_type(
            ctxt, from_type, to_type, cell_uuid=cell_uuid, dry_run=dry_run,
            force=force, progress=_BulkProgress(
                sys.stderr if as_json else None))
        if as_json:
            return self._bulk_update_json(results, from_type, to_type,
                                          dry_run, force)
        if not results:
            print('--from and --to are both %s; nothing to do.' % to_type)
            return 0
        verb = 'would update' if dry_run else 'updated'
        failed = refused = False
        for cell, outcome in results:
            if _print_cell_error(outcome):
                failed = True
                continue
            print('Cell %s:' % cell.identity)
            _print_table(
                ['Result', 'Instances', 'Reason'],
                [[verb, outcome.updated, '']] +
                [['refused', count, reason]
                 for reason, count in sorted(outcome.refused.items())])
            refused = refused or bool(outcome.refused)
        if failed:
            return 1
        return 3 if refused else 0

    @staticmethod
    def _bulk_update_json(results, from_type, to_type, dry_run, force):
        """bulk_update_machine_type's JSON document; its exit code."""
        document = {'from': from_type, 'to': to_type, 'dry_run': dry_run,
                    'force': force, 'updated': 0, 'refused': 0}
        failed = _print_cells_json(document, results, lambda outcome: {
            'updated': outcome.updated,
            'refused': sum(outcome.refused.values()),
            'refusals': [{'reason': reason, 'count': count}
                         for reason, count in sorted(
                             outcome.refused.items())]})
        if failed:
            return 1
        return 3 if document['refused'] else 0

    @args('--cell-uuid', dest='cell_uuid', metavar='UUID',
          help='Only count the instances of this cell (default: every '
               'cell).')
    @_format_option
    @_refusals_to_exit_codes
    def machine_type_summary(self, cell_uuid=None, output_format='table'):
        """Count instances by recorded machine type and vm_state, per cell.

        For planning a change of machine type (pc to q35): "unset" counts
        the instances with nothing recorded.
        With --format json: one document of the counts per cell.
        Exit codes: 0 printed, 1 unexpected error (a cell did not answer:
        the others are printed), 2 no such cell.
        """
        ctxt = context.get_admin_context()
        results = machine_type_utils.machine_type_summary(ctxt, cell_uuid)
        if output_format == 'json':
            return _summary_document(results)
        failed = False
        for cell, counts in results:
            if _print_cell_error(counts):
                failed = True
                continue
            print('Cell %s:' % cell.identity)
            _print_summary(counts)
        return 1 if failed else 0


def _summary_document(results):
    """Print machine_type_summary's JSON document; return its exit code."""
    failed = _print_cells_json({'total': 0}, results, lambda counts: {
        'total': sum(counts.values()), 'counts': _summary_json(counts)})
    return 1 if failed else 0


def _print_summary(counts):
    """A table of {(machine type or None, vm_state): count}: types by state."""
    if not counts:
        print('No instances.')
        return
    states = sorted({state or '' for _, state in counts})
    types = sorted({mtype for mtype, _ in counts},
                   key=lambda mtype: (mtype is None, mtype or ''))
    rows = []
    for mtype in types:
        by_state = [counts.get((mtype, state or None), 0) for state in states]
        rows.append([mtype or 'unset'] + by_state + [sum(by_state)])
    _print_table(['Machine type'] + states + ['Total'], rows)


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
    """Yield pages of a cell's instances (dicts with uuid, project_id...)."""
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
    'libvirt': LibvirtCommands,
}


def main(argv=None):
    common.quiet_logging()
    # A command's transactions: plain engines, no ORM (nova.db.transactions).
    transactions.use_direct(True)
    sys.exit(common.run('nova-manage', CATEGORIES, argv))


def console_main():
    """The nova-manage console script: main(), exited at once."""
    common.console_script(main)
