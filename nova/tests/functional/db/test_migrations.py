"""The migration tests on MariaDB and PostgreSQL."""

from nova.tests.unit.db import test_migrations


class MigrationTestsMySQL(test_migrations.MigrationTests):
    BACKEND = 'mysql'


class MigrationTestsPostgreSQL(test_migrations.MigrationTests):
    BACKEND = 'postgresql'
