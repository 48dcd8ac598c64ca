"""The commands' direct transactions on MariaDB and PostgreSQL."""

import sqlalchemy as sa

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
