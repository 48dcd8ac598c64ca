"""nova-manage libvirt on MariaDB and PostgreSQL: the unit tests, again."""

from nova.tests import fixtures
from nova.tests.unit.cmd import test_manage_libvirt as unit

for _base in (unit.GetMachineTypeTests, unit.UpdateMachineTypeTests,
              unit.ListUnsetMachineTypeTests, unit.BulkUpdateMachineTypeTests,
              unit.MachineTypeSummaryTests, unit.JsonOutputTests):
    globals().update(fixtures.backend_variants(_base))
