"""Rules every revision of the cell database keeps, read from its source.

An index or unique key built by Alembic's own ``op.create_index`` or
``op.create_unique_constraint`` locks the table while it builds: on a
cell of millions of rows that stops every service. On the large tables
they must be built with ``nova.db.online_schema`` (the template and the
contributor guide say so); SQLite's batch mode, which names no table in
the call, is left alone.
"""

import ast
import os

import testtools

from nova.db.main import models

VERSIONS = os.path.join(os.path.dirname(models.__file__), 'migrations',
                        'versions')
LARGE_TABLES = {'instances', 'instance_system_metadata'}
LOCKING_OPS = {'create_index', 'create_unique_constraint'}


def locking_calls(source):
    """(line, op) of each op.create_index / op.create_unique_constraint
    call on a large table in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOCKING_OPS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == 'op'):
            continue
        tables = [kw.value for kw in node.keywords
                  if kw.arg in ('table_name', 'source')]
        tables += node.args[1:2]
        if any(isinstance(t, ast.Constant) and t.value in LARGE_TABLES
               for t in tables):
            found.append((node.lineno, node.func.attr))
    return found


class RevisionRuleTests(testtools.TestCase):

    def test_no_revision_builds_a_locking_index_on_a_large_table(self):
        offenders = {}
        for name in sorted(os.listdir(VERSIONS)):
            if name.endswith('.py'):
                with open(os.path.join(VERSIONS, name)) as f:
                    calls = locking_calls(f.read())
                if calls:
                    offenders[name] = calls
        self.assertEqual({}, offenders)

    def test_the_rule_sees_a_locking_call(self):
        source = ("from alembic import op\n"
                  "def upgrade():\n"
                  "    op.create_index('ix', 'instances', ['host'])\n"
                  "    op.create_unique_constraint(\n"
                  "        'uq', table_name='instance_system_metadata',\n"
                  "        columns=['key'])\n"
                  "    op.create_index('ix2', 'services', ['host'])\n")
        self.assertEqual([(3, 'create_index'),
                          (4, 'create_unique_constraint')],
                         locking_calls(source))
