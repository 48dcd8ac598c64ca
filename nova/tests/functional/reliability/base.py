"""What the reliability tests share: a seeded cell, console scripts, domains.

A cell is seeded with benchmarks/seed.py (the shape of a real cloud half
way through the upgrade: 30% of instances unrecorded, 5% without a host)
at a random id offset, so that the seeded instance uuids never collide
with the domains other tests define on the shared libvirtd.
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import fixtures
import libvirt
import sqlalchemy as sa

from benchmarks import seed as seed_module
from nova import config
from nova.db import utils as db_utils
from nova.tests import fixtures as nova_fixtures
from nova.virt.libvirt import config as libvirt_config

BIN = os.path.dirname(sys.executable)
NOVA_MANAGE = os.path.join(BIN, 'nova-manage')
NOVA_COMPUTE = os.path.join(BIN, 'nova-compute')
NOVA_STATUS = os.path.join(BIN, 'nova-status')
KEY = 'hw_machine_type'
# The cell size.
SEEDED = 20000
# Seconds any one process or wait may take before the test fails.
TIMEOUT = 120
LIBVIRT_URI = 'qemu:///system'
VIRT_TYPE = 'kvm' if os.path.exists('/dev/kvm') else 'qemu'
RUNNING = 'nova-compute running'


class Process:
    """A console script with its stdout and stderr read line by line.

    Children run unbuffered so that a progress line is seen when printed,
    which lets a test act (kill, stop a server) at a known point of a run.
    """

    def __init__(self, argv, env=None):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
        self._lines = {'out': [], 'err': []}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name),
                             daemon=True)
            for stream, name in ((self.proc.stdout, 'out'),
                                 (self.proc.stderr, 'err'))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name):
        for line in stream:
            with self._changed:
                self._lines[name].append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stdout(self):
        return ''.join(self._lines['out'])

    @property
    def stderr(self):
        return ''.join(self._lines['err'])

    def count(self, text, stream='out'):
        """How many lines of ``stream`` so far contain ``text``."""
        return sum(text in line for line in list(self._lines[stream]))

    def wait_for(self, text, stream='out', times=1, timeout=TIMEOUT):
        """Wait until ``times`` lines of ``stream`` contain ``text``.

        Returns False if the process ended (or ``timeout`` passed) first.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count(text, stream) < times:
                ended = not any(r.is_alive() for r in self._readers)
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def finish(self, timeout=TIMEOUT):
        """Wait for the exit; return the exit code (output fully read).

        A process still running after ``timeout`` is killed and fails the
        test with what it printed.
        """
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('still running after %ss: %s'
                                 % (timeout, self.describe()))
        for reader in self._readers:
            reader.join(timeout)
        return code

    def signal(self, signum):
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self):
        """kill -9 the process if it still runs; return its exit code.

        For clean-ups. A test whose point is the kill uses kill_running.
        """
        self.signal(signal.SIGKILL)
        return self.finish()

    def kill_running(self):
        """kill -9 the process, which must still be running.

        Fails the test if it had ended before the signal, or ended by
        itself meanwhile: a kill that landed on a finished run proves
        nothing. Returns its status, -SIGKILL.
        """
        if self.proc.poll() is not None:
            raise AssertionError('%s had already exited %s before the '
                                 'kill: %s' % (self.argv[0],
                                               self.proc.returncode,
                                               self.describe()))
        self.proc.send_signal(signal.SIGKILL)
        code = self.finish()
        if code != -signal.SIGKILL:
            raise AssertionError('%s exited %s, not by the kill: %s'
                                 % (self.argv[0], code, self.describe()))
        return code

    def describe(self):
        return '%s\nstdout:\n%s\nstderr:\n%s' % (
            ' '.join(self.argv), self.stdout, self.stderr)


# Tests wait on real state, never on a fixed sleep.
poll = nova_fixtures.poll


def write_config(directory, sections):
    """Write ``{section: {option: value}}`` as nova.conf; return its path."""
    path = os.path.join(directory, 'nova-%d.conf' % random.getrandbits(32))
    config.write_config_file(path, sections)
    return path


def domain_xml(instance_uuid, machine_type='pc'):
    """A diskless guest of ``machine_type``, as the driver would define."""
    return libvirt_config.LibvirtConfigGuest(
        virt_type=VIRT_TYPE, name='instance-' + instance_uuid,
        uuid=instance_uuid, arch='x86_64',
        machine_type=machine_type).to_xml()


class ReliabilityTestCase(nova_fixtures.TestCase):
    """A test on a cell seeded as the issue asks; modules pick backends."""

    # Set by nova_fixtures.backend_variants.
    DATABASE = None

    def setUp(self):
        super().setUp()
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        self.cell_url, self.api_url = self.databases()
        self.engine = sa.create_engine(self.cell_url)
        self.addCleanup(self.engine.dispose)
        self.seed_max_sysmeta_id = 0

    def databases(self):
        """(cell URL, API URL) of the test's cell; ``self.cells`` maps it."""
        return self.db.cell_urls[0], self.db.api_url

    # -- database -------------------------------------------------------------

    def execute(self, sql, **params):
        """Run ``sql`` on the cell in its own transaction; return all rows."""
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return result.fetchall() if result.returns_rows else None

    def seed(self, count=SEEDED):
        """Seed the cell (and its mappings) with ``count`` instances."""
        start = random.randrange(10 ** 8, 10 ** 9, 1000)
        seed_module.seed(self.cell_url, self.api_url, count,
                         self.cells[0].uuid, start=start,
                         log=lambda *args: None)
        self.seed_max_sysmeta_id = self.execute(
            'SELECT max(id) FROM instance_system_metadata')[0][0]
        self.analyze()

    def analyze(self):
        """Give the planner statistics, as a cloud's database has them.

        Right after a bulk load PostgreSQL has none until autovacuum runs,
        and plans the anti-join of the online migration fifty times slower
        than it does once they exist.
        """
        if self.engine.dialect.name == 'postgresql':
            self.execute('ANALYZE')
        else:
            self.execute('ANALYZE TABLE instances, instance_system_metadata')

    def sessions(self, sql_start):
        """Other sessions of this database running a statement that starts
        with ``sql_start``: [(session, what it waits for or its state)].
        """
        if self.engine.dialect.name == 'postgresql':
            return self.execute(
                "SELECT pid, coalesce(wait_event_type, state) "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state <> 'idle' "
                "AND query LIKE :q",
                q=sql_start + '%')
        return self.execute(
            "SELECT id, state FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID() "
            "AND info LIKE :q", q=sql_start + '%')

    def records(self):
        """{uuid: value} of every live hw_machine_type row of the cell."""
        return dict(self.execute(
            'SELECT instance_uuid, value FROM instance_system_metadata '
            'WHERE %s = :key AND deleted = 0' % self.key_col, key=KEY))

    @property
    def key_col(self):
        """The ``key`` column, quoted for the backend (a MySQL keyword)."""
        family = db_utils.backend_family(self.engine.dialect.name)
        return '`key`' if family == 'mysql' else '"key"'

    def duplicates(self):
        """Instances with more than one live hw_machine_type row."""
        return self.execute(
            'SELECT instance_uuid, count(*) FROM instance_system_metadata '
            'WHERE %s = :key AND deleted = 0 GROUP BY instance_uuid '
            'HAVING count(*) > 1' % self.key_col, key=KEY)

    def unrecorded(self, where):
        """Live instances matching ``where`` (SQL on ``i``) with no record."""
        return [row[0] for row in self.execute(
            'SELECT i.uuid FROM instances i WHERE i.deleted = 0 AND (%s) '
            'AND NOT EXISTS (SELECT 1 FROM instance_system_metadata s '
            'WHERE s.instance_uuid = i.uuid AND s.%s = :key '
            'AND s.deleted = 0)' % (where, self.key_col), key=KEY)]

    def forget_new_records(self):
        """Delete every sysmeta row written after seeding."""
        self.execute('DELETE FROM instance_system_metadata WHERE id > :id',
                     id=self.seed_max_sysmeta_id)

    def digest(self):
        """A checksum of every row of the cell's instance tables."""
        digest = hashlib.sha256()
        for table in ('instances', 'instance_system_metadata'):
            for row in self.execute('SELECT * FROM %s ORDER BY id' % table):
                digest.update(repr(tuple(row)).encode())
        return digest.hexdigest()

    # -- processes ------------------------------------------------------------

    def config(self, **sections):
        """A config file for the test's databases, plus ``sections``."""
        values = {
            'DEFAULT': {'state_path': self.conf_fixture.state_path},
            'database': {'connection': self.cell_url},
            'api_database': {'connection': self.api_url},
            'libvirt': {'connection_uri': LIBVIRT_URI,
                        'virt_type': VIRT_TYPE,
                        'hw_machine_type': 'x86_64=q35'},
        }
        for section, options in sections.items():
            values.setdefault(section, {}).update(options)
        return write_config(self.tempdir, values)

    def start(self, script, config, *argv):
        """Start a console script with ``config``; killed at cleanup."""
        process = Process([script, '--config-file', config, *argv])
        self.addCleanup(process.kill)
        return process

    def assertClean(self, process, code=0):
        """``process`` exited ``code`` with no error and no traceback."""
        self.assertEqual(code, process.finish(), process.describe())
        self.assertNotIn('Traceback', process.stdout + process.stderr)
        self.assertNotIn('ERROR', process.stderr, process.describe())

    # -- libvirt --------------------------------------------------------------

    def libvirt(self):
        """A connection to the shared libvirtd (skip or fail without it)."""
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            conn = libvirt.open(LIBVIRT_URI)
        except libvirt.libvirtError as err:
            nova_fixtures.unavailable(self, 'libvirtd (%s)' % err)
        self.addCleanup(conn.close)
        return conn

    def define_domains(self, conn, uuids, machine_type='pc'):
        """Define a stopped domain per uuid; return {uuid: its machine type}.

        The type is what libvirt reports back (versioned for an alias).
        """
        defined = {}
        for instance_uuid in uuids:
            domain = conn.defineXML(domain_xml(instance_uuid, machine_type))
            self.addCleanup(remove_domain, conn, instance_uuid)
            defined[instance_uuid] = xml_machine_type(domain.XMLDesc(0))
        return defined


def xml_machine_type(xml):
    """The machine attribute of /domain/os/type, read with ElementTree.

    Not with the parser the recorders use: what a test expects must not
    share a bug with what it checks.
    """
    return ET.fromstring(xml).find('./os/type').get('machine')


def remove_domain(conn, instance_uuid):
    """Stop and undefine the domain of ``instance_uuid`` if there is one."""
    try:
        domain = conn.lookupByUUIDString(instance_uuid)
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    except libvirt.libvirtError:
        pass
