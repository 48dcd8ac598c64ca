"""One operation at a time on MariaDB and PostgreSQL: the unit tier's
claims and refusals on the real servers."""

from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.compute import test_one_operation_at_a_time as unit

globals().update(nova_fixtures.backend_variants(
    unit.OneOperationAtATimeTests))
