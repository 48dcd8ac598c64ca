"""The machine type queries on MariaDB and PostgreSQL: the unit tests."""

from nova.tests import fixtures
from nova.tests.unit.virt.libvirt import test_machine_type_utils as unit

globals().update(fixtures.backend_variants(unit.MachineTypeQueryTests))
