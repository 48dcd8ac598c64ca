"""Outages: a database that stops mid-run, a libvirtd not yet reachable.

The database outage uses a private server (servers.py) that the test
stops in the middle of ``nova-manage db online_data_migrations``: the run
ends with one ``ERROR:`` line and its documented exit code, and so do the
commands run while the server is down; once it is back a rerun completes.
The libvirt outage points nova-compute at a socket nobody serves yet:
each attempt prints one line naming the URI, nothing is recorded, and
once a proxy to the real libvirtd serves the socket the next retry
records the live domains' machine types.
"""

import os
import signal
import uuid as uuid_lib

from nova import context
from nova.db.api import api as api_db
from nova.db.main import api as main_db
from nova.db import migration
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base
from nova.tests.functional.reliability import servers

PASSWORD = 'Outage-pw-7Hq2'
HOST = 'outage-a'
# oslo.db's default tries a server that is down at start-up for 100 s
# (10 attempts, 10 s apart) before it reports; tests do not wait for that.
NO_CONNECT_RETRIES = {'max_retries': 0}


class DatabaseOutageTests(base.ReliabilityTestCase):

    SERVER = None   # set by the variants below

    def databases(self):
        """API and cell databases on a private server, synced and mapped."""
        self.server = self.useFixture(self.SERVER(PASSWORD))
        api_url = self.server.create_database('nova_api')
        cell_url = self.server.create_database('nova_cell1')
        self.flags(connection=api_url, group='api_database')
        self.flags(connection=cell_url, group='database')
        self._forget_engines()
        self.addCleanup(self._forget_engines)
        migration.db_sync(migration.API)
        migration.db_sync(migration.MAIN, url=cell_url)
        cell = objects.CellMapping(
            self.context, uuid=str(uuid_lib.uuid4()),
            name='cell1', database_connection=cell_url,
            transport_url='none:///')
        cell.create()
        self.cells = [cell]
        return cell_url, api_url

    @staticmethod
    def _forget_engines():
        context.reset_cell_cache()
        main_db.reset()
        api_db.reset()

    def assertOneLineError(self, process, code):
        self.assertEqual(code, process.finish(), process.describe())
        lines = process.stderr.splitlines()
        self.assertEqual(1, len(lines), process.describe())
        self.assertTrue(lines[0].startswith('ERROR: '), lines[0])
        self.assertNotIn('Traceback', process.stdout + process.stderr)
        self.assertNotIn(PASSWORD, process.stdout + process.stderr)
        return lines[0]

    def test_database_stopped_in_the_middle_of_a_run(self):
        self.seed()
        self.execute(
            "UPDATE instances SET host = NULL, node = NULL, "
            "vm_state = 'shelved_offloaded' "
            "WHERE deleted = 0 AND MOD(id, 10) IN (5, 6, 7, 8)")
        self.analyze()
        conf = self.config(database=NO_CONNECT_RETRIES,
                           api_database=NO_CONNECT_RETRIES)
        some_uuid = self.unrecorded('i.host IS NULL')[0]
        run = self.start(base.NOVA_MANAGE, conf,
                         'db', 'online_data_migrations')
        self.assertTrue(run.wait_for('rows matched'), run.describe())
        # Frozen while the server goes, so the outage lands mid-run.
        run.signal(signal.SIGSTOP)
        self.server.stop()
        run.signal(signal.SIGCONT)
        line = self.assertOneLineError(run, 2)
        self.assertIn('populate_missing_machine_types failed in cell cell1',
                      line)
        self.engine.dispose()
        for argv, code in (
                (['db', 'online_data_migrations'], 2),
                (['libvirt', 'get_machine_type', some_uuid], 1),
                (['libvirt', 'list_unset_machine_type'], 1),
                (['libvirt', 'machine_type_summary'], 1)):
            self.assertOneLineError(
                self.start(base.NOVA_MANAGE, conf, *argv), code)
        self.assertOneLineError(
            self.start(base.NOVA_STATUS, conf, 'upgrade', 'check'), 255)
        self.server.start()
        self.assertClean(self.start(base.NOVA_MANAGE, conf,
                                    'db', 'online_data_migrations'))
        self.assertEqual([], self.unrecorded(
            "i.host IS NULL AND i.vm_state <> 'building'"))
        self.assertEqual([], self.duplicates())


class LibvirtOutageTests(base.ReliabilityTestCase):

    def test_libvirt_unreachable_at_start_then_back(self):
        conn = self.libvirt()
        self.seed(2000)
        self.execute(
            'UPDATE instances SET host = :host, node = :host '
            'WHERE deleted = 0 AND host IS NOT NULL AND MOD(id, 10) = 1',
            host=HOST)
        unrecorded = self.unrecorded("i.host = '%s'" % HOST)
        live = self.define_domains(conn, unrecorded[:5])
        socket_path = os.path.join(self.tempdir, 'libvirt.sock')
        uri = 'qemu+unix:///system?socket=' + socket_path
        compute = self.start(base.NOVA_COMPUTE, self.config(
            DEFAULT={'host': HOST}, libvirt={'connection_uri': uri},
            compute={'libvirt_connect_retries': 8,
                     'libvirt_connect_retry_interval': 0.5}))
        self.assertTrue(compute.wait_for('attempt 2 of 9', stream='err'),
                        compute.describe())
        for line in compute.stderr.splitlines():
            self.assertTrue(line.startswith('ERROR: '), line)
            self.assertIn(uri, line)
            self.assertIn('retrying in', line)
        # Nothing recorded, not even the service, while libvirt is away.
        self.assertEqual([], self.execute(
            'SELECT id FROM services WHERE host = :host', host=HOST))
        self.assertEqual(sorted(unrecorded),
                         sorted(self.unrecorded("i.host = '%s'" % HOST)))
        self.useFixture(servers.UnixSocketProxy(socket_path))
        self.assertTrue(compute.wait_for(base.RUNNING), compute.describe())
        compute.signal(signal.SIGTERM)
        self.assertEqual(0, compute.finish(), compute.describe())
        self.assertNotIn('Traceback', compute.stdout + compute.stderr)
        records = self.records()
        self.assertEqual([], self.unrecorded("i.host = '%s'" % HOST))
        for instance_uuid, machine_type in live.items():
            self.assertRegex(machine_type, r'^pc-i440fx-')
            self.assertEqual(machine_type, records[instance_uuid])


globals().update({
    'DatabaseOutageTests_' + name: type(
        'DatabaseOutageTests_' + name, (DatabaseOutageTests,),
        {'SERVER': server, '__module__': __name__})
    for name, server in (('mysql', servers.PrivateMariaDB),
                         ('postgresql', servers.PrivatePostgres))})
globals().update(nova_fixtures.backend_variants(LibvirtOutageTests,
                                                backends=('mysql',)))
del DatabaseOutageTests, LibvirtOutageTests
