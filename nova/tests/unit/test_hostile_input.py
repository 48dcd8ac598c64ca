"""Hostile input, generated with Hypothesis, on every machine type command.

UUIDs that are malformed, unknown or of a deleted instance; machine types
with quotes, angle brackets, spaces, NUL bytes, unicode or 10,000
characters; --max-count values out of range or not numbers; malformed
``[libvirt]hw_machine_type`` entries; domain XML without a machine
attribute or with an odd one. Each gets its documented exit code
(doc/source/cli/nova-manage.rst), one clear line, no traceback and no
change to any database; and nothing unescaped reaches domain XML.

Commands run in-process (NUL bytes cannot be passed in a process's argv),
on SQLite, with a bounded number of examples per property.
"""

import re
import uuid as uuid_lib
import xml.etree.ElementTree as ET
from xml.sax import saxutils

import hypothesis
from hypothesis import strategies as st

from nova import exception
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit.cmd import test_manage_db
from nova.tests.unit.virt.libvirt import test_machine_type_utils
from nova.virt.libvirt import config as libvirt_config
from nova.virt.libvirt import guest as libvirt_guest

EXAMPLES = hypothesis.settings(max_examples=50, deadline=None,
                               database=None,
                               suppress_health_check=list(
                                   hypothesis.HealthCheck))
RECORDED = 'pc-i440fx-7.2'
# Exit code of a command line argparse refuses (an argument that looks
# like an option, for example).
USAGE = 127

# Text an attacker or a typo would send: the cases by name, then
# anything Hypothesis makes of them.
NASTY = st.sampled_from([
    '"q35"', "'pc'", '<pc/>', 'pc"><evil/>', 'pc q35', ' pc', 'pc\x00',
    'pc\x00<x/>', '\x00', 'q35\n', 'pc&amp;', '\u0440\u0441', 'pc-\u00e9',
    'p\u200bc', 'q35' * 3334, 'a' * 10000, 'a' * 256, '', ' ',
    "'; DROP TABLE instances; --", '../../etc/passwd', '%(x)s', '${x}',
])
HOSTILE_TEXT = st.one_of(
    NASTY,
    st.text(max_size=40),
    st.text(alphabet='<>"\'& \x00\t=\u00e9\u4e2d.-_', max_size=40),
    st.builds(lambda s, n: (s * n)[:10000], st.text(min_size=1, max_size=5),
              st.integers(1, 10000)),
)


def documented_syntax(value):
    """Whether ``value`` has the syntax the CLI reference gives a machine
    type: [A-Za-z0-9][A-Za-z0-9._-]*, at most 255 characters. Written out
    here, not taken from the code under test."""
    return (len(value) <= 255 and
            re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', value) is not None)


HOSTILE_MACHINE_TYPE = HOSTILE_TEXT.filter(
    lambda value: not documented_syntax(value))


def _valid_count(value):
    """Whether --max-count accepts ``value`` (int() syntax, 1 to 2**31-1)."""
    try:
        return 1 <= int(value) < 2 ** 31
    except ValueError:
        return False


HOSTILE_COUNT = st.one_of(
    st.sampled_from(['0', '-1', 'ten', str(10 ** 12), '1.5', '', '0x10',
                     '1e3', '\x001', str(2 ** 31)]),
    st.integers(max_value=0).map(str),
    st.integers(min_value=2 ** 31).map(str),
    HOSTILE_TEXT,
).filter(lambda value: not _valid_count(value))


class HostileCommandTestCase(test_machine_type_utils.MachineTypeTestMixin,
                             test_manage_db.ManageTestMixin,
                             nova_fixtures.TestCase):

    def setUp(self):
        super().setUp()
        self.config_file = self.write_cell_config()
        self.stopped = self.make(machine_type=RECORDED, vm_state='stopped')
        self.unrecorded = self.make(cell=1, host=None,
                                    vm_state='shelved_offloaded')
        deleted = self.make(machine_type=RECORDED)
        deleted.destroy()
        self.uuids = {'known': self.stopped.uuid, 'deleted': deleted.uuid,
                      'unknown': str(uuid_lib.uuid4())}
        self.before = self.snapshot()

    def run_refused(self, codes, *argv, config_file=None):
        """Run nova-manage; it must refuse with one of ``codes``, cleanly.

        Returns (code, stderr).
        """
        code, out, err = self.manage(
            *argv, config_file=config_file or self.config_file)
        self.assertIn(code, codes, (argv, out, err))
        self.assertNotIn('Traceback', out + err)
        if code == USAGE:
            # argparse: the usage, then one "nova-manage ...: error:"
            # line (the refused value it quotes may say "error:" too).
            self.assertEqual(1, len([
                line for line in err.splitlines()
                if line.startswith('nova-manage') and ': error: ' in line
            ]), err)
        else:
            lines = err.splitlines()
            self.assertEqual(1, len(lines), (argv, err))
            self.assertTrue(lines[0].startswith('ERROR: '), lines[0])
        self.assertEqual(self.before, self.snapshot())
        return code, err

    def uuid_for(self, kind, text):
        """A UUID of ``kind``, or ``text`` itself for 'malformed'."""
        return self.uuids.get(kind, text)

    @EXAMPLES
    @hypothesis.given(st.sampled_from(['deleted', 'unknown', 'malformed']),
                      HOSTILE_TEXT)
    def test_get_machine_type(self, kind, text):
        hypothesis.assume(kind != 'malformed' or not _is_uuid(text))
        self.run_refused((2, USAGE), 'libvirt', 'get_machine_type',
                         self.uuid_for(kind, text))

    @EXAMPLES
    @hypothesis.example('known', '', 'pc"><evil/>', True)
    @hypothesis.example('known', '', 'pc\x00', True)
    @hypothesis.example('known', '', 'a' * 10000, True)
    @hypothesis.given(st.sampled_from(['known', 'deleted', 'unknown',
                                       'malformed']),
                      HOSTILE_TEXT, HOSTILE_MACHINE_TYPE, st.booleans())
    def test_update_machine_type(self, kind, text, machine_type, force):
        hypothesis.assume(kind != 'malformed' or not _is_uuid(text))
        argv = ['libvirt', 'update_machine_type', self.uuid_for(kind, text),
                machine_type] + (['--force'] if force else [])
        # The syntax is checked first, whatever the instance or --force.
        self.run_refused((5, USAGE), *argv)

    @EXAMPLES
    @hypothesis.given(HOSTILE_TEXT, st.sampled_from([
        'list_unset_machine_type', 'machine_type_summary']))
    def test_cell_uuid_of_list_and_summary(self, text, command):
        hypothesis.assume(not _is_uuid(text))
        self.run_refused((2, USAGE), 'libvirt', command, '--cell-uuid', text)

    @EXAMPLES
    @hypothesis.given(HOSTILE_TEXT, HOSTILE_MACHINE_TYPE, st.booleans(),
                      st.booleans())
    def test_bulk_update_to_hostile_type(self, old, new, force, dry_run):
        argv = ['libvirt', 'bulk_update_machine_type', '--from', old,
                '--to', new]
        argv += (['--force'] if force else []) + (
            ['--dry-run'] if dry_run else [])
        self.run_refused((5, USAGE), *argv)

    @EXAMPLES
    @hypothesis.example('pc\x00', True)
    @hypothesis.given(HOSTILE_MACHINE_TYPE, st.booleans())
    def test_bulk_update_from_hostile_type(self, old, force):
        argv = ['libvirt', 'bulk_update_machine_type', '--from', old,
                '--to', 'pc-i440fx-8.0'] + (['--force'] if force else [])
        self.run_refused((5, USAGE), *argv)

    @EXAMPLES
    @hypothesis.given(HOSTILE_COUNT)
    def test_online_data_migrations_max_count(self, count):
        code, err = self.run_refused(
            (USAGE,), 'db', 'online_data_migrations', '--max-count', count)
        self.assertIn('--max-count', err)

    @EXAMPLES
    @hypothesis.example('${x}')
    @hypothesis.example('%(x)s')
    @hypothesis.example('pc\x00')
    @hypothesis.given(HOSTILE_TEXT.filter(
        lambda value: '\n' not in value and '\r' not in value))
    def test_hw_machine_type_configuration(self, machine_type):
        entry = 'x86_64=' + machine_type
        hypothesis.assume(not _valid_entry(entry))
        config_file = self.write_cell_config(
            libvirt={'hw_machine_type': entry})
        for argv in (['libvirt', 'get_machine_type', self.stopped.uuid],
                     ['db', 'online_data_migrations']):
            code, err = self.run_refused((1,), *argv,
                                         config_file=config_file)
            self.assertIn('hw_machine_type', err)


def _is_uuid(text):
    try:
        uuid_lib.UUID(text)
    except (ValueError, TypeError):
        return False
    return True


def _valid_entry(entry):
    """Whether nova.conf accepts ``entry`` in [libvirt]hw_machine_type.

    oslo.config strips an unquoted value, so a machine type with spaces
    around it is valid; '$' starts a substitution, which fails.
    """
    machine_type = entry.partition('=')[2].strip()
    return '$' not in entry and documented_syntax(machine_type)


class DomainXMLTestCase(nova_fixtures.TestCase):
    """Nothing unescaped reaches domain XML; odd XML is never recorded."""

    DATABASE = None

    @EXAMPLES
    @hypothesis.given(HOSTILE_TEXT)
    def test_guest_xml_refuses_or_round_trips(self, machine_type):
        guest = libvirt_config.LibvirtConfigGuest(
            virt_type='qemu', name='instance-x', uuid=str(uuid_lib.uuid4()),
            arch='x86_64', machine_type=machine_type)
        try:
            xml = guest.to_xml()
        except exception.InvalidMachineType as exc:
            self.assertFalse(documented_syntax(machine_type))
            self.assertEqual(1, len(exc.format_message().splitlines()))
            return
        self.assertTrue(documented_syntax(machine_type))
        root = ET.fromstring(xml)
        self.assertEqual(1, len(root.findall('./os/type')))
        self.assertEqual(machine_type, root.find('./os/type').get('machine'))
        self.assertEqual(['name', 'uuid', 'memory', 'vcpu', 'os'],
                         [child.tag for child in root])

    @EXAMPLES
    @hypothesis.given(st.one_of(
        st.none(), HOSTILE_TEXT.filter(lambda value: '\x00' not in value)))
    def test_odd_machine_attribute_is_never_read_as_a_type(self, attribute):
        machine = '' if attribute is None else (
            ' machine=%s' % saxutils.quoteattr(attribute))
        xml = ('<domain type="qemu"><os><type arch="x86_64"%s>hvm</type>'
               '</os></domain>' % machine)
        parsed = libvirt_guest.parse_machine_type(xml)
        if attribute is not None and documented_syntax(attribute):
            self.assertEqual(attribute, parsed)
        else:
            self.assertIsNone(parsed)

    @EXAMPLES
    @hypothesis.given(HOSTILE_TEXT)
    def test_malformed_domain_xml_gives_none_or_a_valid_type(self, text):
        parsed = libvirt_guest.parse_machine_type(text)
        self.assertTrue(parsed is None or documented_syntax(parsed))
