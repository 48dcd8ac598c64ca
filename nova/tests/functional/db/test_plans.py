"""The plans of the statements whose cost rests on an index.

InnoDB's secondary indexes end with the primary key, so on MySQL an
index on (a, b) also serves ``a = ? AND b = ? AND id > ? ORDER BY id``;
PostgreSQL's do not, and without ``id`` in the index such a keyset page
walks the primary key and filters, or sorts every matching row. These
tests read the plan PostgreSQL picks on a table with several keys per
instance, as a cell has, whose statistics are out of date as a bulk
update leaves them: analysed before the rows got the value read.
MariaDB's plan of a batch's UPDATE is read too (MySQLPlanTests).
"""

import sqlalchemy as sa

from nova.db.main import api as db
from nova.tests import fixtures as nova_fixtures

KEY = 'hw_machine_type'
OLD, NEW = 'pc-q35-7.2', 'pc-q35-8.2'
INSTANCES = 2000
# Other system metadata keys of each instance (image properties...).
OTHER_KEYS = 9


def explain(engine, verb, call):
    """The rows of EXPLAIN of the one ``verb`` statement ``call()`` runs
    through ``engine``, as mappings."""
    statement, parameters = nova_fixtures.statement_of(engine, verb, call)
    with engine.connect() as conn:
        return conn.exec_driver_sql('EXPLAIN ' + statement,
                                    parameters).mappings().all()


class PostgreSQLPlanTests(nova_fixtures.TestCase):

    DATABASE = 'postgresql'

    def setUp(self):
        super().setUp()
        self.ctxt = self.cell_context()
        self.engine = db.get_engine(self.ctxt)
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO instances (uuid, project_id, user_id, "
                "vm_state, deleted) SELECT md5(n::text)::uuid::text, 'p', "
                "'u', 'stopped', 0 FROM generate_series(1, :n) n"),
                {'n': INSTANCES})
            conn.execute(sa.text(
                "INSERT INTO instance_system_metadata "
                "(instance_uuid, key, value, deleted) "
                "SELECT i.uuid, CASE k WHEN 0 THEN :key "
                "ELSE 'image_prop_' || k END, :new, 0 "
                "FROM instances i, generate_series(0, :others) k"),
                {'key': KEY, 'new': NEW, 'others': OTHER_KEYS})
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level='AUTOCOMMIT').execute(
                sa.text('ANALYZE'))
        # As the planner sees it, no row is recorded as OLD.
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                'UPDATE instance_system_metadata SET value = :old '
                'WHERE key = :key'), {'old': OLD, 'key': KEY})

    def _plan_of(self, verb, query, *args, **kwargs):
        """EXPLAIN of the one ``verb`` statement ``query(ctxt, *args,
        **kwargs)`` runs."""
        return '\n'.join(row['QUERY PLAN'] for row in explain(
            self.engine, verb, lambda: query(self.ctxt, *args, **kwargs)))

    def test_a_bulk_update_batch_is_a_range_of_the_value_index(self):
        plan = self._plan_of('SELECT', db.instance_sysmeta_replace_value_batch,
                             KEY, OLD, NEW, 1000, 100)
        self.assertIn('Index Only Scan using '
                      'instance_system_metadata_key_value_id_idx', plan)
        self.assertNotIn('Sort', plan)
        self.assertNotIn('pkey', plan)

    def test_a_bulk_update_batch_updates_its_id_range_alone(self):
        plan = self._plan_of('UPDATE', db.instance_sysmeta_replace_value_batch,
                             KEY, OLD, NEW, 1000, 100)
        # The scan of instance_system_metadata: bounded by the batch's id
        # range, never every row recorded as OLD.
        scan = plan.split('on instance_system_metadata', 1)[1]
        condition = scan.split('Index Cond: ', 1)[1].splitlines()[0]
        self.assertRegex(condition, r'\bid\b')


class MySQLPlanTests(nova_fixtures.TestCase):
    """MariaDB's plan of a bulk update batch's UPDATE.

    The batch is an id range of the rows recorded as the old value. The
    same range of the primary key holds every key of every instance in
    it (ten times the rows here); read that way, the UPDATE would read
    and lock all of them.
    """

    DATABASE = 'mysql'

    def setUp(self):
        super().setUp()
        self.ctxt = self.cell_context()
        self.engine = db.get_engine(self.ctxt)
        uuids = ['00000000-0000-0000-0000-%012d' % n
                 for n in range(INSTANCES)]
        with self.engine.begin() as conn:
            conn.execute(db.INSTANCES.insert(), [
                {'uuid': uuid, 'project_id': 'p', 'user_id': 'u',
                 'vm_state': 'stopped', 'deleted': 0} for uuid in uuids])
            conn.execute(db.SYSMETA.insert(), [
                {'instance_uuid': uuid,
                 'key': KEY if k == 0 else 'image_prop_%d' % k,
                 'value': OLD, 'deleted': 0}
                for uuid in uuids for k in range(OTHER_KEYS + 1)])
            conn.execute(sa.text('ANALYZE TABLE instances, '
                                 'instance_system_metadata'))

    def test_a_bulk_update_batch_updates_a_range_of_the_value_index(self):
        plan = explain(self.engine, 'UPDATE',
                       lambda: db.instance_sysmeta_replace_value_batch(
                           self.ctxt, KEY, OLD, NEW, 1000, 100))
        [scan] = [row for row in plan
                  if row['table'] == 'instance_system_metadata']
        self.assertEqual('range', scan['type'])
        self.assertEqual('instance_system_metadata_key_value_id_idx',
                         scan['key'])
