"""A resize survives a restart of either host's nova-compute, on MariaDB
and PostgreSQL: the unit tier's restart tests on the real servers.
"""

from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.compute import test_manager_lifecycle as unit

globals().update(nova_fixtures.backend_variants(
    unit.MigrationRestartTestCase))
