"""The operator guide's read-only queries, run as the guide prints them.

"Upgrading a large cell" gives queries that count, before the upgrade,
what ``db sync`` will find: exact duplicates and keys that only differ in
case, trailing spaces or accents. They are read from the guide itself,
run on a baseline cell on MariaDB and PostgreSQL, and must count what
the upgrade then finds.
"""

import datetime
import os

import sqlalchemy as sa

import nova
from nova.db import migration
from nova.tests import fixtures as nova_fixtures

GUIDE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(nova.__file__))),
    'doc', 'source', 'admin', 'hw-machine-type.rst')
QUERY_START = 'SELECT COUNT(*) FROM (SELECT 1 FROM instance_system_metadata'


def guide_queries():
    """The counting queries of the guide, in the order it gives them."""
    with open(GUIDE) as f:
        return [line.strip() for line in f
                if line.strip().startswith(QUERY_START)]


class GuideQueryTests(nova_fixtures.TestCase):

    CELL_REVISION = '001_baseline'

    def setUp(self):
        super().setUp()
        self.url = self.db.cell_urls[0]
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)
        t0 = datetime.datetime(2020, 1, 1)
        rows = [('a', 'image_Foo'), ('a', 'image_foo'), ('a', 'image_bar'),
                ('a', 'image_bar '), ('a', 'image_bar'), ('b', 'k'),
                ('b', 'k'), ('c', 'k')]
        with self.engine.begin() as conn:
            for uuid in 'abc':
                conn.execute(sa.text(
                    "INSERT INTO instances (uuid, deleted) VALUES (:u, 0)"),
                    {'u': uuid})
            for i, (uuid, key) in enumerate(rows):
                conn.execute(sa.text(
                    'INSERT INTO instance_system_metadata (instance_uuid, '
                    '%s, value, created_at, deleted) VALUES (:u, :k, :v, '
                    ':t, 0)' % self.key_column()),
                    {'u': uuid, 'k': key, 'v': str(i),
                     't': t0 + datetime.timedelta(days=i)})

    def key_column(self):
        return '"key"' if self.DATABASE == 'postgresql' else '`key`'

    def count(self, query):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar()

    def soft_deleted_by_sync(self):
        migration.db_sync(migration.MAIN, url=self.url)
        return self.count('SELECT COUNT(*) FROM instance_system_metadata '
                          'WHERE deleted <> 0')

    def test_the_guide_counts_what_db_sync_finds(self):
        mysql_dups, lookalikes, pg_dups = guide_queries()
        if self.DATABASE == 'postgresql':
            self.assertEqual(2, self.count(pg_dups))
        else:
            self.assertEqual(2, self.count(mysql_dups))
            # a: image_Foo/image_foo, and image_bar/'image_bar '.
            self.assertEqual(2, self.count(lookalikes))
        # One copy of a's image_bar and one of b's k go; the lookalikes
        # stay.
        self.assertEqual(2, self.soft_deleted_by_sync())


globals().update(nova_fixtures.backend_variants(GuideQueryTests))
del GuideQueryTests
