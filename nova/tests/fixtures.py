"""Test fixtures: real databases (SQLite, MariaDB, PostgreSQL) and cells.

MariaDB and PostgreSQL follow oslo.db's opportunistic convention: the
user and database ``openstack_citest`` (created by tools/test-setup.sh);
each test gets a database of its own, dropped afterwards. When a server
cannot be reached the test is skipped, except under CI=true, where it
fails: CI must never pass by skipping what it is meant to test.
"""

import atexit
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid as uuid_lib

import fixtures
from oslo_config import fixture as config_fixture
import sqlalchemy as sa
import testtools

from nova import context
import nova.conf
from nova.db.api import api as api_db
from nova.db.main import api as main_db
from nova.db import migration
from nova.db import provision
from nova.db import transactions
from nova import objects

CONF = nova.conf.CONF

CITEST = 'openstack_citest'
ADMIN_URLS = {
    'mysql': 'mysql+pymysql://%s:%s@127.0.0.1/%s' % (CITEST, CITEST, CITEST),
    'postgresql': 'postgresql+psycopg2://%s:%s@127.0.0.1/%s'
                  % (CITEST, CITEST, CITEST),
    # The same MariaDB server through SQLAlchemy's MariaDB dialect, whose
    # name is 'mariadb', not 'mysql': every MySQL code path must take it.
    'mariadb': 'mariadb+pymysql://%s:%s@127.0.0.1/%s'
               % (CITEST, CITEST, CITEST),
}
BACKENDS = ('sqlite', 'mysql', 'postgresql')
# backend_variants of the modules that also run through the MariaDB
# dialect (the database layer, the commands, the upgrade): the rest of
# the functional tier runs on 'mysql' and 'postgresql'.
WITH_MARIADB_URL = ('mysql', 'mariadb', 'postgresql')
# The admin URL of each node of the MariaDB Galera cluster that
# tools/test-setup.sh starts (tools/galera.sh).
GALERA_URLS = [
    'mysql+pymysql://%s:%s@127.0.0.1:%d/%s' % (CITEST, CITEST, port, CITEST)
    for port in (4306, 4307, 4308)]


def in_ci():
    return os.environ.get('CI') == 'true'


def unavailable(test, what):
    """Skip a test whose service is missing; fail it under CI=true."""
    if in_ci():
        test.fail('%s is not available, and CI=true requires it' % what)
    test.skipTest('%s is not available' % what)


class ConfFixture(config_fixture.Config):
    """CONF for one test: state in a temporary directory, defaults reset."""

    def setUp(self):
        super().setUp()
        state_path = self.useFixture(fixtures.TempDir()).path
        self.config(state_path=state_path)
        self.config(connection_uri='test:///default', virt_type='test',
                    group='libvirt')
        self.state_path = state_path


def create_database(test, server_url, db_name, what, template=None):
    """provision.create_database, through ``server_url``; return the new
    database's URL. A server that cannot be reached skips the test, or
    fails it under CI (``what`` names the server)."""
    try:
        return provision.create_database(server_url, db_name,
                                         template=template)
    except sa.exc.OperationalError:
        unavailable(test, what)


def poll(check, timeout=120, interval=0.02):
    """Call ``check`` until it returns something true; return that, or
    False once ``timeout`` seconds have passed. Tests wait on real state
    this way, never on a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result or False
        time.sleep(interval)


def start_thread(fn, errors):
    """Run ``fn()`` in a new thread; what it raises goes to ``errors``."""
    def run():
        try:
            fn()
        except Exception as exc:
            errors.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for_login(url, timeout, interval):
    """Wait until ``url`` accepts a login; raise its error after
    ``timeout`` seconds."""
    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect():
                    return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(interval)
    finally:
        engine.dispose()


class Database(fixtures.Fixture):
    """A new database on ``backend``; ``url`` points at it.

    Empty, or with ``schema=(database, revision)`` already migrated to
    that revision (None: head) of migration.API or migration.MAIN.
    ``db_name`` fixes the server-side database name (default: random,
    starting with ``prefix``).
    """

    def __init__(self, test, backend, name='nova', db_name=None,
                 prefix='nt', schema=None):
        super().__init__()
        self.test = test
        self.backend = backend
        self.name = name
        self.db_name = db_name
        self.prefix = prefix
        self.schema = schema

    def setUp(self):
        super().setUp()
        template = self.schema and schema_template(
            self.test, self.backend, *self.schema)
        if self.backend == 'sqlite':
            directory = self.useFixture(fixtures.TempDir()).path
            path = os.path.join(directory, self.name + '.sqlite')
            if template:
                shutil.copyfile(template, path)
            self.url = 'sqlite:///' + path
            return
        db_name = self.db_name or '%s_%s_%s' % (
            self.prefix, self.name, uuid_lib.uuid4().hex[:12])
        server = ADMIN_URLS[self.backend]
        self.url = create_database(
            self.test, server, db_name, self.backend,
            template=template if self.backend == 'postgresql' else None)
        self.addCleanup(self._drop, server, db_name)
        if template and self.backend != 'postgresql':
            copy_mysql_schema(server, template, db_name)

    def _drop(self, server, db_name):
        CellDatabases._reset()
        provision.drop_databases(server, [db_name])


# (backend, database, revision) -> the template each test's database of
# that schema is copied from: an SQLite file, or a database on the
# server, migrated once per test process and removed when it exits.
# Running Alembic for every test would dominate the tier (0.5 to 1.5 s
# a test on the servers, more than most tests' own work).
_TEMPLATES = {}
_TEMPLATE_DIR = tempfile.mkdtemp(prefix='nova-schema-')
atexit.register(shutil.rmtree, _TEMPLATE_DIR, True)
TEMPLATE_PREFIX = 'ntt_'


def schema_template(test, backend, database, revision=None):
    """The template of ``database`` at ``revision`` on ``backend``: an
    SQLite file's path, or a database name on the server."""
    key = (backend, database, revision)
    if key in _TEMPLATES:
        return _TEMPLATES[key]
    name = '%s_%s' % (database, revision or 'head')
    if backend == 'sqlite':
        template = os.path.join(_TEMPLATE_DIR, name + '.sqlite')
        migration.db_sync(database, version=revision,
                          url='sqlite:///' + template)
    else:
        _drop_orphan_templates(test, backend)
        # 'mysql' and 'mariadb' are one server: the name says which.
        template = '%s%d_%s_%s' % (TEMPLATE_PREFIX, os.getpid(), backend,
                                   name)
        url = create_database(test, ADMIN_URLS[backend], template, backend)
        atexit.register(provision.drop_databases, ADMIN_URLS[backend],
                        [template])
        migration.db_sync(database, version=revision, url=url)
    _TEMPLATES[key] = template
    return template


def _drop_orphan_templates(test, backend):
    """Drop the templates of test processes of this machine that ended
    without removing theirs (killed): nothing else would."""
    admin = sa.create_engine(ADMIN_URLS[backend],
                             isolation_level='AUTOCOMMIT')
    if backend == 'postgresql':
        query = 'SELECT datname FROM pg_database'
    else:
        query = 'SELECT schema_name FROM information_schema.schemata'
    try:
        with admin.connect() as conn:
            names = conn.execute(sa.text(query)).scalars().all()
    except sa.exc.OperationalError:
        unavailable(test, backend)
    finally:
        admin.dispose()
    provision.drop_databases(ADMIN_URLS[backend], [
        name for name in names if name.startswith(TEMPLATE_PREFIX)
        and not _alive(int(name[len(TEMPLATE_PREFIX):].split('_')[0]))])


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def copy_mysql_schema(server_url, template, db_name):
    """Create in ``db_name`` the tables of ``template``, with their rows
    (the Alembic version), on a MySQL-family server, which has no
    CREATE DATABASE ... TEMPLATE.

    SHOW CREATE TABLE names a foreign key's table without its database,
    so each table is created from inside ``db_name``; the checks are off
    because a table may come before the table it refers to.
    """
    engine = sa.create_engine(provision.database_url(server_url, db_name),
                              isolation_level='AUTOCOMMIT')
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = :db AND table_type = 'BASE TABLE'"),
            {'db': template}).scalars().all()
        conn.exec_driver_sql('SET SESSION foreign_key_checks = 0')
        for table in tables:
            ddl = conn.exec_driver_sql(
                'SHOW CREATE TABLE %s.%s' % (template, table)).one()[1]
            conn.exec_driver_sql(ddl)
            conn.exec_driver_sql('INSERT INTO %s SELECT * FROM %s.%s'
                                 % (table, template, table))
    engine.dispose()


class GaleraDatabase(fixtures.Fixture):
    """A new, empty database on the Galera cluster, one URL per node.

    Created through node 1: CREATE DATABASE replicates to every node.
    ``urls[i]`` reaches it through node i + 1, ``url`` through node 1.
    """

    def __init__(self, test, name='nova'):
        super().__init__()
        self.test = test
        self.name = name

    def setUp(self):
        super().setUp()
        db_name = 'nt_%s_%s' % (self.name, uuid_lib.uuid4().hex[:12])
        create_database(self.test, GALERA_URLS[0], db_name,
                        'MariaDB Galera cluster')
        self.addCleanup(self._drop, db_name)
        self.urls = [provision.database_url(url, db_name)
                     for url in GALERA_URLS]
        self.url = self.urls[0]
        # The other nodes apply CREATE DATABASE a moment after node 1
        # returns; connecting to one before that fails (unknown database).
        for url in self.urls[1:]:
            wait_for_login(url, timeout=30, interval=0.05)

    def _drop(self, db_name):
        CellDatabases._reset()
        provision.drop_databases(GALERA_URLS[0], [db_name])


class CellDatabases(fixtures.Fixture):
    """An API database and ``cells`` cell databases, synced and mapped.

    ``[database]`` points at the first cell, ``[api_database]`` at the API
    database. ``cell_revision`` leaves the cell databases at an older
    revision (for upgrade tests). ``self.cells`` holds the CellMappings.
    Server-side database names start with ``prefix``.
    """

    def __init__(self, test, backend='sqlite', cells=1, cell_revision=None,
                 prefix='nt'):
        super().__init__()
        self.test = test
        self.backend = backend
        self.cell_count = cells
        self.cell_revision = cell_revision
        self.prefix = prefix

    def setUp(self):
        super().setUp()
        conf = self.test.conf_fixture
        api = self.useFixture(Database(
            self.test, self.backend, 'api', prefix=self.prefix,
            schema=(migration.API, None)))
        cell_urls = [
            self.useFixture(Database(
                self.test, self.backend, 'cell%d' % (i + 1),
                prefix=self.prefix,
                schema=(migration.MAIN, self.cell_revision))).url
            for i in range(self.cell_count)]
        conf.config(connection=api.url, group='api_database')
        conf.config(connection=cell_urls[0], group='database')
        self._reset()
        self.addCleanup(self._reset)
        self.api_url = api.url
        self.cell_urls = cell_urls
        ctxt = context.get_admin_context()
        self.cells = []
        for i, url in enumerate(cell_urls):
            cell = objects.CellMapping(
                ctxt, uuid=str(uuid_lib.uuid4()), name='cell%d' % (i + 1),
                database_connection=url, transport_url='none:///')
            cell.create()
            self.cells.append(cell)

    @staticmethod
    def _reset():
        context.reset_cell_cache()
        main_db.reset()
        api_db.reset()


class TestCase(testtools.TestCase):
    """Base test: its own CONF and, with DATABASE set, its own databases."""

    # 'sqlite', 'mysql' or 'postgresql'; None: no database.
    DATABASE = 'sqlite'
    CELLS = 1
    CELL_REVISION = None
    # True: every transaction of the test, the set-up's included, on the
    # plain engines the operator commands use (nova.db.transactions);
    # False: on oslo.db's enginefacade, as the services.
    DIRECT_TRANSACTIONS = False
    # How the names of its server-side databases start.
    DB_PREFIX = 'nt'

    def setUp(self):
        super().setUp()
        transactions.use_direct(self.DIRECT_TRANSACTIONS)
        self.addCleanup(transactions.use_direct, False)
        self.useFixture(fixtures.NestedTempfile())
        self.conf_fixture = self.useFixture(ConfFixture(CONF))
        self.flags = self.conf_fixture.config
        self.context = context.get_admin_context()
        if self.DATABASE:
            self.db = self.useFixture(CellDatabases(
                self, self.DATABASE, cells=self.CELLS,
                cell_revision=self.CELL_REVISION, prefix=self.DB_PREFIX))
            self.cells = self.db.cells

    def cell_context(self, index=0):
        """An admin context targeted at cell ``index``."""
        ctxt = context.get_admin_context()
        context.set_target_cell(ctxt, self.cells[index])
        return ctxt

    def create_instance(self, ctxt=None, map_instance=True, **values):
        """Create an instance (and its mapping) with sensible defaults."""
        ctxt = ctxt or self.cell_context()
        values.setdefault('uuid', str(uuid_lib.uuid4()))
        values.setdefault('project_id', 'project')
        values.setdefault('user_id', 'user')
        values.setdefault('image_ref', 'image')
        values.setdefault('vm_state', 'active')
        values.setdefault('system_metadata', {})
        inst = objects.Instance(ctxt, **values)
        inst.create()
        if map_instance:
            cell = next(c for c in self.cells if c.uuid == ctxt.cell_uuid) \
                if ctxt.cell_uuid else self.cells[0]
            objects.InstanceMapping(
                self.context, instance_uuid=inst.uuid, cell_mapping=cell,
                project_id=inst.project_id).create()
        return inst


def statement_of(engine, verb, call):
    """(SQL, parameters) of the one ``verb`` statement ``call()`` sends
    through ``engine``, for a test to read its plan (a SELECT nested in
    an UPDATE is the UPDATE's)."""
    seen = []

    def record(conn, cursor, statement, parameters, *args):
        if statement.lstrip().startswith(verb):
            seen.append((statement, parameters))
    sa.event.listen(engine, 'before_cursor_execute', record)
    try:
        call()
    finally:
        sa.event.remove(engine, 'before_cursor_execute', record)
    [captured] = seen
    return captured


def lock_waits(connection, statement_start=''):
    """How many sessions of ``connection``'s database wait for a lock in a
    statement that starts with ``statement_start``, as the server says.

    The servers' views are server-wide, so narrowed to the database:
    another test worker on the same server may wait at the same time.
    InnoDB refreshes innodb_trx only when it was last read, by any
    session, more than 0.1 s before: poll less often than that. The
    transaction is ended here because PostgreSQL keeps one statistics
    snapshot for a whole transaction.
    """
    if connection.dialect.name == 'postgresql':
        query = ("SELECT count(*) FROM pg_stat_activity "
                 "WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock' AND query LIKE :q")
    else:
        query = ("SELECT count(*) FROM information_schema.innodb_trx t "
                 "JOIN information_schema.processlist p "
                 "ON p.id = t.trx_mysql_thread_id "
                 "WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE() "
                 "AND t.trx_query LIKE :q")
    try:
        return connection.execute(
            sa.text(query), {'q': statement_start + '%'}).scalar()
    finally:
        connection.rollback()


def backend_variants(base, backends=('mysql', 'postgresql')):
    """Classes running ``base``'s tests on each of ``backends``.

    Used by functional modules: ``globals().update(backend_variants(X))``.
    """
    # The variants belong to the module asking for them, as namedtuple's
    # classes do: type() would put them in this one, so their test ids
    # would read nova.tests.fixtures.* and a filter on the test module (or
    # the module in a failure report) would miss them.
    module = sys._getframe(1).f_globals['__name__']
    return {'%s_%s' % (base.__name__, b): type(
        '%s_%s' % (base.__name__, b), (base,),
        {'DATABASE': b, '__module__': module})
        for b in backends}
