"""Private PostgreSQL and MariaDB servers that a test may stop and start.

The shared servers are never stopped: an outage test starts a server of
its own in a temporary directory, on a free port, with the user
``openstack_citest`` and a password of the test's choosing, and removes
it at cleanup.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import fixtures
import sqlalchemy as sa

from nova.db import provision
from nova.tests import fixtures as nova_fixtures

USER = 'openstack_citest'
START_TIMEOUT = 60


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class PrivateServer(fixtures.Fixture):
    """A database server of one test; ``url(name)`` reaches a database."""

    DRIVER = None

    def __init__(self, password):
        super().__init__()
        self.password = password

    def _setUp(self):
        # Not under the test's nested temporary directory: that one is
        # private to root, and PostgreSQL runs as postgres.
        self.dir = tempfile.mkdtemp(prefix='nova-private-db-', dir='/tmp')
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.port = free_port()
        self.install()
        self.start()
        self.addCleanup(self.stop)

    def url(self, database, password=None):
        return sa.engine.URL.create(
            self.DRIVER, username=USER,
            password=self.password if password is None else password,
            host='127.0.0.1', port=self.port,
            database=database).render_as_string(hide_password=False)

    def create_database(self, name):
        """Create database ``name``; return its URL."""
        provision.create_database(self.url(self.ADMIN_DATABASE), name)
        return self.url(name)

    def wait_until_up(self):
        """Wait until the server accepts a login."""
        nova_fixtures.wait_for_login(self.url(self.ADMIN_DATABASE),
                                     START_TIMEOUT, 0.2)


class PrivatePostgres(PrivateServer):
    """PostgreSQL run by the ``postgres`` user when the test runs as root."""

    DRIVER = 'postgresql+psycopg2'
    ADMIN_DATABASE = 'postgres'

    def _run(self, *argv):
        bindir = sorted(glob.glob('/usr/lib/postgresql/*/bin'))[-1]
        argv = [os.path.join(bindir, argv[0]), *argv[1:]]
        if os.getuid() == 0:
            argv = ['runuser', '-u', 'postgres', '--', *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def install(self):
        if os.getuid() == 0:
            entry = pwd.getpwnam('postgres')
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        pwfile = os.path.join(self.dir, 'pw')
        with open(pwfile, 'w') as f:
            f.write(self.password)
        if os.getuid() == 0:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run('initdb', '-D', os.path.join(self.dir, 'data'), '-U', USER,
                  '--pwfile', pwfile, '-A', 'scram-sha-256')

    def start(self):
        self._run('pg_ctl', '-D', os.path.join(self.dir, 'data'), '-w',
                  '-l', os.path.join(self.dir, 'log'),
                  '-o', '-p %d -k %s -c listen_addresses=127.0.0.1'
                  % (self.port, self.dir), 'start')
        self.wait_until_up()

    def stop(self):
        """Stop at once, as a crash or a failover would."""
        try:
            self._run('pg_ctl', '-D', os.path.join(self.dir, 'data'), '-w',
                      '-m', 'immediate', 'stop')
        except subprocess.CalledProcessError:
            pass   # already stopped


class PrivateMariaDB(PrivateServer):
    """mariadbd on a data directory of its own."""

    DRIVER = 'mysql+pymysql'
    ADMIN_DATABASE = 'mysql'

    def install(self):
        subprocess.run(
            ['mariadb-install-db', '--no-defaults',
             '--datadir=' + os.path.join(self.dir, 'data'), '--user=root',
             '--auth-root-authentication-method=normal'],
            check=True, capture_output=True, timeout=120)
        self.server = None
        self.start(grant=True)

    def _socket(self):
        return os.path.join(self.dir, 'mysqld.sock')

    def start(self, grant=False):
        if self.server is not None and self.server.poll() is None:
            return
        self.server = subprocess.Popen(
            ['mariadbd', '--no-defaults',
             '--datadir=' + os.path.join(self.dir, 'data'),
             '--port=%d' % self.port, '--socket=' + self._socket(),
             '--bind-address=127.0.0.1', '--user=root',
             '--pid-file=' + os.path.join(self.dir, 'mysqld.pid'),
             '--log-error=' + os.path.join(self.dir, 'error.log')],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if grant:
            self._create_user()
        self.wait_until_up()

    def _create_user(self):
        """The test user, with the password; root logs in by socket."""
        engine = sa.create_engine(
            'mysql+pymysql://root@localhost/mysql?unix_socket='
            + self._socket())
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with engine.begin() as conn:
                    # localhost too: the anonymous ''@localhost user the
                    # install creates would match before '%'.
                    for host in ('%', 'localhost'):
                        conn.execute(sa.text(
                            "CREATE USER '%s'@'%s' IDENTIFIED BY :pw"
                            % (USER, host)), {'pw': self.password})
                        conn.execute(sa.text(
                            "GRANT ALL ON *.* TO '%s'@'%s'" % (USER, host)))
                break
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        engine.dispose()

    def stop(self):
        """Kill the server (no clean shutdown), as a crash would."""
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait()


class UnixSocketProxy(fixtures.Fixture):
    """Serve ``path`` by forwarding each connection to ``target``.

    Stands for a libvirtd that comes back: nova-compute is pointed at
    ``path`` before the proxy listens there.
    """

    def __init__(self, path, target='/var/run/libvirt/libvirt-sock'):
        super().__init__()
        self.path = path
        self.target = target

    def _setUp(self):
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.addCleanup(self.listener.close)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return   # closed at cleanup
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
