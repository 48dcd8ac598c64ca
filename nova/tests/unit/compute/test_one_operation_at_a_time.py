"""Of two operations sent at once to one instance, only the first runs.

Each operation claims the instance with one conditional write that
succeeds only when no task is in flight (Nova's
``expected_task_state=[None]``). Here the first operation (stop, start,
hard reboot, shelve, shelve offload, unshelve, resize/migrate, rebuild,
terminate) has claimed the instance (its task state is in the database);
the instance is then loaded afresh, as the second request's handler
would load it, and every second operation a user could send meanwhile
must be refused, with nothing written and the domain untouched. Runs on
SQLite here and on MariaDB and PostgreSQL in
nova/tests/functional/compute/test_one_operation_at_a_time.py.
"""

from nova.compute import task_states
from nova.compute import vm_states
from nova import exception
from nova.tests.unit import compute as compute_test

# Tasks of a first operation that can be in flight on an ACTIVE or a
# STOPPED instance.
CLAIMS = {
    vm_states.ACTIVE: (task_states.POWERING_OFF, task_states.REBOOTING_HARD,
                       task_states.SHELVING, task_states.RESIZE_MIGRATING,
                       task_states.REBUILDING, task_states.DELETING),
    vm_states.STOPPED: (task_states.POWERING_ON, task_states.SHELVING,
                        task_states.RESIZE_MIGRATING,
                        task_states.REBUILDING, task_states.DELETING),
    vm_states.SHELVED: (task_states.UNSHELVING,
                        task_states.SHELVING_OFFLOADING,
                        task_states.DELETING),
    vm_states.SHELVED_OFFLOADED: (task_states.UNSHELVING,
                                  task_states.DELETING),
}


class OneOperationAtATimeTests(compute_test.ComputeTestCase):

    def second_operations(self, vm_state):
        """{name: operation(instance)} a user may send in ``vm_state``."""
        ctxt, cm = self.ctxt, self.compute
        if vm_state in (vm_states.SHELVED, vm_states.SHELVED_OFFLOADED):
            ops = {
                'unshelve': lambda i: (
                    cm if vm_state == vm_states.SHELVED else self.compute2
                ).unshelve_instance(ctxt, i),
                'terminate': lambda i: cm.terminate_instance(ctxt, i),
            }
            if vm_state == vm_states.SHELVED:
                ops['shelve offload'] = (
                    lambda i: cm.shelve_offload_instance(ctxt, i))
            return ops
        ops = {
            'migrate': lambda i: cm.migrate_instance(ctxt, i, self.compute2),
            'rebuild': lambda i: cm.rebuild_instance(ctxt, i, self.image()),
            'terminate': lambda i: cm.terminate_instance(ctxt, i),
            'shelve': lambda i: cm.shelve_instance(ctxt, i),
        }
        if vm_state == vm_states.ACTIVE:
            ops.update({
                'stop': lambda i: cm.stop_instance(ctxt, i),
                'hard reboot': lambda i: cm.reboot_instance(
                    ctxt, i, reboot_type='HARD'),
            })
        else:
            ops['start'] = lambda i: cm.start_instance(ctxt, i)
        return ops

    def claimed(self, vm_state, task_state):
        """A built instance in ``vm_state`` that an operation in flight
        has claimed with ``task_state``, as that operation wrote it."""
        instance = self.build()
        if vm_state == vm_states.STOPPED:
            self.compute.stop_instance(self.ctxt, instance)
        if vm_state in (vm_states.SHELVED, vm_states.SHELVED_OFFLOADED):
            self.compute.shelve_instance(self.ctxt, instance)
        if vm_state == vm_states.SHELVED_OFFLOADED:
            self.compute.shelve_offload_instance(self.ctxt, instance)
        first = self.reload(instance)
        self.compute._start_task(first, task_state)
        return instance

    def assertRefusedWhileClaimed(self, vm_state):
        refused = {}
        for task_state in CLAIMS[vm_state]:
            instance = self.claimed(vm_state, task_state)
            running = self.domain_is_running(instance)
            for name, operation in self.second_operations(vm_state).items():
                second = self.reload(instance)
                try:
                    operation(second)
                except exception.UnexpectedTaskStateError:
                    refused[task_state, name] = True
                else:
                    refused[task_state, name] = False
                host = (None if vm_state == vm_states.SHELVED_OFFLOADED
                        else 'compute1')
                self.assertState(instance, vm_state, task_state, host=host)
                self.assertEqual(running, self.domain_is_running(instance))
                self.assertEqual(host, self.reload(instance).node)
        self.assertEqual({pair: True for pair in refused}, refused)
        return refused

    def test_every_second_operation_on_an_active_instance_is_refused(self):
        self.assertEqual(36, len(self.assertRefusedWhileClaimed(
            vm_states.ACTIVE)))

    def test_every_second_operation_on_a_stopped_instance_is_refused(self):
        self.assertEqual(25, len(self.assertRefusedWhileClaimed(
            vm_states.STOPPED)))

    def test_every_second_operation_on_a_shelved_instance_is_refused(self):
        self.assertEqual(9, len(self.assertRefusedWhileClaimed(
            vm_states.SHELVED)))

    def test_every_second_operation_on_an_offloaded_instance_is_refused(
            self):
        self.assertEqual(4, len(self.assertRefusedWhileClaimed(
            vm_states.SHELVED_OFFLOADED)))

    def test_a_claim_fails_once_the_vm_state_changed(self):
        """The vm_state the operation was checked against is part of the
        claim: a copy loaded before a stop cannot start a stop."""
        instance = self.build()
        stale = self.reload(instance)
        self.compute.stop_instance(self.ctxt, self.reload(instance))
        self.assertRaises(exception.InstanceInvalidState,
                          self.compute.stop_instance, self.ctxt, stale)
        self.assertState(instance, vm_states.STOPPED, None, host='compute1')
