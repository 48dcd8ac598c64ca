"""The commands' direct transactions on MariaDB and PostgreSQL."""

import sqlalchemy as sa

from nova.db.main import api as db
from nova.db import transactions
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


class ReconnectionTests(fixtures.TestCase):
    """A long command survives a connection the server dropped between
    two of its transactions (a restart, a failover, an idle time-out)."""

    DATABASE = None
    DIRECT_TRANSACTIONS = True
    OWN_ID = {'mysql': 'SELECT CONNECTION_ID()',
              'postgresql': 'SELECT pg_backend_pid()'}
    KILL = {'mysql': 'KILL CONNECTION %d',
            'postgresql': 'SELECT pg_terminate_backend(%d)'}

    def test_next_transaction_reconnects(self):
        ctxt = self.cell_context()
        manager = db.get_context_manager(ctxt)
        family = 'mysql' if self.DATABASE in ('mysql', 'mariadb') \
            else self.DATABASE
        with transactions.using(ctxt, manager.reader):
            own = ctxt.session.execute(sa.text(self.OWN_ID[family])).scalar()
        killer = sa.create_engine(self.db.cell_urls[0])
        with killer.begin() as conn:
            conn.execute(sa.text(self.KILL[family] % own))
        killer.dispose()
        with transactions.using(ctxt, manager.reader):
            again = ctxt.session.execute(
                sa.text(self.OWN_ID[family])).scalar()
        self.assertNotEqual(own, again)


globals().update(fixtures.backend_variants(ReconnectionTests,
                                           fixtures.WITH_MARIADB_URL))
del ReconnectionTests
