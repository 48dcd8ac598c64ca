"""nova-status upgrade check on MariaDB and PostgreSQL: the unit tests."""

from nova.tests import fixtures
from nova.tests.unit.cmd import test_status as unit

for _base in (unit.MachineTypeSetCheckTests, unit.MachineTypeSupportCheckTests,
              unit.MachineTypeDriftCheckTests, unit.UpgradeCheckCommandTests):
    globals().update(fixtures.backend_variants(_base))
