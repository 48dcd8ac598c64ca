"""The one-instance commands beside their lower bounds: start-up included.

For each backend: an API and a cell database seeded with N instances
(benchmarks/seed.py, 300,000 by default), one stopped instance whose
record is reset to OLD before every update; then REPEAT rounds, each
running every line once, in this order, so that a change of the
machine's load touches every line alike:

  get_machine_type UUID             nova-manage, a fresh process
  update_machine_type UUID NEW      nova-manage (OLD -> NEW, allowed)
  refused update                    nova-manage, UUID to an older
                                    version: exit 4
  nova-manage --help
  driver get / driver update        the same look-ups (and write) through
                                    the database's client library alone
  floor get / floor update          the same through SQLAlchemy Core with
                                    the configuration read by oslo.config:
                                    what the commands cannot do without

Each line is a median of REPEAT runs of a new Python process (wall time
as the operator sees it). The table gives each command beside both
bounds: the ratio to the driver's and the difference to the floor's.

    python benchmarks/commands.py --backend mysql --backend postgresql \\
        --instances 300000 --repeat 9
"""

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness  # noqa: E402
from benchmarks import probes  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import seed as seeding  # noqa: E402

OLD, NEW, OLDER = 'pc-q35-7.1', 'pc-q35-7.2', 'pc-q35-6.2'


def target_instance(count):
    """Index of the first live, stopped, hosted, recorded seeded instance."""
    for i in range(count):
        vm_state, host, machine_type, deleted = seeding.instance_shape(i)
        if vm_state == 'stopped' and host and machine_type and not deleted:
            return i
    raise SystemExit('no stopped, recorded instance among %d' % count)


def reset_record(dep, uuid):
    """Set the instance's record back to OLD (not timed)."""
    probes.execute(dep.cell_url, (
        "UPDATE instance_system_metadata SET value = %(old)s "
        "WHERE instance_uuid = %(uuid)s AND {key} = 'hw_machine_type' "
        "AND deleted = 0"), {'old': OLD, 'uuid': uuid})


def lines(dep, uuid):
    """[(name, argv, exit codes expected, reset the record first)]."""
    manage = dep.nova
    return [
        ('get_machine_type', manage('nova-manage', 'libvirt',
                                    'get_machine_type', uuid), (0,), False),
        ('update_machine_type', manage(
            'nova-manage', 'libvirt', 'update_machine_type', uuid, NEW),
         (0,), True),
        ('refused update (exit 4)', manage(
            'nova-manage', 'libvirt', 'update_machine_type', uuid, OLDER),
         (4,), True),
        ('nova-manage --help', [os.path.join(harness.BIN, 'nova-manage'),
                                '--help'], (0,), False),
        ('driver get', harness.probe('get', dep.api_url, uuid), (0,),
         False),
        ('driver update', harness.probe('update_one', dep.api_url, uuid,
                                        OLD, NEW), (0,), True),
        ('floor get', harness.probe('floor_get', dep.conf, uuid), (0,), False),
        ('floor update', harness.probe('floor_update', dep.conf, uuid, OLD,
                                       NEW), (0,), True),
    ]


def measure(dep, uuid, repeat):
    """{line name: {'walls': [...], 'wall': median, 'rss_mib': max}}."""
    measured = {}
    for _ in range(repeat):
        for name, argv, expect, reset in lines(dep, uuid):
            if reset:
                reset_record(dep, uuid)
            result = harness.run_child(argv, expect=expect)
            entry = measured.setdefault(name, {'walls': [], 'rss_mib': 0,
                                               'loads': []})
            entry['walls'].append(result['wall'])
            entry['loads'].append(result['load'])
            entry['rss_mib'] = max(entry['rss_mib'], result['rss_mib'])
    for entry in measured.values():
        entry['wall'] = statistics.median(entry['walls'])
    return measured


def check_outputs(dep, uuid):
    """The command and both bounds read the same record; stop if not."""
    reset_record(dep, uuid)
    printed = harness.run_child(dep.nova('nova-manage', 'libvirt',
                                         'get_machine_type', uuid))['stdout']
    bounds = [harness.probe_result(harness.run_child(harness.probe(*argv)))
              ['machine_type'] for argv in (
                  ('get', dep.api_url, uuid),
                  ('floor_get', dep.conf, uuid))]
    if [printed.strip()] * 2 != bounds or bounds[0] != OLD:
        raise SystemExit('get_machine_type printed %r, the bounds read %r'
                         % (printed, bounds))


def bench(backend, count, args):
    """Every line on one backend; returns the figures as a dict."""
    workdir = tempfile.mkdtemp(prefix='bench-commands-%s-' % backend)
    dep = harness.Deployment(backend, workdir,
                             tag='cmd_%d_%d' % (count, os.getpid()))
    try:
        dep.create()
        seconds = dep.seed(count)
        harness.log('  seeded %d instances in %.1f s' % (count, seconds))
        uuid = seeding.str_uuid(target_instance(count))
        check_outputs(dep, uuid)
        return {'backend': backend, 'instances': count,
                'lines': measure(dep, uuid, args.repeat)}
    finally:
        dep.drop()
        subprocess.run(['rm', '-rf', workdir])


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backend', action='append',
                        choices=('sqlite', 'mysql', 'postgresql'))
    parser.add_argument('--instances', type=int, default=300000)
    parser.add_argument('--repeat', type=int, default=9)
    parser.add_argument('--json', default='commands.json')
    args = parser.parse_args(argv)
    args.backend = args.backend or ['mysql', 'postgresql']
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return harness.record_results(
        'commands', (functools.partial(bench, backend, args.instances, args)
                     for backend in args.backend),
        args.json, report.commands_table)


if __name__ == '__main__':
    sys.exit(main())
