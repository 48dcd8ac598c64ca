"""The SQL that nova.db.utils builds for each database."""

import importlib

import sqlalchemy as sa
import testtools

from nova.db import utils

TABLE = sa.Table('t', sa.MetaData(),
                 sa.Column('id', sa.Integer, primary_key=True),
                 sa.Column('k', sa.String(10), unique=True),
                 sa.Column('v', sa.String(10)))


def _sql(dialect_name, stmt):
    dialect = importlib.import_module(
        'sqlalchemy.dialects.' + dialect_name).dialect()
    return str(stmt.compile(dialect=dialect))


class InsertIfAbsentTests(testtools.TestCase):

    def test_each_database_skips_a_duplicate_its_own_way(self):
        self.assertIn('ON DUPLICATE KEY UPDATE id = t.id',
                      _sql('mysql', utils.insert_if_absent('mysql', TABLE)))
        for name in ('postgresql', 'sqlite'):
            self.assertIn('ON CONFLICT DO NOTHING',
                          _sql(name, utils.insert_if_absent(name, TABLE)))

    def test_upsert_overwrites_the_named_columns(self):
        self.assertIn('ON DUPLICATE KEY UPDATE v = VALUES(v)',
                      _sql('mysql', utils.upsert('mysql', TABLE, ['k'],
                                                 ['v'])))
        self.assertIn('ON CONFLICT (k) DO UPDATE SET v = excluded.v',
                      _sql('postgresql', utils.upsert('postgresql', TABLE,
                                                      ['k'], ['v'])))

    def test_another_database_is_refused_by_name(self):
        exc = self.assertRaises(ValueError, utils.insert_if_absent,
                                'oracle', TABLE)
        self.assertIn("'oracle'", str(exc))
