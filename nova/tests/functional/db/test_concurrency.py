"""Concurrent writers settled by the database, on MariaDB and PostgreSQL.

Threads with contexts of their own start their writes together (a
barrier), so each pair really races on the server; a race is repeated a
few times because either side may win any one of them.
"""

import threading

from nova.compute import task_states
from nova.compute import vm_states
from nova import context
from nova.db.main import api as db
from nova import exception
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit import compute as compute_base

ROUNDS = 5
JOIN_TIMEOUT = 60


def race(*actions):
    """Run ``actions`` at once in threads; return [(result, exception)]."""
    barrier = threading.Barrier(len(actions))
    outcomes = [None] * len(actions)

    def run(index, action):
        barrier.wait(JOIN_TIMEOUT)
        try:
            outcomes[index] = (action(), None)
        except Exception as exc:
            outcomes[index] = (None, exc)

    threads = [threading.Thread(target=run, args=(i, action))
               for i, action in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), 'a racer hung'
    return outcomes


class ConcurrencyTests(nova_fixtures.TestCase):
    """Run on each server by the variants below."""

    DATABASE = None

    def new_context(self):
        ctxt = context.get_admin_context()
        context.set_target_cell(ctxt, self.cells[0])
        return ctxt

    def start_action(self, uuid, task_state):
        """What an action does first: claim the instance for its task."""
        def action():
            inst = objects.Instance.get_by_uuid(self.new_context(), uuid)
            inst.task_state = task_state
            inst.save(expected_task_state=[None])
            return task_state
        return action

    def test_two_actions_on_one_instance_exactly_one_proceeds(self):
        for _ in range(ROUNDS):
            uuid = self.create_instance().uuid
            outcomes = race(
                self.start_action(uuid, task_states.REBOOTING_HARD),
                self.start_action(uuid, task_states.POWERING_OFF))
            won = [result for result, exc in outcomes if exc is None]
            lost = [exc for result, exc in outcomes if exc is not None]
            self.assertEqual(1, len(won), outcomes)
            self.assertIsInstance(lost[0], exception.UnexpectedTaskStateError)
            self.assertIn(won[0], lost[0].format_message())
            # The winner's state is what the database holds.
            inst = objects.Instance.get_by_uuid(self.new_context(), uuid)
            self.assertEqual(won[0], inst.task_state)

    def test_two_starts_of_one_host_both_succeed(self):
        for round_ in range(ROUNDS):
            host = 'overlap-%d' % round_
            outcomes = race(*[
                lambda: objects.Service.register(self.new_context(), host,
                                                 'nova-compute')] * 2)
            self.assertEqual([None, None], [exc for _, exc in outcomes])
            self.assertEqual(
                [host], [s['host'] for s in db.service_get_all_by_binary(
                    self.new_context(), 'nova-compute')
                    if s['host'] == host])


globals().update(nova_fixtures.backend_variants(
    ConcurrencyTests, nova_fixtures.WITH_MARIADB_URL))
del ConcurrencyTests


class ComputeActionRaceTests(compute_base.ComputeTestCase):
    """A second compute action on an instance while a first one runs,
    through the manager (libvirt's test driver): the database refuses
    the second; the first ends as if alone."""

    DATABASE = None

    def paused_in_power_off(self):
        """Make the driver's power_off wait, once it is reached, until the
        returned ``release`` is set; ``reached`` is set on arrival."""
        reached, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)
        power_off = self.compute.driver.power_off

        def paused(instance):
            reached.set()
            release.wait(JOIN_TIMEOUT)
            return power_off(instance)
        self.compute.driver.power_off = paused
        return reached, release

    def test_hard_reboot_while_stopping_is_refused(self):
        instance = self.build()
        stopping, rebooting = [
            objects.Instance.get_by_uuid(self.new_context(), instance.uuid)
            for _ in range(2)]
        reached, release = self.paused_in_power_off()
        stop = threading.Thread(target=self.compute.stop_instance,
                                args=(self.new_context(), stopping))
        stop.start()
        self.assertTrue(reached.wait(JOIN_TIMEOUT))
        err = self.assertRaises(
            exception.UnexpectedTaskStateError,
            self.compute.reboot_instance, self.new_context(), rebooting,
            reboot_type='HARD')
        self.assertIn(task_states.POWERING_OFF, err.format_message())
        release.set()
        stop.join(JOIN_TIMEOUT)
        now = self.reload(instance)
        self.assertEqual((vm_states.STOPPED, None),
                         (now.vm_state, now.task_state))
        self.assertFalse(self.domain_is_running(now))

    def new_context(self):
        ctxt = context.get_admin_context()
        context.set_target_cell(ctxt, self.cells[0])
        return ctxt


globals().update(nova_fixtures.backend_variants(
    ComputeActionRaceTests, nova_fixtures.WITH_MARIADB_URL))
del ComputeActionRaceTests
