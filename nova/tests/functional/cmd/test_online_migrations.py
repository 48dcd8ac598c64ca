"""Online data migrations on MariaDB and PostgreSQL: the unit tests, again.

Includes cells seeded at the schema before machine types were recorded,
upgraded with Alembic, then migrated.
"""

from nova.tests import fixtures
from nova.tests.unit.cmd import test_online_migrations as unit

for _base in (unit.PreRecordingUpgradeTests, unit.OnlineDataMigrationsTests):
    globals().update(fixtures.backend_variants(_base))
