"""Configuration: [libvirt]hw_machine_type checked at parse time; sample."""

import os
import subprocess
import sys

import fixtures

from nova import config
import nova.conf
from nova.conf import libvirt as libvirt_conf
from nova import exception
from nova.tests import fixtures as nova_fixtures

CONF = nova.conf.CONF
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))


class HwMachineTypeOptionTests(nova_fixtures.TestCase):
    DATABASE = None

    def _parse(self, value):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        with open(path, 'w') as f:
            f.write('[libvirt]\nhw_machine_type = %s\n' % value)
        config.parse_args(['--config-file', path], configure_logging=False)

    def test_valid_entries_parsed_by_canonical_arch(self):
        self._parse('x86_64=q35, amd64 = pc-q35-7.2 ,aarch64=virt')
        # amd64 is x86_64: the later entry wins.
        self.assertEqual({'x86_64': 'pc-q35-7.2', 'aarch64': 'virt'},
                         libvirt_conf.machine_type_defaults())

    def test_malformed_entries_refused_naming_the_entry(self):
        cases = {
            'x86_64q35': "'x86_64q35' is not of the form arch=machine_type",
            'sparc99=pc': "unknown architecture 'sparc99'",
            'x86_64=': 'empty machine type',
            'x86_64=pc q35': "invalid machine type",
            'x86_64=pc"<x>': "invalid machine type",
        }
        for value, expected in cases.items():
            err = self.assertRaises(exception.ConfigError, self._parse, value)
            message = err.format_message()
            self.assertIn('[libvirt]hw_machine_type', message)
            self.assertIn(expected, message)
            self.assertNotIn('\n', message)

    def test_missing_config_file_refused(self):
        err = self.assertRaises(
            exception.ConfigError, config.parse_args,
            ['--config-file', '/nonexistent/nova.conf'],
            configure_logging=False)
        self.assertIn('/nonexistent/nova.conf', err.format_message())


class SampleConfigTests(nova_fixtures.TestCase):
    DATABASE = None

    def test_committed_sample_is_current(self):
        """etc/nova/nova.conf.sample is what `tox -e genconfig` writes now."""
        out = os.path.join(self.useFixture(fixtures.TempDir()).path,
                           'nova.conf.sample')
        generator = os.path.join(os.path.dirname(sys.executable),
                                 'oslo-config-generator')
        subprocess.run(
            [generator, '--config-file',
             os.path.join(ROOT, 'etc/nova/nova-config-generator.conf'),
             '--output-file', out], check=True, cwd=ROOT)
        with open(out) as f:
            generated = f.read()
        with open(os.path.join(ROOT, 'etc/nova/nova.conf.sample')) as f:
            committed = f.read()
        self.assertEqual(committed, generated,
                         'etc/nova/nova.conf.sample is stale: run '
                         'tox -e genconfig and commit the result')
