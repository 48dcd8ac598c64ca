"""Compute-side recorders keep an operator's later decision, on MariaDB
and PostgreSQL: the unit tier's interleavings on the real servers.
"""

from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.compute import test_machine_type_records as unit

globals().update(nova_fixtures.backend_variants(
    unit.RecorderInterleavingTestCase))
globals().update(nova_fixtures.backend_variants(
    unit.StartUpPinAndDriftTestCase))
