"""The cross-cell commands with one cell stopped and one locked (issue 13).

Three cells on MariaDB or PostgreSQL: cell1 answers; cell2's mapping
points at a port of 127.0.0.1 nothing listens on (its server is
stopped: every connection is refused); a session of the test holds a
lock on cell3's ``instances`` table for as long as the command runs.
Each console script must end within [DEFAULT]cell_timeout (TIMEOUT
here) plus MARGIN, exit with its documented code, report cell1 in full
and name cell2 and cell3. Before the fix, the commands that wait for
every cell never ended, nova-status took one time-out per check and the
parallel ones never exited after printing.
"""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time

import fixtures
import sqlalchemy as sa

from nova.cmd import status
from nova import config
from nova import context as nova_context
from nova.db import utils as db_utils
from nova import objects
from nova.tests import fixtures as nova_fixtures

BIN = os.path.dirname(sys.executable)
# [DEFAULT]cell_timeout of the commands: short, so that the tests are.
TIMEOUT = 5
# Beyond TIMEOUT: a console script's start-up on a loaded machine. A
# command that waits for a locked cell waits for ever (MariaDB's table
# lock wait is a day), so any bound of minutes tells the two apart.
MARGIN = 40
# A command still running after this is killed and fails the test.
KILL_AFTER = 300
KEY = 'hw_machine_type'


def free_port():
    """A port of 127.0.0.1 that nothing listens on (just released)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class CellFailureTestCase(nova_fixtures.TestCase):
    """Three cells: cell1 answers, cell2 is stopped, cell3 locked."""

    DATABASE = None   # set by the backend variants below
    CELLS = 3
    DB_PREFIX = 'cellsbench'

    def setUp(self):
        super().setUp()
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        cell1 = self.cell_context(0)
        # What each command finds in cell1: a stopped instance recorded
        # as pc-q35-7.2 (bulk update), an offloaded one with nothing
        # recorded (listing, online migration).
        self.recorded = self.create_instance(
            cell1, vm_state='stopped', host='compute1',
            system_metadata={KEY: 'pc-q35-7.2'})
        self.unrecorded = self.create_instance(
            cell1, vm_state='shelved_offloaded', host=None)
        self.healthy, self.stopped, self.locked = self.cells
        self.point_at(self.stopped, sa.engine.make_url(
            self.db.cell_urls[1]).set(port=free_port()))
        self.lock_instances(self.db.cell_urls[2])

    def point_at(self, cell, url):
        """Map ``cell`` to ``url`` (a server that is not there)."""
        engine = sa.create_engine(self.db.api_url)
        self.addCleanup(engine.dispose)
        with engine.begin() as conn:
            # UPDATE cell_mappings SET database_connection = :url
            #  WHERE uuid = :uuid
            conn.execute(sa.text(
                'UPDATE cell_mappings SET database_connection = :url '
                'WHERE uuid = :uuid'), {
                    'url': url.render_as_string(hide_password=False),
                    'uuid': cell.uuid})

    def lock_instances(self, url):
        """Lock the ``instances`` table of ``url`` until the test ends."""
        engine = sa.create_engine(url)
        self.addCleanup(engine.dispose)
        conn = engine.connect()
        self.addCleanup(conn.close)
        if db_utils.backend_family(engine.dialect.name) == 'mysql':
            conn.exec_driver_sql('LOCK TABLES instances WRITE')
            self.addCleanup(conn.exec_driver_sql, 'UNLOCK TABLES')
        else:
            # Held until conn.close() rolls the transaction back.
            conn.exec_driver_sql(
                'LOCK TABLE instances IN ACCESS EXCLUSIVE MODE')

    def run_script(self, script, *argv):
        """Run a console script; (exit code, stdout, stderr, seconds)."""
        conf = os.path.join(self.tempdir, 'nova.conf')
        config.write_config_file(conf, {
            'DEFAULT': {'state_path': self.conf_fixture.state_path,
                        'cell_timeout': TIMEOUT,
                        'cell_connect_timeout': 2},
            'database': {'connection': self.db.cell_urls[0]},
            'api_database': {'connection': self.db.api_url},
            'libvirt': {'connection_uri': 'test:///default',
                        'virt_type': 'test'}})
        started = time.monotonic()
        done = subprocess.run([os.path.join(BIN, script), '--config-file',
                               conf, *argv], capture_output=True, text=True,
                              timeout=KILL_AFTER)
        return (done.returncode, done.stdout, done.stderr,
                time.monotonic() - started)

    def assertAnswered(self, code, result):
        """Documented code, in time, both failing cells named; stdout."""
        rc, out, err, seconds = result
        described = 'exit %d after %.1f s\nstdout:\n%s\nstderr:\n%s' % (
            rc, seconds, out[-3000:], err)
        self.assertEqual(code, rc, described)
        self.assertLess(seconds, TIMEOUT + MARGIN, described)
        for cell in (self.stopped, self.locked):
            self.assertIn(cell.uuid, out + err, described)
        self.assertNotIn('Traceback', out + err)
        return out


class CellFailureTests(CellFailureTestCase):

    def test_upgrade_check(self):
        out = self.assertAnswered(2, self.run_script(
            'nova-status', 'upgrade', 'check', '--json'))
        checks = {c['check']: c for c in json.loads(out)['checks']}
        unset = checks['hw_machine_type unset']['data']
        self.assertEqual([(self.healthy.uuid, 1)],
                         [(c['cell_uuid'], c['hostless'])
                          for c in unset['cells']])
        for name in ('unset', 'support', 'drift'):
            data = checks['hw_machine_type %s' % name]['data']
            self.assertEqual(
                sorted([self.stopped.uuid, self.locked.uuid]),
                sorted(e['cell_uuid'] for e in data['errors']))

    def test_upgrade_check_waits_for_a_cell_once(self):
        # The checks share one gather, so the locked cell costs one
        # time-out: counted, not timed (a loaded machine stretches time).
        # The stopped cell's connection is given up after two attempts
        # as in run_script's configuration, not oslo.db's default ten
        # spaced 10 s apart: the test's clean-up would wait for them.
        self.flags(cell_timeout=TIMEOUT, cell_connect_timeout=2)
        self.flags(max_retries=1, retry_interval=1, group='database')
        real = nova_context.run_in_parallel
        gathers = []

        def counted(calls, timeout):
            results = real(calls, timeout)
            gathers.append(sum(result is nova_context.did_not_respond_sentinel
                               for result in results.values()))
            return results
        self.useFixture(fixtures.MonkeyPatch(
            'nova.context.run_in_parallel', counted))
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = status.Checks().check()
        self.assertEqual(2, code, out.getvalue())
        # One gather, in which the locked cell did not answer: the
        # time-out was waited once, however slow the machine (a loaded
        # one may make the healthy cell late in that same gather too).
        self.assertEqual(1, len(gathers), gathers)
        self.assertGreaterEqual(gathers[0], 1)

    def test_list_unset_machine_type(self):
        out = self.assertAnswered(1, self.run_script(
            'nova-manage', 'libvirt', 'list_unset_machine_type',
            '--format', 'json'))
        self.assertEqual(
            [(self.unrecorded.uuid, self.healthy.uuid)],
            [(i['instance_uuid'], i['cell_uuid'])
             for i in json.loads(out)['instances']])

    def test_machine_type_summary(self):
        out = self.assertAnswered(1, self.run_script(
            'nova-manage', 'libvirt', 'machine_type_summary', '--format',
            'json'))
        [cell] = json.loads(out)['cells']
        self.assertEqual((self.healthy.uuid, 2),
                         (cell['cell_uuid'], cell['total']))

    def test_bulk_update_machine_type(self):
        for dry_run in (['--dry-run'], []):
            out = self.assertAnswered(1, self.run_script(
                'nova-manage', 'libvirt', 'bulk_update_machine_type',
                '--from', 'pc-q35-7.2', '--to', 'pc-q35-8.2', '--format',
                'json', *dry_run))
            [cell] = json.loads(out)['cells']
            self.assertEqual((self.healthy.uuid, 1),
                             (cell['cell_uuid'], cell['updated']))
        self.assertEqual('pc-q35-8.2', objects.Instance.get_by_uuid(
            self.cell_context(0), self.recorded.uuid,
            expected_attrs=['system_metadata']).system_metadata[KEY])

    def test_online_data_migrations(self):
        self.assertAnswered(2, self.run_script(
            'nova-manage', 'db', 'online_data_migrations'))
        self.assertIn(KEY, objects.Instance.get_by_uuid(
            self.cell_context(0), self.unrecorded.uuid,
            expected_attrs=['system_metadata']).system_metadata)


class SilentCellTests(CellFailureTestCase):
    """The stopped cell's server accepts connections and never answers.

    What a frozen server looks like: psycopg2 waits for it for ever
    without a connect time-out, and PyMySQL does once the TCP connection
    is made (its connect_timeout ends there). The commands that ask
    every cell in parallel report it after the cell time-out and exit,
    leaving its thread behind. (Those that read cells one after another,
    or wait for every cell, wait for a MariaDB cell like this one as
    long as TCP does.)
    """

    def point_at(self, cell, url):
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(('127.0.0.1', 0))
        # The kernel completes the handshakes; nothing ever accepts.
        listener.listen(16)
        super().point_at(cell, url.set(port=listener.getsockname()[1]))

    test_upgrade_check = CellFailureTests.test_upgrade_check
    test_machine_type_summary = CellFailureTests.test_machine_type_summary


for _base in (CellFailureTests, SilentCellTests):
    globals().update(nova_fixtures.backend_variants(_base))
del _base, CellFailureTestCase, CellFailureTests, SilentCellTests
