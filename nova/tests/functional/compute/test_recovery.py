"""Start-up recovery after a kill at every step (the unit tier's tests)
on MariaDB and PostgreSQL, and on a real libvirtd with QEMU.

The hosts share one libvirt here: the unit tier also runs every test with
each host on its own hypervisor, which sends the same statements.
"""

from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.compute import test_qemu_machine_type as qemu
from nova.tests.unit.compute import test_recovery as unit

globals().update(nova_fixtures.backend_variants(unit.RecoveryTestCase))


class QemuRecoveryTestCase(qemu.QemuTestCase, unit.RecoveryTestCase):
    """A cold migration and its revert killed at every step, their
    domains on QEMU: what libvirt reports (versioned types, what a
    redefinition keeps) is real.

    Of a stopped instance: each QEMU start costs a second or more, and
    the steps are the same whatever the hypervisor; every operation runs
    killed at every step on the test driver above.
    """

    test_cold_migration = None
    test_revert = None
    test_confirm = None
    test_rebuild = None
    test_unshelve = None
    test_evacuate = None
    test_hard_reboot = None
    test_stop = None
    test_start = None
