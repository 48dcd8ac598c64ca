"""nova-manage api_db, db and cell_v2: results, exit codes, bad input.

Commands run in-process through ``nova.cmd.manage.main``; the bad-input
cases also run as real processes to show there is no traceback.
"""

import contextlib
import io
import os
import subprocess
import sys
import uuid as uuid_lib

import fixtures
import sqlalchemy as sa

from nova.cmd import manage
from nova import config
from nova.db import migration
from nova import objects
from nova.objects import cell_mapping as cell_mapping_obj
from nova.tests import fixtures as nova_fixtures

NOVA_MANAGE = os.path.join(os.path.dirname(sys.executable), 'nova-manage')
SECRET = 's3cr3t-pw'


class ManageTestMixin:
    """Run nova-manage with a config file of the test's own."""

    # The databases reached as the commands reach them.
    DIRECT_TRANSACTIONS = True

    def write_config(self, **sections):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        sections.setdefault('DEFAULT', {}).setdefault(
            'state_path', self.conf_fixture.state_path)
        config.write_config_file(path, sections)
        return path

    def write_cell_config(self, **sections):
        """A config file pointing at the test's API and first cell database.

        ``sections`` adds or overrides sections, as for write_config.
        """
        sections.setdefault('database', {'connection': self.db.cell_urls[0]})
        sections.setdefault('api_database', {'connection': self.db.api_url})
        return self.write_config(**sections)

    def manage(self, *argv, config_file=None):
        """Run nova-manage in-process; return (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        argv = list(argv)
        if config_file:
            argv = ['--config-file', config_file] + argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                manage.main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code
        return code, out.getvalue(), err.getvalue()

    def manage_process(self, *argv, config_file=None):
        """Run the nova-manage console script; return the CompletedProcess."""
        cmd = [NOVA_MANAGE]
        if config_file:
            cmd += ['--config-file', config_file]
        return subprocess.run(cmd + list(argv), capture_output=True,
                              text=True, timeout=120)

    def assertOneLineError(self, stderr):
        lines = [line for line in stderr.splitlines()
                 if line.startswith('ERROR:')]
        self.assertEqual(1, len(lines), stderr)
        self.assertNotIn('Traceback', stderr)
        return lines[0]


class DbSyncTests(ManageTestMixin, nova_fixtures.TestCase):
    DATABASE = None
    BACKEND = 'sqlite'

    def setUp(self):
        super().setUp()
        self.cell_url = self.useFixture(
            nova_fixtures.Database(self, self.BACKEND, 'cell')).url
        self.api_url = self.useFixture(
            nova_fixtures.Database(self, self.BACKEND, 'api')).url
        self.config_file = self.write_config(
            database={'connection': self.cell_url},
            api_database={'connection': self.api_url})

    def _tables(self, url):
        engine = sa.create_engine(url)
        try:
            return sorted(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    def test_sync_and_version_of_both_databases(self):
        for category in ('api_db', 'db'):
            self.assertEqual((0, 'None\n', ''), self.manage(
                category, 'version', config_file=self.config_file))
            self.assertEqual(0, self.manage(
                category, 'sync', config_file=self.config_file)[0])
        self.assertEqual(
            (0, migration.head_revision(migration.MAIN) + '\n', ''),
            self.manage('db', 'version', config_file=self.config_file))
        self.assertEqual(
            (0, migration.head_revision(migration.API) + '\n', ''),
            self.manage('api_db', 'version', config_file=self.config_file))
        self.assertIn('host_machine_types', self._tables(self.cell_url))
        self.assertIn('cell_mappings', self._tables(self.api_url))

    def test_sync_to_version_then_second_sync_is_no_op(self):
        code, _, _ = self.manage('db', 'sync', '--version', '001_baseline',
                                 config_file=self.config_file)
        self.assertEqual(0, code)
        self.assertEqual('001_baseline\n', self.manage(
            'db', 'version', config_file=self.config_file)[1])
        self.assertNotIn('host_machine_types', self._tables(self.cell_url))
        for _ in range(2):
            self.assertEqual(0, self.manage(
                'db', 'sync', config_file=self.config_file)[0])
        self.assertIn('host_machine_types', self._tables(self.cell_url))

    def test_unknown_version_is_one_line_error_and_writes_nothing(self):
        proc = self.manage_process('db', 'sync', '--version', 'bogus',
                                   config_file=self.config_file)
        self.assertEqual(1, proc.returncode)
        line = self.assertOneLineError(proc.stderr)
        self.assertIn('bogus', line)
        self.assertEqual([], self._tables(self.cell_url))


class DbErrorTests(ManageTestMixin, nova_fixtures.TestCase):
    DATABASE = None

    def test_unreachable_database_masks_password(self):
        url = ('mysql+pymysql://nova:%s@127.0.0.1:1/nova' % SECRET)
        config_file = self.write_config(
            database={'connection': url, 'max_retries': 0},
            api_database={'connection': url, 'max_retries': 0})
        for category in ('db', 'api_db'):
            proc = self.manage_process(category, 'sync',
                                       config_file=config_file)
            self.assertEqual(1, proc.returncode)
            line = self.assertOneLineError(proc.stderr)
            self.assertIn('127.0.0.1', line)
            self.assertNotIn(SECRET, proc.stdout + proc.stderr)

    def test_malformed_connection_url(self):
        config_file = self.write_config(
            database={'connection': 'not a url at all'})
        proc = self.manage_process('db', 'sync', config_file=config_file)
        self.assertEqual(1, proc.returncode)
        self.assertIn('malformed database connection URL',
                      self.assertOneLineError(proc.stderr))

    def test_unknown_driver_in_url(self):
        config_file = self.write_config(
            database={'connection': 'nosuchdb://u:%s@h/db' % SECRET})
        proc = self.manage_process('db', 'version', config_file=config_file)
        self.assertEqual(1, proc.returncode)
        line = self.assertOneLineError(proc.stderr)
        self.assertIn('nosuchdb', line)
        self.assertNotIn(SECRET, proc.stderr)

    def test_missing_config_file(self):
        proc = self.manage_process('db', 'version',
                                   config_file='/nonexistent/nova.conf')
        self.assertEqual(1, proc.returncode)
        self.assertIn('/nonexistent/nova.conf',
                      self.assertOneLineError(proc.stderr))

    def test_bad_hw_machine_type_config_refused(self):
        config_file = self.write_config(libvirt={'hw_machine_type': 'x86_64'})
        proc = self.manage_process('db', 'version', config_file=config_file)
        self.assertEqual(1, proc.returncode)
        self.assertIn("'x86_64' is not of the form arch=machine_type",
                      self.assertOneLineError(proc.stderr))

    def test_unknown_command_is_usage_error(self):
        proc = self.manage_process('db', 'frobnicate')
        self.assertEqual(127, proc.returncode)
        self.assertIn('invalid choice', proc.stderr)
        self.assertNotIn('Traceback', proc.stderr)


class CellV2Tests(ManageTestMixin, nova_fixtures.TestCase):
    """cell_v2 commands on an API database with one cell already mapped."""

    def setUp(self):
        super().setUp()
        self.config_file = self.write_cell_config()

    def test_create_cell_and_list_masks_password(self):
        url = 'mysql+pymysql://nova:%s@db.example/nova_cell2' % SECRET
        code, out, err = self.manage(
            'cell_v2', 'create_cell', '--name', 'cell2',
            '--database_connection', url, config_file=self.config_file)
        self.assertEqual((0, ''), (code, err))
        new_uuid = out.strip()
        # A UUID in its canonical form (UUID() raises on anything else).
        self.assertEqual(str(uuid_lib.UUID(new_uuid)), new_uuid)
        code, out, _ = self.manage('cell_v2', 'list_cells',
                                   config_file=self.config_file)
        self.assertEqual(0, code)
        self.assertIn(new_uuid, out)
        self.assertIn('nova:***@db.example/nova_cell2', out)
        self.assertNotIn(SECRET, out)

    def test_create_cell_twice_with_same_database_is_exit_2(self):
        code, _, err = self.manage(
            'cell_v2', 'create_cell', '--name', 'again',
            '--database_connection', self.db.cell_urls[0],
            config_file=self.config_file)
        self.assertEqual(2, code)
        self.assertIn('cell1', self.assertOneLineError(err))
        self.assertEqual(1, len(objects.CellMappingList.get_all(
            self.context)))

    def test_create_cell_with_malformed_url_is_usage_error(self):
        code, _, err = self.manage(
            'cell_v2', 'create_cell', '--name', 'bad',
            '--database_connection', '::nonsense',
            config_file=self.config_file)
        self.assertEqual(127, code)
        self.assertOneLineError(err)
        self.assertEqual(1, len(objects.CellMappingList.get_all(
            self.context)))

    def test_simple_cell_setup_creates_cell0_and_is_idempotent(self):
        if self.DATABASE != 'sqlite':
            # As in a deployment, the operator creates cell0's database on a
            # server; nova-manage creates its schema.
            cell0_db = sa.engine.make_url(
                manage._cell0_url(self.db.cell_urls[0])).database
            self.useFixture(nova_fixtures.Database(
                self, self.DATABASE, db_name=cell0_db))
        for _ in range(2):
            code, out, err = self.manage('cell_v2', 'simple_cell_setup',
                                         config_file=self.config_file)
            self.assertEqual((0, ''), (code, err))
        cells = objects.CellMappingList.get_all(self.context)
        self.assertEqual([cell_mapping_obj.CELL0_UUID, self.cells[0].uuid],
                         [c.uuid for c in cells])
        self.assertEqual(migration.head_revision(migration.MAIN),
                         migration.db_version(
                             migration.MAIN,
                             url=cells[0].database_connection))

    def test_map_instances(self):
        ctxt = self.cell_context()
        made = [self.create_instance(ctxt, map_instance=False)
                for _ in range(3)]
        cell = self.cells[0].uuid
        code, out, _ = self.manage('cell_v2', 'map_instances', '--cell_uuid',
                                   cell, '--max-count', '2',
                                   config_file=self.config_file)
        self.assertEqual(1, code, out)
        code, out, _ = self.manage('cell_v2', 'map_instances', '--cell_uuid',
                                   cell, config_file=self.config_file)
        self.assertEqual(0, code)
        self.assertIn('1 instance(s) mapped', out)
        for inst in made:
            mapping = objects.InstanceMapping.get_by_instance_uuid(
                self.context, inst.uuid)
            self.assertEqual(cell, mapping.cell_mapping.uuid)

    def test_map_instances_bad_input(self):
        code, _, err = self.manage(
            'cell_v2', 'map_instances', '--cell_uuid', str(uuid_lib.uuid4()),
            config_file=self.config_file)
        self.assertEqual(2, code)
        self.assertIn('has no mapping', self.assertOneLineError(err))
        code, _, err = self.manage(
            'cell_v2', 'map_instances', '--cell_uuid', self.cells[0].uuid,
            '--max-count', '0', config_file=self.config_file)
        self.assertEqual(127, code)
        code, _, err = self.manage(
            'cell_v2', 'map_instances', '--cell_uuid', self.cells[0].uuid,
            '--max-count', 'ten', config_file=self.config_file)
        self.assertEqual(127, code)

    def test_discover_hosts_maps_each_compute_host_once(self):
        ctxt = self.cell_context()
        for host in ('compute1', 'compute2'):
            objects.Service.register(ctxt, host, 'nova-compute')
        code, out, _ = self.manage('cell_v2', 'discover_hosts', '--verbose',
                                   config_file=self.config_file)
        self.assertEqual(0, code)
        self.assertIn('Mapped host compute1 to cell cell1', out)
        self.assertIn('2 host(s) newly mapped', out)
        code, out, _ = self.manage('cell_v2', 'discover_hosts',
                                   config_file=self.config_file)
        self.assertEqual((0, '0 host(s) newly mapped.\n'), (code, out))
        self.assertEqual(self.cells[0].uuid, objects.HostMapping.get_by_host(
            self.context, 'compute2').cell_mapping.uuid)

    def test_discover_hosts_unknown_cell(self):
        code, _, err = self.manage(
            'cell_v2', 'discover_hosts', '--cell_uuid', str(uuid_lib.uuid4()),
            config_file=self.config_file)
        self.assertEqual(2, code)
        self.assertOneLineError(err)
