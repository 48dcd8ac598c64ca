"""nova-manage db/api_db sync and cell_v2 on MariaDB and PostgreSQL."""

from nova.tests import fixtures
from nova.tests.unit.cmd import test_manage_db


class DbSyncTestsMySQL(test_manage_db.DbSyncTests):
    BACKEND = 'mysql'


class DbSyncTestsPostgreSQL(test_manage_db.DbSyncTests):
    BACKEND = 'postgresql'


globals().update(fixtures.backend_variants(test_manage_db.CellV2Tests))
