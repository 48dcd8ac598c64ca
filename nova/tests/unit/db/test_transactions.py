"""nova.db.transactions: the commands' direct transactions, on SQLite.

The functional tier runs these on MariaDB and PostgreSQL. What a command
can tell apart from enginefacade must be the same: errors, retries of
the first connection, joining, commit and rollback.
"""

import uuid as uuid_lib

import fixtures
from oslo_db import exception as db_exc
import sqlalchemy as sa

from nova import context
from nova.db.main import api as db
from nova.db import transactions
from nova import exception
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.db import test_instance_object


class DirectTransactionTests(nova_fixtures.TestCase):
    """The commands' transactions (EnginefacadeTransactionTests: the
    services', which must behave the same)."""

    DIRECT_TRANSACTIONS = True

    def manager(self):
        manager = db.get_context_manager(self.ctxt)
        self.assertEqual(self.DIRECT_TRANSACTIONS, isinstance(
            manager, transactions.DirectContextManager))
        return manager

    def setUp(self):
        super().setUp()
        self.ctxt = self.cell_context()
        self.uuid = self.create_instance(self.ctxt).uuid

    def sysmeta_insert(self, uuid, key='k', value='v'):
        return db.SYSMETA.insert().values(instance_uuid=uuid, key=key,
                                          value=value, deleted=0)

    def live_values(self, key):
        with transactions.using(self.ctxt, self.manager().reader):
            return self.ctxt.session.execute(
                sa.select(db.SYSMETA.c.value).where(
                    db.SYSMETA.c.key == key,
                    db.SYSMETA.c.deleted == 0)).scalars().all()

    def test_a_second_live_row_is_oslo_db_duplicate_entry(self):
        with transactions.using(self.ctxt, self.manager().writer):
            self.ctxt.session.execute(self.sysmeta_insert(self.uuid))
        with transactions.using(self.ctxt, self.manager().writer):
            self.assertRaises(db_exc.DBDuplicateEntry,
                              self.ctxt.session.execute,
                              self.sysmeta_insert(self.uuid))
        self.assertEqual(['v'], self.live_values('k'))

    def test_foreign_keys_are_enforced(self):
        with transactions.using(self.ctxt, self.manager().writer):
            self.assertRaises(db_exc.DBReferenceError,
                              self.ctxt.session.execute,
                              self.sysmeta_insert(str(uuid_lib.uuid4())))

    def test_an_error_in_the_block_rolls_the_transaction_back(self):
        def write_then_fail():
            with transactions.using(self.ctxt, self.manager().writer):
                self.ctxt.session.execute(self.sysmeta_insert(self.uuid))
                raise ValueError('fails after its write')
        self.assertRaises(ValueError, write_then_fail)
        self.assertEqual([], self.live_values('k'))

    def test_a_nested_reader_joins_the_writer_and_sees_its_write(self):
        with transactions.using(self.ctxt, self.manager().writer) as outer:
            self.ctxt.session.execute(self.sysmeta_insert(self.uuid))
            self.assertEqual({'k': 'v'}, db.instance_system_metadata_get_many(
                self.ctxt, [self.uuid])[self.uuid])
            self.assertIs(outer, self.ctxt.session)
        self.assertEqual(['v'], self.live_values('k'))

    def test_a_writer_inside_a_transaction_is_refused(self):
        with transactions.using(self.ctxt, self.manager().reader):
            err = self.assertRaises(
                exception.WriterInTransaction, db.instance_update,
                self.ctxt, self.uuid, {'vm_state': 'stopped'}, {}, [])
        self.assertIn('instance_update', err.format_message())

    def test_a_context_outside_any_transaction_has_no_session(self):
        err = self.assertRaises(RuntimeError, getattr, self.ctxt, 'session')
        self.assertIn('no database transaction', str(err))
        self.assertFalse(self.ctxt.in_transaction())

    def test_backend_names_the_family(self):
        with transactions.using(self.ctxt, self.manager().reader):
            self.assertEqual(
                sa.engine.make_url(self.db.cell_urls[0]).get_backend_name()
                .replace('mariadb', 'mysql'),
                transactions.backend(self.ctxt))


class EnginefacadeTransactionTests(DirectTransactionTests):

    DIRECT_TRANSACTIONS = False


class FirstConnectionTests(nova_fixtures.TestCase):
    """A database that refuses connections: max_retries attempts, then
    oslo.db's DBConnectionError, as enginefacade does."""

    DATABASE = None

    def test_refused_connection_is_retried_then_raised(self):
        logs = self.useFixture(fixtures.FakeLogger(
            name='nova.db.transactions'))
        # Port 9 (discard) on this host: nothing listens there.
        manager = transactions.DirectContextManager(
            'mysql+pymysql://nobody:secret@127.0.0.1:9/nova',
            max_retries=3, retry_interval=0.01)
        ctxt = context.get_admin_context()
        ctxt.db_connection = manager
        self.assertRaises(db_exc.DBConnectionError,
                          objects.Instance.get_by_uuid, ctxt,
                          str(uuid_lib.uuid4()))
        self.assertEqual(3, logs.output.count('cannot connect'))
        self.assertNotIn('secret', logs.output)


class InstanceObjectDirectTests(test_instance_object.InstanceObjectTests):
    """Every Instance object test, on a command's direct transactions."""

    DIRECT_TRANSACTIONS = True
