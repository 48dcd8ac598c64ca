"""nova-compute: start-up, errors and exit codes, as a real process.

The service runs as the console script, on the test's SQLite databases and
its own process's libvirt test driver (test:///default).
"""

import io
import os
import queue
import signal
import subprocess
import sys
import threading

import fixtures

from nova.cmd import compute as compute_cmd
from nova import config
import nova.conf
from nova.db.main import api as db
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.virt.libvirt import driver as libvirt_driver

CONF = nova.conf.CONF
NOVA_COMPUTE = os.path.join(os.path.dirname(sys.executable), 'nova-compute')
UNREACHABLE_URI = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'
# Seconds a started service gets to say it runs, and to stop on a signal.
TIMEOUT = 30


class NovaComputeProcessTestCase(nova_fixtures.TestCase):

    def write_config(self, **sections):
        """A config file for the test's databases and libvirt test driver."""
        values = {
            'DEFAULT': {'host': 'cmd-host',
                        'state_path': self.conf_fixture.state_path},
            'database': {'connection': CONF.database.connection},
            'api_database': {'connection': CONF.api_database.connection},
            'libvirt': {'connection_uri': 'test:///default',
                        'virt_type': 'test'},
        }
        for section, options in sections.items():
            values.setdefault(section, {}).update(options)
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        config.write_config_file(path, values)
        return path

    def run_compute(self, *argv):
        """Run nova-compute to its end; return the CompletedProcess."""
        return subprocess.run([NOVA_COMPUTE, *argv], capture_output=True,
                              text=True, timeout=TIMEOUT)

    def start_compute(self, config_file):
        """Start nova-compute; return it once it logged that it runs."""
        proc = subprocess.Popen(
            [NOVA_COMPUTE, '--config-file', config_file],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self._kill, proc)
        lines = queue.Queue()
        threading.Thread(target=self._read_lines, args=(proc.stdout, lines),
                         daemon=True).start()
        output = ''
        while 'nova-compute running' not in output:
            try:
                line = lines.get(timeout=TIMEOUT)
            except queue.Empty:
                line = None
            if not line:
                self.fail('nova-compute did not start: %s' % output)
            output += line
        return proc

    @staticmethod
    def _read_lines(stream, lines):
        """Put every line of ``stream`` on ``lines``; '' at its end."""
        for line in stream:
            lines.put(line)
        lines.put('')

    @staticmethod
    def _kill(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()

    def assertOneErrorLine(self, result, *words):
        lines = result.stderr.splitlines()
        self.assertEqual(1, len(lines), result.stderr)
        self.assertTrue(lines[0].startswith('ERROR: '), lines[0])
        self.assertNotIn('Traceback', result.stderr + result.stdout)
        for word in words:
            self.assertIn(word, lines[0])

    def test_invalid_configuration(self):
        config_file = self.write_config(
            libvirt={'hw_machine_type': 'x86_64'})
        result = self.run_compute('--config-file', config_file)
        self.assertEqual(1, result.returncode)
        self.assertOneErrorLine(result, '[libvirt]hw_machine_type', 'x86_64')

    def test_missing_configuration_file(self):
        missing = os.path.join(self.conf_fixture.state_path, 'missing.conf')
        result = self.run_compute('--config-file', missing)
        self.assertEqual(1, result.returncode)
        self.assertOneErrorLine(result, missing)

    def test_unreachable_libvirt_retried_then_fails(self):
        config_file = self.write_config(
            libvirt={'connection_uri': UNREACHABLE_URI},
            compute={'libvirt_connect_retries': 1,
                     'libvirt_connect_retry_interval': 0})
        instance = self.create_instance(host='cmd-host', vm_state='active')
        result = self.run_compute('--config-file', config_file)
        self.assertEqual(1, result.returncode)
        lines = result.stderr.splitlines()
        self.assertEqual(2, len(lines), result.stderr)
        for line in lines:
            self.assertIn(UNREACHABLE_URI, line)
        self.assertIn('attempt 1 of 2, retrying', lines[0])
        self.assertIn('attempt 2 of 2, giving up', lines[1])
        self.assertNotIn('Traceback', result.stderr + result.stdout)
        # Nothing was registered or recorded from guesses.
        self.assertEqual([], objects.ServiceList.get_by_binary(
            self.context, 'nova-compute'))
        self.assertEqual({}, db.instance_system_metadata_get_many(
            self.context, [instance.uuid])[instance.uuid])

    def test_runs_until_sigterm(self):
        instance = self.create_instance(
            host='cmd-host', vm_state='stopped',
            system_metadata={'image_hw_machine_type': 'q35'})
        proc = self.start_compute(self.write_config())
        service = objects.Service.get_by_host_and_binary(
            self.context, 'cmd-host', 'nova-compute')
        self.assertEqual(1, service.version)
        # init_host ran: its process has no domain, so it resolved.
        self.assertEqual({'image_hw_machine_type': 'q35',
                          'hw_machine_type': 'q35'},
                         db.instance_system_metadata_get_many(
                             self.context, [instance.uuid])[instance.uuid])
        self.assertIsNone(proc.poll())
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, proc.wait(TIMEOUT))
        self.assertEqual('', proc.stderr.read())

    def test_a_burst_of_signals_as_it_settles_stops_it(self):
        # Signals sent from the moment it says it runs, as a service
        # manager's stop would: the service must not hang in its own
        # wait (a Python signal handler setting a threading.Event did,
        # when a signal came while the main thread held the event's
        # lock).
        for _ in range(5):
            proc = self.start_compute(self.write_config())
            for _ in range(200):
                proc.send_signal(signal.SIGTERM)
            self.assertEqual(0, proc.wait(TIMEOUT))
            self.assertEqual('', proc.stderr.read())

    def test_stops_on_sigint(self):
        proc = self.start_compute(self.write_config())
        proc.send_signal(signal.SIGINT)
        self.assertEqual(0, proc.wait(TIMEOUT))


class ConnectLibvirtTestCase(nova_fixtures.TestCase):
    """connect_libvirt's back-off, without waiting for it."""

    DATABASE = None

    class RecordingEvent(threading.Event):
        """A stop event whose waits return at once and are remembered."""

        def __init__(self, stop_after=None):
            super().__init__()
            self.waits = []
            self.stop_after = stop_after

        def wait(self, timeout=None):
            self.waits.append(timeout)
            if len(self.waits) == self.stop_after:
                self.set()
            return self.is_set()

    def setUp(self):
        super().setUp()
        self.stderr = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))

    def connect(self, uri, retries, interval, stop):
        driver = libvirt_driver.LibvirtDriver('compute1', uri=uri)
        return compute_cmd.connect_libvirt(driver, retries, interval, stop)

    def test_each_retry_waits_twice_as_long(self):
        stop = self.RecordingEvent()
        self.assertFalse(self.connect(UNREACHABLE_URI, 3, 0.5, stop))
        self.assertEqual([0.5, 1.0, 2.0], stop.waits)
        self.assertEqual(4, len(self.stderr.getvalue().splitlines()))

    def test_no_retries(self):
        stop = self.RecordingEvent()
        self.assertFalse(self.connect(UNREACHABLE_URI, 0, 1, stop))
        self.assertEqual([], stop.waits)

    def test_stop_while_waiting(self):
        stop = self.RecordingEvent(stop_after=1)
        self.assertFalse(self.connect(UNREACHABLE_URI, 5, 1, stop))
        self.assertEqual([1], stop.waits)

    def test_reachable(self):
        stop = self.RecordingEvent()
        self.assertTrue(self.connect('test:///default', 5, 1, stop))
        self.assertEqual([], stop.waits)
