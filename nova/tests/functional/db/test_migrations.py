"""The migration tests on MariaDB and PostgreSQL."""

from nova.tests.unit.db import test_migrations


class MigrationTestsMySQL(test_migrations.MigrationTests):
    BACKEND = 'mysql'


class MigrationTestsMariaDBDialect(test_migrations.MigrationTests):
    BACKEND = 'mariadb'


class MigrationTestsPostgreSQL(test_migrations.MigrationTests):
    BACKEND = 'postgresql'
