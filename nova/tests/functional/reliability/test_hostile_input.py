"""The hostile input properties again, on MariaDB and PostgreSQL.

PostgreSQL refuses a NUL byte in any string and MySQL compares with
trailing spaces ignored, so what SQLite lets through must be refused
before it reaches these servers too.
"""

from nova.tests import fixtures
from nova.tests.unit import test_hostile_input as unit

globals().update(fixtures.backend_variants(unit.HostileCommandTestCase))
