"""The layers of the code base: what each may import, and no import cycle.

A lower layer that imports a higher one ties the configuration or the
database to the driver and the commands, and sooner or later becomes an
import cycle that someone works around with an import inside a function.
These tests read every module's imports with ``ast`` (so a late import
counts as much as one at the top) and check them against the layer table
that doc/source/contributor/architecture.rst documents.
"""

import ast
import os
import subprocess
import sys

import testtools

import nova

NOVA_DIR = os.path.dirname(os.path.abspath(nova.__file__))

# Modules of constants and syntax that any layer may import: they import
# nothing of nova but each other.
LEAVES = frozenset((
    'nova',
    'nova.exception',
    'nova.objects.fields',
    'nova.compute.vm_states',
    'nova.compute.task_states',
    'nova.compute.power_state',
))

# The packages of the leaves: importing a leaf runs their __init__, which
# therefore imports nothing of nova when it runs (nova.objects imports its
# classes on first use).
LEAF_PACKAGES = frozenset(
    '.'.join(leaf.split('.')[:i]) for leaf in LEAVES
    for i in range(1, leaf.count('.') + 1))

# (prefix, rank), lowest layer first; the longest matching prefix decides.
# A module may import modules of its own rank or lower, and the leaves.
LAYERS = (
    ('nova.conf', 1),
    ('nova.config', 1),
    ('nova.machine_type', 2),
    ('nova.db', 3),
    ('nova.objects', 4),
    ('nova.context', 5),
    ('nova.virt', 6),
    ('nova.compute', 7),
    ('nova.cmd', 8),
)


def module_name(path):
    """Dotted name of the module at ``path`` (a file under NOVA_DIR)."""
    relative = os.path.relpath(path, os.path.dirname(NOVA_DIR))
    parts = relative[:-len('.py')].split(os.sep)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def nova_modules():
    """{module name: path} of every module of nova except the tests."""
    modules = {}
    for root, dirs, files in os.walk(NOVA_DIR):
        dirs[:] = sorted(d for d in dirs
                         if d not in ('tests', '__pycache__'))
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                modules[module_name(path)] = path
    return modules


def _targets(node, known):
    """The nova modules an Import or ImportFrom node names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level == 0 and node.module:
        # "from a.b import c": the module a.b.c if there is one, else a.b.
        names = [node.module + '.' + alias.name
                 if node.module + '.' + alias.name in known else node.module
                 for alias in node.names]
    else:
        raise AssertionError('relative import in nova: use absolute ones')
    return {name for name in names if name.split('.')[0] == 'nova'}


def imports(path, known, top_level_only=False):
    """Nova modules imported by the file at ``path``.

    With ``top_level_only`` only the imports that run when the module is
    imported (not those inside functions or classes), which is what can
    make a cycle; without it every import, since a late import is a
    dependency all the same.
    """
    with open(path) as source:
        tree = ast.parse(source.read(), path)
    if top_level_only:
        nodes = []
        pending = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                 ast.ClassDef)):
                continue
            nodes.append(node)
            pending.extend(ast.iter_child_nodes(node))
    else:
        nodes = list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= _targets(node, known)
    return found


def with_packages(name):
    """``name`` and the packages whose __init__ importing it runs."""
    parts = name.split('.')
    return {'.'.join(parts[:i]) for i in range(1, len(parts) + 1)}


def rank(name):
    """The layer rank of a module, 0 for a leaf, None if it has none."""
    if name in LEAVES:
        return 0
    matches = [(len(prefix), value) for prefix, value in LAYERS
               if name == prefix or name.startswith(prefix + '.')]
    return max(matches)[1] if matches else None


def find_cycle(graph):
    """One import cycle of ``graph`` ({module: modules}) as a list, or []."""
    state = {}
    stack = []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = 'done'
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


class LayerTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.modules = nova_modules()

    def test_every_module_has_a_layer(self):
        """A new module must be placed in the table (and the guide)."""
        unplaced = sorted(name for name in self.modules if rank(name) is None)
        self.assertEqual([], unplaced)

    def test_no_module_imports_a_higher_layer(self):
        wrong = []
        for name, path in sorted(self.modules.items()):
            for target in sorted(imports(path, self.modules)):
                if rank(target) is not None and rank(target) > rank(name):
                    wrong.append('%s imports %s' % (name, target))
        self.assertEqual([], wrong)

    def test_leaves_import_only_leaves(self):
        for name in sorted(LEAVES):
            path = self.modules[name]
            self.assertLessEqual(imports(path, self.modules), LEAVES, name)
        for name in sorted(LEAF_PACKAGES):
            self.assertEqual(set(), imports(self.modules[name], self.modules,
                                            top_level_only=True), name)

    def test_no_import_cycle(self):
        """Importing a module also runs its packages' __init__.

        A module's own packages have always run (or are running) before
        it does, so importing them is no cycle.
        """
        graph = {}
        for name, path in self.modules.items():
            targets = set()
            for target in imports(path, self.modules, top_level_only=True):
                targets |= with_packages(target)
            graph[name] = targets - with_packages(name)
        self.assertEqual([], find_cycle(graph))

    def test_rules_catch_the_old_cycle(self):
        """The checks see a lower layer importing a higher one."""
        self.assertGreater(rank('nova.virt.libvirt.driver'),
                           rank('nova.objects.instance'))
        self.assertGreater(rank('nova.compute.manager'), rank('nova.db'))
        self.assertGreater(rank('nova.cmd.manage'), rank('nova.conf.libvirt'))
        self.assertEqual(['a', 'b', 'a'],
                         find_cycle({'a': {'b'}, 'b': {'a'}}))

    def _loaded_after_import(self, module):
        """nova modules a fresh interpreter holds after importing one."""
        code = ('import sys, %s; print("\\n".join(sorted(m for m in '
                'sys.modules if m.split(".")[0] == "nova")))' % module)
        result = subprocess.run([sys.executable, '-c', code],
                                capture_output=True, text=True, check=False,
                                cwd=os.path.dirname(NOVA_DIR))
        self.assertEqual(0, result.returncode, result.stderr)
        return set(result.stdout.split()) - LEAF_PACKAGES

    def test_configuration_loads_no_higher_layer(self):
        """Importing nova.conf loads neither the objects nor the database.

        It imports the leaf nova.objects.fields, whose package imports its
        classes only on first use.
        """
        loaded = self._loaded_after_import('nova.conf')
        self.assertEqual([], sorted(m for m in loaded if rank(m) > 1))

    def test_each_layer_imports_first(self):
        """Each layer's modules import in a fresh interpreter, first."""
        for module in ('nova.machine_type', 'nova.db.main.api',
                       'nova.objects.instance', 'nova.virt.libvirt.driver',
                       'nova.compute.manager', 'nova.cmd.manage'):
            loaded = self._loaded_after_import(module)
            self.assertIn(module, loaded)
            self.assertEqual([], sorted(
                m for m in loaded if rank(m) > rank(module)), module)
