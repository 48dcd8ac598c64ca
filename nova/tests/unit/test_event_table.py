"""The contributor guide's event table names the code as it is.

doc/source/contributor/architecture.rst, "Events", says for each event
what records, uses or clears the machine type, and where in the code.
Every operation of ComputeManager must have its row, and every name the
table gives for the code must exist, so a renamed or a new operation
shows here before the table goes stale.
"""

import importlib
import os
import re

import testtools

from nova.compute import manager

GUIDE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))),
    'doc', 'source', 'contributor', 'architecture.rst')
# Where a name the table gives without its module is looked for.
SHORT_NAME_HOMES = (
    'nova.compute', 'nova.compute.manager', 'nova.virt.libvirt.driver',
    'nova.compute.manager.ComputeManager',
    'nova.virt.libvirt.driver.LibvirtDriver',
    'nova.compute.machine_type_records',
    'nova.compute.recovery',
    'nova.virt.libvirt.machine_type_utils',
    'nova.exception',
    'nova.objects',
    'nova.cmd.manage',
)
# Literal values the table quotes: statuses, SQL, column names.
NOT_CODE = {'UPDATE', 'accepted', 'done', 'evacuation', 'host', 'node',
            'migrations'}


def event_table():
    """The "Events" section of the guide, up to the next section."""
    with open(GUIDE) as f:
        text = f.read()
    start = text.index('Events: what records')
    end = text.index('\nCold migrations\n', start)
    return text[start:end]


def resolve(path):
    """The object a dotted name like ``pkg.mod.Class.attr`` names."""
    parts = path.split('.')
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def exists(name):
    """Whether ``name`` (dotted or not) is in one of the code's homes."""
    for home in ('',) + SHORT_NAME_HOMES:
        try:
            resolve(home + '.' + name if home else name)
            return True
        except (ImportError, AttributeError):
            continue
    return False


class EventTableTests(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.table = event_table()
        self.names = set(re.findall(r'``([A-Za-z_][A-Za-z_.]*)``',
                                    self.table)) - NOT_CODE

    def test_every_operation_has_its_row(self):
        operations = {name for name in vars(manager.ComputeManager)
                      if not name.startswith('_')
                      and callable(getattr(manager.ComputeManager, name))}
        named = {name.rsplit('.', 1)[-1] for name in self.names}
        self.assertEqual(set(), operations - named)

    def test_every_name_in_the_table_exists(self):
        self.assertEqual([], sorted(name for name in self.names
                                    if not exists(name)))
