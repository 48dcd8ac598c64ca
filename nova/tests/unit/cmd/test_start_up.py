"""What the one-instance commands import: their start-up time.

A fresh Python runs the command as the console script would, then lists
which of the heavy modules it loaded. get_machine_type and
update_machine_type do one or two look-ups; importing SQLAlchemy's ORM
(through oslo.db's enginefacade), oslo.log, PrettyTable, Alembic or
libvirt would cost them more than that work (benchmarks/commands.py
measures the time itself).
"""

import json
import subprocess
import sys

from nova.tests.unit.cmd import test_manage_libvirt

# Modules none of the measured commands needs, and what pulled each in
# before the commands were made to start fast.
HEAVY = (
    'sqlalchemy.orm',                   # declarative models, enginefacade
    'oslo_db.sqlalchemy.enginefacade',  # the services' transactions
    'oslo_log.log',                     # nova.config, for the services
    'prettytable',                      # the table-printing commands
    'alembic',                          # db sync
    'libvirt',                          # the driver
    'sqlalchemy.dialects.mysql',        # MySQL table options in models
)

RUN_AND_LIST = '''
import json, sys
from nova.cmd import manage
try:
    manage.main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
heavy = %r
print(json.dumps([code, sorted(m for m in heavy if m in sys.modules)]),
      file=open(sys.argv[1], 'w'))
''' % (HEAVY,)


class StartUpImportTests(test_manage_libvirt.LibvirtCommandTestCase):

    def run_and_list(self, *argv):
        """(exit code, heavy modules loaded) of nova-manage ``argv``."""
        result_file = self.config_file + '.imports'
        subprocess.run([sys.executable, '-c', RUN_AND_LIST, result_file,
                        '--config-file', self.config_file] + list(argv),
                       check=True, capture_output=True, timeout=120)
        with open(result_file) as f:
            return tuple(json.load(f))

    def test_get_machine_type_loads_nothing_heavy(self):
        uuid = self.create_instance(self.cell_context(), system_metadata={
            'hw_machine_type': 'pc-q35-7.2'}).uuid
        self.assertEqual((0, []), self.run_and_list(
            'libvirt', 'get_machine_type', uuid))

    def test_update_machine_type_loads_nothing_heavy(self):
        uuid = self.create_instance(
            self.cell_context(), vm_state='stopped',
            system_metadata={'hw_machine_type': 'pc-q35-7.1'}).uuid
        self.assertEqual((0, []), self.run_and_list(
            'libvirt', 'update_machine_type', uuid, 'pc-q35-7.2'))

    def test_a_refused_update_loads_nothing_heavy(self):
        uuid = self.create_instance(
            self.cell_context(), vm_state='stopped',
            system_metadata={'hw_machine_type': 'pc-q35-7.1'}).uuid
        self.assertEqual((4, []), self.run_and_list(
            'libvirt', 'update_machine_type', uuid, 'pc-q35-6.2'))

    def test_help_loads_nothing_heavy(self):
        self.assertEqual((0, []), self.run_and_list('--help'))
