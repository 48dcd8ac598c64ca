"""What the one-instance commands import: their start-up time.

A fresh Python runs the command as the console script would, then lists
which of the heavy modules it loaded. get_machine_type and
update_machine_type do one or two look-ups; importing SQLAlchemy's ORM
(through oslo.db's enginefacade), oslo.log, PrettyTable, Alembic or
libvirt would cost them more than that work (benchmarks/commands.py
measures the time itself).
"""

import json
import os
import subprocess
import sys

import testtools

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


# A console script in a fresh Python: its main prints sys.argv[2] lines,
# then does sys.argv[1].
CONSOLE_SCRIPT = '''
import sys
from nova.cmd import common

def main():
    action = sys.argv[1]
    for n in range(int(sys.argv[2])):
        print('line %d' % n)
    print('done', file=sys.stderr)
    if action == 'return':
        return 3
    if action == 'exit-message':
        sys.exit('the message')
    if action == 'exit-none':
        sys.exit()

common.console_script(main)
'''


class ConsoleScriptTests(testtools.TestCase):
    """The console scripts end with os._exit (common.exit_now): what the
    interpreter's clean-up would have done for the operator still
    happens."""

    def run_script(self, action, lines=100000, stdout=subprocess.PIPE):
        # stdout buffered, as an operator's is by default.
        env = dict(os.environ)
        env.pop('PYTHONUNBUFFERED', None)
        return subprocess.run([sys.executable, '-c', CONSOLE_SCRIPT, action,
                               str(lines)],
                              stdout=stdout, stderr=subprocess.PIPE,
                              text=True, timeout=120, env=env)

    def test_every_line_reaches_a_pipe_and_the_code_is_main_s(self):
        done = self.run_script('return')
        self.assertEqual(3, done.returncode)
        lines = done.stdout.splitlines()
        self.assertEqual(100000, len(lines))
        self.assertEqual('line 99999', lines[-1])
        self.assertEqual('done\n', done.stderr)

    def test_sys_exit_codes_are_python_s(self):
        no_code = self.run_script('exit-none')
        self.assertEqual(0, no_code.returncode)
        message = self.run_script('exit-message')
        self.assertEqual(1, message.returncode)
        self.assertEqual('done\nthe message\n', message.stderr)

    def test_a_reader_gone_makes_the_code_120(self):
        # One line, still in the buffer when main returns; the pipe's
        # reader is gone, so flushing it fails.
        read_end, write_end = os.pipe()
        os.close(read_end)
        with os.fdopen(write_end, 'w') as reader_gone:
            done = self.run_script('exit-none', lines=1, stdout=reader_gone)
        self.assertEqual(120, done.returncode)
