"""Instance objects, cells and scatter-gather on MariaDB and PostgreSQL."""

from nova.tests import fixtures
from nova.tests.unit.db import test_instance_object
from nova.tests.unit import test_context

globals().update(fixtures.backend_variants(
    test_instance_object.InstanceObjectTests, fixtures.WITH_MARIADB_URL))
globals().update(fixtures.backend_variants(test_context.TargetCellTests,
                                           fixtures.WITH_MARIADB_URL))
