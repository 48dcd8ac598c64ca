"""Run one benchmark scenario: ``python -m benchmarks SCENARIO [ARGS]``.

Each scenario is a module of its own with its own command line
(``python -m benchmarks SCENARIO --help``); benchmarks/README.rst says
what each measures and prints.
"""

import importlib
import sys

SCENARIOS = ('scale', 'upgrade', 'cells', 'commands', 'total_order',
             'report')


def main(argv):
    if not argv or argv[0] not in SCENARIOS:
        sys.exit('usage: python -m benchmarks {%s} [ARGS]'
                 % ','.join(SCENARIOS))
    module = importlib.import_module('benchmarks.' + argv[0])
    return module.main(argv[1:])


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
