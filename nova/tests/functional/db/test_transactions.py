"""The commands' direct transactions on MariaDB and PostgreSQL."""

import sqlalchemy as sa

from nova.db.main import api as db
from nova.db import transactions
from nova.db import utils as db_utils
from nova.tests import fixtures
from nova.tests.unit.db import test_transactions as unit

globals().update(fixtures.backend_variants(unit.DirectTransactionTests,
                                           fixtures.WITH_MARIADB_URL))
globals().update(fixtures.backend_variants(unit.EnginefacadeTransactionTests,
                                           fixtures.WITH_MARIADB_URL))
globals().update(fixtures.backend_variants(unit.InstanceObjectDirectTests,
                                           fixtures.WITH_MARIADB_URL))


class MySQLSessionTests(fixtures.TestCase):
    """A command's MySQL sessions are as strict as a service's."""

    DATABASE = 'mysql'
    DIRECT_TRANSACTIONS = True

    def test_sql_mode_is_traditional(self):
        ctxt = self.cell_context()
        manager = transactions.create_context_manager(self.db.cell_urls[0])
        with transactions.using(ctxt, manager.reader):
            mode = ctxt.session.execute(
                sa.text('SELECT @@SESSION.sql_mode')).scalar()
        manager.dispose_pool()
        # TRADITIONAL, as MariaDB expands it.
        self.assertIn('STRICT_TRANS_TABLES', mode.split(','))
        self.assertIn('NO_ZERO_DATE', mode.split(','))


class ServerConnectionTests(fixtures.TestCase):
    """What the server sees of a command's connections."""

    DATABASE = None
    DIRECT_TRANSACTIONS = True
    OWN_ID = {'mysql': 'SELECT CONNECTION_ID()',
              'postgresql': 'SELECT pg_backend_pid()'}
    KILL = {'mysql': 'KILL CONNECTION %d',
            'postgresql': 'SELECT pg_terminate_backend(%d)'}
    STILL_THERE = {
        'mysql': 'SELECT COUNT(*) FROM information_schema.processlist '
                 'WHERE id = %d',
        'postgresql': 'SELECT COUNT(*) FROM pg_stat_activity '
                      'WHERE pid = %d'}

    def setUp(self):
        super().setUp()
        self.ctxt = self.cell_context()
        self.manager = db.get_context_manager(self.ctxt)
        self.family = db_utils.backend_family(self.DATABASE)
        self.admin = sa.create_engine(self.db.cell_urls[0])
        self.addCleanup(self.admin.dispose)

    def own_connection(self):
        with transactions.using(self.ctxt, self.manager.reader):
            return self.ctxt.session.execute(
                sa.text(self.OWN_ID[self.family])).scalar()

    def server_has(self, connection_id):
        with self.admin.connect() as conn:
            return conn.execute(sa.text(
                self.STILL_THERE[self.family] % connection_id)).scalar()

    def test_next_transaction_reconnects(self):
        # A long command survives a connection the server dropped between
        # two of its transactions (a restart, a failover, an idle
        # time-out).
        own = self.own_connection()
        with self.admin.begin() as conn:
            conn.execute(sa.text(self.KILL[self.family] % own))
        self.assertNotEqual(own, self.own_connection())

    def test_a_command_s_connections_are_closed_before_it_exits(self):
        # The console scripts end with os._exit: the connections must be
        # closed before (nova.cmd.common.exit_now).
        own = self.own_connection()
        self.assertEqual(1, self.server_has(own))
        transactions.close_direct_connections()
        self.assertTrue(fixtures.poll(lambda: not self.server_has(own),
                                      timeout=10))


globals().update(fixtures.backend_variants(ServerConnectionTests,
                                           fixtures.WITH_MARIADB_URL))
del ServerConnectionTests
