"""Secrets: a database password never appears in output, logs or errors.

Every console script runs with database URLs whose password is a
distinctive string, against a server that does not answer, against the
real server with that (wrong) password, and with a cell mapping whose URL
carries it. Their stdout, stderr and log file (``debug = True``) must not
contain it, and they must fail with one ERROR line and no traceback.
"""

import os

import sqlalchemy as sa

from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.reliability import base
from nova.tests.functional.reliability import servers

SECRET = 'Zq8-SeCrEt-pw-41'
INSTANCE = '6d1ce5f1-7cf4-4a55-9e3a-0c8d2f3f1a0b'
# Each command, the exit codes it may end with when a database fails.
MANAGE_COMMANDS = (
    (['db', 'version'], (1,)),
    (['db', 'sync'], (1,)),
    (['api_db', 'version'], (1,)),
    (['db', 'online_data_migrations'], (1, 2)),
    (['libvirt', 'get_machine_type', INSTANCE], (1,)),
    (['libvirt', 'list_unset_machine_type'], (1,)),
    (['libvirt', 'machine_type_summary'], (1,)),
    (['libvirt', 'bulk_update_machine_type', '--from', 'pc', '--to', 'q35',
      '--force'], (1,)),
    (['cell_v2', 'list_cells'], (1,)),
)
SERVERS = {'mysql': servers.PrivateMariaDB,
           'postgresql': servers.PrivatePostgres}
# Processes run at once (the machine has two cores).
PARALLEL = 6


class SecretTests(base.ReliabilityTestCase):

    def secret_url(self, host='127.0.0.1', port=None):
        """A URL of the test's backend whose password is SECRET."""
        return sa.engine.make_url(nova_fixtures.ADMIN_URLS[self.DATABASE]).set(
            password=SECRET, host=host, port=port).render_as_string(
                hide_password=False)

    def secret_config(self, cell_url, api_url):
        log_file = os.path.join(self.tempdir, 'nova-%d.log' % id(cell_url))
        no_retry = {'max_retries': 0}
        path = self.config(
            DEFAULT={'host': 'secret-host', 'debug': True,
                     'log_file': log_file},
            database=dict(no_retry, connection=cell_url),
            api_database=dict(no_retry, connection=api_url),
            libvirt={'connection_uri': 'test:///default',
                     'virt_type': 'test'},
            compute={'libvirt_connect_retries': 0})
        return path, log_file

    def run_all(self, config):
        """Run every command with ``config``; [(process, codes)]."""
        commands = [(base.NOVA_MANAGE, argv, codes)
                    for argv, codes in MANAGE_COMMANDS]
        commands += [(base.NOVA_STATUS, ['upgrade', 'check'], (255, 2)),
                     (base.NOVA_COMPUTE, [], (1,))]
        finished = []
        for start in range(0, len(commands), PARALLEL):
            running = [(self.start(script, config, *argv), codes)
                       for script, argv, codes in
                       commands[start:start + PARALLEL]]
            for process, codes in running:
                process.finish()
                finished.append((process, codes))
        return finished

    def assertNoSecret(self, cell_url, api_url, all_fail=True):
        """No command shows SECRET; with ``all_fail`` each fails cleanly."""
        config, log_file = self.secret_config(cell_url, api_url)
        for process, codes in self.run_all(config):
            output = process.stdout + process.stderr
            self.assertNotIn(SECRET, output, process.describe())
            self.assertNotIn('Traceback', output, process.describe())
            if not all_fail:
                continue
            self.assertIn(process.proc.returncode, codes, process.describe())
            errors = [line for line in process.stderr.splitlines()
                      if line.startswith('ERROR: ')]
            self.assertTrue(errors, process.describe())
        with open(log_file) as f:
            log = f.read()
        self.assertIn('DEBUG', log)
        self.assertNotIn(SECRET, log)

    def test_unreachable_server(self):
        url = self.secret_url(port=1)
        self.assertNoSecret(url, url)

    def wrong_password_url(self):
        """SECRET as the wrong password of a server that checks it.

        A private server: the shared PostgreSQL trusts local logins, so a
        wrong password would get in there.
        """
        server = self.useFixture(SERVERS[self.DATABASE]('the-right-one'))
        return server.url(server.ADMIN_DATABASE, password=SECRET)

    def test_wrong_password_on_a_real_server(self):
        url = self.wrong_password_url()
        self.assertNoSecret(url, url)

    def test_cell_mapping_with_a_wrong_password(self):
        """The API database answers; the cell's URL (from it) fails."""
        url = self.wrong_password_url()
        objects.CellMapping(
            self.context, uuid='9a5a6c59-1f0a-4b89-9d0e-4f1c3a3e3c01',
            name='secret-cell', database_connection=url,
            transport_url='none:///').create()
        self.assertNoSecret(url, self.api_url, all_fail=False)


globals().update(nova_fixtures.backend_variants(SecretTests))
del SecretTests
