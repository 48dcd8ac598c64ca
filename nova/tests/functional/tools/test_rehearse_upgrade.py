"""The README's rehearsal, at a small size, checked by its final counts."""

import json
import os
import subprocess
import sys

import fixtures
import libvirt
import sqlalchemy as sa
import testtools

from nova.tests import fixtures as nova_fixtures
from nova.virt.libvirt import machine_type_utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
SCRIPT = os.path.join(ROOT, 'tools', 'rehearse_upgrade.py')


def family(machine_type):
    return machine_type_utils.parse_machine_type(machine_type).family


class RehearsalTests(testtools.TestCase):

    def _rehearse(self, *extra):
        summary = os.path.join(self.useFixture(fixtures.TempDir()).path,
                               'summary.json')
        proc = subprocess.run(
            [sys.executable, SCRIPT, '--instances', '40', '--summary-json',
             summary] + list(extra), capture_output=True, text=True,
            timeout=600, cwd=ROOT)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertNotIn('Traceback', proc.stdout + proc.stderr)
        with open(summary) as f:
            return proc.stdout, json.load(f)

    def _check(self, output, summary, versioned):
        before = {(s, m): n for s, m, n in summary['before']}
        after = {(s, m): n for s, m, n in summary['after']}
        # Before: nothing recorded; after: only BUILDING instances unset.
        self.assertEqual({'(unset)'}, {m for _, m in before})
        self.assertEqual(
            {('building', '(unset)')},
            {k for k in after if k[1] == '(unset)'})
        # The instances are the same (plus the one spawned to show the
        # new default), in the same number.
        self.assertEqual(sum(before.values()) + 1, sum(after.values()))
        # Old guests keep their type under the new default; a new guest
        # gets q35.
        demo = {row[0].split(' ')[0]: row for row in summary['demo']}
        hard = demo['hard']
        self.assertEqual(hard[3], hard[4])
        self.assertEqual('pc', family(hard[3]))
        # An offloaded instance recorded by the online migration may hold
        # the alias, which QEMU expands: the family is what is kept.
        unshelve = demo['unshelve']
        self.assertEqual(family(unshelve[3]), family(unshelve[4]))
        if versioned:
            self.assertRegex(demo['new'][3], r'^pc-q35-\d+\.\d+$')
        else:
            self.assertEqual('q35', demo['new'][3])
        self.assertEqual(demo['new'][3], demo['new'][4])
        # The walk-through shows the commands and their exit codes.
        for text in ('$ nova-status upgrade check', '(exit code 1)',
                     '$ nova-manage db online_data_migrations',
                     '$ nova-compute --config-file compute1.conf',
                     'update_machine_type', '(exit code 4)',
                     '(exit code 3)'):
            self.assertIn(text, output)

    def test_rehearsal_on_sqlite_and_test_driver(self):
        output, summary = self._rehearse()
        self._check(output, summary, versioned=False)

    def _server_url(self, backend):
        url = nova_fixtures.ADMIN_URLS[backend]
        try:
            sa.create_engine(url).connect().close()
        except sa.exc.OperationalError as exc:
            # The server does not answer; any other error is the test's.
            nova_fixtures.unavailable(self, '%s (%s)' % (backend, exc.orig))
        return url

    def test_rehearsal_on_postgresql_and_qemu(self):
        url = self._server_url('postgresql')
        output, summary = self._rehearse('--database-url', url, '--qemu')
        self._check(output, summary, versioned=True)
        # It ran guests on the operator's libvirtd: none of them is left,
        # the one the unshelve started included. (The legacy domains'
        # uuids are gone with the databases; these three are in the
        # summary.)
        conn = libvirt.open('qemu:///system')
        self.addCleanup(conn.close)
        left = {domain.UUIDString() for domain in conn.listAllDomains(0)}
        self.assertEqual(set(), {row[1] for row in summary['demo']} & left)

    def test_rehearsal_through_a_mariadb_url(self):
        url = self._server_url('mariadb')
        output, summary = self._rehearse('--database-url', url)
        self._check(output, summary, versioned=False)
