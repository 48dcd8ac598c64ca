"""Keys that differ only in case, spaces or accents, on MariaDB and
PostgreSQL: the unit tier's writers on the real servers (MariaDB's
default collation ignores case and trailing spaces).
"""

from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.compute import test_exact_keys as unit

globals().update(nova_fixtures.backend_variants(
    unit.ExactKeyTests, nova_fixtures.WITH_MARIADB_URL))
