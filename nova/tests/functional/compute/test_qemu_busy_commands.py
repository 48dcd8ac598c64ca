"""The operator's commands never race an operation, on QEMU.

An operation is held inside the driver (the instance claimed, its domain
about to be defined from the record it read) while
``update_machine_type`` and ``bulk_update_machine_type`` run: both are
refused for that instance, with --force too, and change nothing. Once
the operation ends, the guest QEMU runs has the machine type recorded.
On MariaDB and PostgreSQL.
"""

import threading

from nova.compute import task_states
from nova.compute import vm_states
from nova import exception
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.compute import test_qemu_machine_type as qemu
from nova.virt.libvirt import machine_type_utils

HOLD_TIMEOUT = 120


class CommandsDuringAnOperationTestCase(qemu.QemuTestCase):

    def hold(self, method):
        """Make the driver's ``method`` wait inside, until released.

        Returns (entered, release): two Events.
        """
        entered, release = threading.Event(), threading.Event()
        original = getattr(self.compute.driver, method)

        def held(*args, **kwargs):
            entered.set()
            self.assertTrue(release.wait(HOLD_TIMEOUT))
            return original(*args, **kwargs)
        setattr(self.compute.driver, method, held)
        return entered, release

    def run_held(self, operation, method):
        """Start ``operation`` in a thread, return once it is held in the
        driver's ``method``; returns (release, thread, errors)."""
        entered, release = self.hold(method)
        errors = []
        thread = nova_fixtures.start_thread(operation, errors)
        self.addCleanup(thread.join, HOLD_TIMEOUT)
        self.addCleanup(release.set)
        self.assertTrue(entered.wait(HOLD_TIMEOUT))
        return release, thread, errors

    def test_start_held_refuses_both_commands(self):
        instance = self.build({'hw_machine_type': 'q35'})
        recorded = self.recorded(instance)
        self.assertRegex(recorded, qemu.VERSIONED_Q35)
        self.compute.stop_instance(self.ctxt, instance)
        instance = self.reload(instance)
        release, thread, errors = self.run_held(
            lambda: self.compute.start_instance(self.ctxt, instance),
            'power_on')
        saved = self.reload(instance)
        self.assertEqual((vm_states.STOPPED, task_states.POWERING_ON),
                         (saved.vm_state, saved.task_state))
        err = self.assertRaises(
            exception.MachineTypeUpdateInstanceBusy,
            machine_type_utils.update_machine_type, self.context,
            instance.uuid, 'pc', force=True)
        self.assertIn('powering-on', err.format_message())
        [(cell, outcome)] = machine_type_utils.bulk_update_machine_type(
            self.context, recorded, 'pc', force=True)
        self.assertEqual((0, {machine_type_utils.BUSY: 1}),
                         (outcome.updated, outcome.refused))
        self.assertEqual([recorded], self.machine_type_rows(instance))
        release.set()
        thread.join(HOLD_TIMEOUT)
        self.assertEqual([], errors)
        self.assertState(instance, vm_states.ACTIVE, host='compute1')
        # The guest runs what is recorded: nothing changed it meanwhile.
        self.assertEqual([recorded], self.machine_type_rows(instance))
        self.assertDomainMachineType(recorded, instance)

    def test_rebuild_of_a_stopped_instance_held_refuses_the_command(self):
        instance = self.build({'hw_machine_type': 'q35'})
        self.compute.stop_instance(self.ctxt, instance)
        instance = self.reload(instance)
        release, thread, errors = self.run_held(
            lambda: self.compute.rebuild_instance(
                self.ctxt, instance, self.image(hw_machine_type='pc')),
            'spawn')
        self.assertRaises(
            exception.MachineTypeUpdateInstanceBusy,
            machine_type_utils.update_machine_type, self.context,
            instance.uuid, 'q35', force=True)
        release.set()
        thread.join(HOLD_TIMEOUT)
        self.assertEqual([], errors)
        self.assertState(instance, vm_states.STOPPED, host='compute1')
        # The new image's type, as QEMU versions it, and nothing else.
        [recorded] = self.machine_type_rows(instance)
        self.assertRegex(recorded, qemu.VERSIONED_I440FX)
        self.assertEqual(recorded, self.persistent_machine_type(instance))


globals().update(nova_fixtures.backend_variants(
    CommandsDuringAnOperationTestCase))
del CommandsDuringAnOperationTestCase
