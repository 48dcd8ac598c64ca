"""Markdown tables of the figures the scenarios wrote as JSON.

    python -m benchmarks report results.json [more.json ...]

Each result file holds one kind of result, by scenario: ``runs``
(scale.py): a table per backend and N (operation beside its lower
bound), then per backend how each operation's wall time and peak RSS
grow with N; ``upgrades`` (upgrade.py): a table per backend, N and nova
commit of what each client saw during db sync, and one line per
measurement side by side; ``cells`` (cells.py): the cross-cell commands
beside their bound, healthy and with failing cells; ``commands``
(commands.py): the one-instance commands beside the driver's look-ups;
``total_order`` (total_order.py): the client statements that Galera's
statements in total order aborted.
The scenarios print the same tables when they end.
"""

import collections
import json
import sys


def _runs(paths, kind='runs'):
    """Every run of ``kind`` in every file, by key; later wins.

    The key of a run is (backend, instances); an upgrade measurement's
    adds the commit of the nova it ran, and whether that tree had
    changes, so that measurements of two versions stand side by side.
    """
    runs = {}
    for path in paths:
        with open(path) as f:
            for run in json.load(f).get(kind, []):
                key = (run['backend'], run.get('instances')
                       or (run['cells'], run['instances_per_cell']))
                if kind == 'upgrades':
                    key += (run['nova']['commit'],
                            bool(run['nova']['changed']))
                runs[key] = run
    return runs


def loop_notes(loop):
    """The notes of the --max-count loop's line: its start-up share, and
    its bound where the result has one."""
    text = ('--max-count %d until 0: %d calls; lower s = one '
            'uninterrupted run; start-up %d x %.2f s = %.1f s; work %.1f s, '
            '%.2fx the run\'s; floor %.2f s a call: at best %.2fx' % (
                loop['max_count'], loop['calls'], loop['calls'],
                loop['startup_s'],
                loop['startup_total_s'], loop['work_s'],
                loop['work_ratio'], loop['floor_start_s'],
                loop['floor_ratio']))
    if 'bound_s' in loop:
        text += ('; bound (run + (floor + 0.15 s) a further call) %.1f s: '
                 '%s' % (loop['bound_s'], 'within' if loop['within_bound']
                         else 'EXCEEDED'))
    return text


def notes(row):
    """The notes column of one line: what its figures do not say."""
    if 'loop' in row:
        return loop_notes(row['loop'])
    if 'writer_requests' in row:
        return ('a writer on its rows: %d requests, worst %.0f ms, '
                '%d failed' % (row['writer_requests'],
                               row['writer_worst_ms'], row['writer_failed']))
    if 'round_trips' not in row:
        return ''
    small = row['round_trips_small_host']
    return '%d round trips (%d statements); %d-domain host: %d' % (
        row['round_trips']['round_trips'], row['round_trips']['statements'],
        small['domains'], small['round_trips'])


def run_table(run):
    """Markdown of one backend and N."""
    pool = ', InnoDB buffer pool %d MiB' % run['buffer_pool_mib'] \
        if run.get('buffer_pool_mib') else ''
    lines = ['#### %s, N = %s (seeded in %.0f s%s)' % (
        run['backend'], '{:,}'.format(run['instances']),
        run['seed_seconds'], pool), '',
        '| operation | wall s | peak MiB | lower bound s | LB MiB | ratio '
        '| load | rows | notes |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---|']
    for row in run['rows']:
        op, lower = row['op'], row['lower_bound']
        lines.append('| %s | %.3f | %.1f | %.3f | %.1f | %.2fx | %.1f | %s '
                     '| %s |' % (
                         row['operation'], op['wall'], op['rss_mib'],
                         lower['wall'], lower['rss_mib'], row['ratio'],
                         max(op['load'], lower['load']),
                         '{:,}'.format(row['rows']), notes(row)))
    return '\n'.join(lines)


def growth_tables(runs):
    """Markdown: per backend, wall s / peak MiB of each operation by N."""
    by_backend = collections.defaultdict(dict)
    for (backend, count), run in sorted(runs.items()):
        by_backend[backend][count] = run
    out = []
    for backend, sizes in by_backend.items():
        counts = sorted(sizes)
        out.append('#### %s: wall s (ratio) / peak MiB by N' % backend)
        out.append('')
        out.append('| operation | ' + ' | '.join(
            '{:,}'.format(c) for c in counts) + ' |')
        out.append('|---|' + '---:|' * len(counts))
        operations = [r['operation'].split(' (')[0]
                      for r in sizes[counts[-1]]['rows']]
        for index, name in enumerate(operations):
            cells = []
            for count in counts:
                row = sizes[count]['rows'][index]
                cells.append('%.2f (%.1fx) / %.0f' % (
                    row['op']['wall'], row['ratio'], row['op']['rss_mib']))
            out.append('| %s | %s |' % (name, ' | '.join(cells)))
        out.append('')
    return '\n'.join(out)


def nova_label(nova):
    """Short name of the nova an upgrade measurement ran."""
    return nova['commit'][:7] + (' + changes' if nova['changed'] else '')


def upgrade_checks(check):
    """The checks after db sync, in one line."""
    schema = sorted({name for node in check['nodes']
                     for name, present in node['schema'].items()
                     if not present})
    lookalikes = ('; lookalike keys kept %d/%d' % (
        check['lookalikes_live'], check['lookalikes'])
        if 'lookalikes' in check else '')
    return ('%s: revision %s (head %s, on %d server(s)); live duplicates '
            '%d; pairs that kept the newest row %d/%d%s; schema %s; '
            'inserted rows present %d/%d (%d unexpected)' % (
                'OK' if check['ok'] else 'FAILED', check['revision'],
                check['head'], len(check['nodes']),
                check['live_duplicates'],
                check['groups'] - check['wrong_survivors'], check['groups'],
                lookalikes,
                'missing ' + ', '.join(schema) if schema else 'complete',
                check['inserted'] - check['missing'], check['inserted'],
                check['unexpected']))


# db sync held to this multiple of the DBA's statements (upgrade.py).
DBA_BOUND = 1.3


def beside_lines(run):
    """What ran beside db sync (a held transaction, a backup) and the
    DBA's bound, where the measurement had them."""
    sync, lines = run['sync'], []
    beside = sync.get('beside') or {
        'held': [], 'backups': [], 'alter_statements': None}
    ran = (['a transaction held %.0f s from %.0f s into the sync'
            % (closed - opened, opened - sync['start'])
            for opened, closed in beside['held']]
           + ['a backup (exit %d) of %.0f s' % backup
              for backup in beside['backups']])
    if ran:
        lines += ['', 'Beside db sync: %s.' % '; '.join(ran)]
    if beside['alter_statements'] is not None:
        # MySQL's global Com_alter_table: read it with nothing else
        # using the server.
        lines += ['', 'ALTER TABLE statements the server counted: %d.'
                  % beside['alter_statements']]
    if 'dba' in run:
        dba = run['dba']
        lines += ['', "The DBA's statements alone: %.1f s (%s); db sync "
                  "%.1f s = %.2fx of them (bound %.1fx: %s)." % (
                      dba['seconds'], ', '.join('%s %.1f s' % s
                                                for s in dba['statements']),
                      sync['wall'], sync['wall'] / dba['seconds'], DBA_BOUND,
                      'met' if sync['wall'] <= DBA_BOUND * dba['seconds']
                      else 'NOT MET')]
    return lines


def upgrade_table(run):
    """Markdown of one upgrade measurement: a client a line."""
    sync = run['sync']
    lines = ['#### upgrade, %s, N = %s, nova %s: db sync in %.1f s, exit %d'
             % (run['backend'], '{:,}'.format(run['instances']),
                nova_label(run['nova']), sync['wall'], sync['rc']), '',
             'Seeded in %.0f s (%.0f instances/s); load %.1f at the start '
             'of db sync, %.1f at its end.' % (
                 run['seed_seconds'],
                 run['instances'] / run['seed_seconds'], *sync['load']), '',
             '| client | requests | failures | worst ms | p99 ms | > 1 s '
             '| during db sync | worst during db sync, ms |',
             '|---|---:|---:|---:|---:|---:|---:|---:|']
    for row in run['clients']:
        lines.append('| %s | %d | %d | %.1f | %.1f | %d | %d | %.1f |' % (
            row['client'], row['requests'], row['failures'], row['worst_ms'],
            row['p99_ms'], row['slow'], row['sync_requests'],
            row['sync_worst_ms']))
    lines += ['', upgrade_checks(run['verify'])]
    if 'sysmeta_mib' in run:
        lines += ['', 'instance_system_metadata on disk: %.0f MiB before '
                  'db sync, %.0f MiB after.' % tuple(run['sysmeta_mib'])]
    lines += beside_lines(run)
    errors = ['- %s: `%s`' % (row['client'], error)
              for row in run['clients'] for error in row['first_errors']]
    if errors:
        lines += [''] + errors
    if sync['output_tail']:
        lines += ['', 'The end of db sync\'s output:', '', '```']
        lines += sync['output_tail'] + ['```']
    return '\n'.join(lines)


def upgrade_summary(runs):
    """Markdown: one line per upgrade measurement, worst waits by client."""
    names = [row['client'] for row in next(iter(runs.values()))['clients']]
    out = ['| backend | N | nova | db sync s | exit | checks | ' + ' | '.join(
        '%s: worst ms in db sync (failures)' % name for name in names) + ' |',
        '|---|---:|---|---:|---:|---|' + '---:|' * len(names)]
    for key in sorted(runs):
        run = runs[key]
        worst = {row['client']: '%.0f (%d)' % (
            row['sync_worst_ms'], row['failures']) for row in run['clients']}
        out.append('| %s | %s | %s | %.1f | %d | %s | %s |' % (
            run['backend'], '{:,}'.format(run['instances']),
            nova_label(run['nova']), run['sync']['wall'], run['sync']['rc'],
            'ok' if run['verify']['ok'] else 'FAILED',
            ' | '.join(worst.get(name, '') for name in names)))
    return '\n'.join(out)


def cells_table(run):
    """Markdown of one many-cells run: each command beside its lower
    bound (medians), then each command with one cell stopped and one
    slow."""
    lines = ['#### %s, %d cells x %s instances (seeded in %.0f s)' % (
        run['backend'], run['cells'], '{:,}'.format(
            run['instances_per_cell']), run['seed_seconds']), '',
        '| command | wall s | peak MiB | lower bound s | ratio | load |',
        '|---|---:|---:|---:|---:|---:|']
    for row in run['rows']:
        op, lower = row['op'], row['lower_bound']
        lines.append('| %s | %.2f | %.1f | %.2f | %.2fx | %.1f |' % (
            row['operation'], op['wall'], op['rss_mib'], lower['wall'],
            row['ratio'], max(op['load'], lower['load'])))
    lines += ['', 'Cell %s stopped, cell %s slow, cell_timeout %d s:' % (
        run['failing_cells']['stopped'][0], run['failing_cells']['slow'][0],
        run['cell_timeout']), '',
        '| command | wall s | healthy s | exit (expected) | other cells '
        'reported | failing cells named | in time |',
        '|---|---:|---:|---|---|---|---|']
    for row in run['failures']:
        lines.append('| %s | %.1f | %.1f | %d (%d) | %d of %d | %s | %s |'
                     % (row['command'], row['wall'], row['healthy'],
                        row['rc'], row['expected_rc'],
                        row['cells_reported'], row['other_cells'],
                        'yes' if row['named'] else 'NO',
                        'yes' if row['in_time'] else 'LATE'))
    return '\n'.join(lines)


def commands_table(run):
    """Markdown of the one-instance commands: medians beside the same
    look-ups through the driver and the floor of a Python process."""
    lines = run['lines']
    out = ['#### one-instance commands, %s, N = %s (median of %d runs)' % (
        run['backend'], '{:,}'.format(run['instances']),
        len(lines['get_machine_type']['walls'])), '',
        '| command | wall s | driver s | ratio | floor s | above floor s |',
        '|---|---:|---:|---:|---:|---:|']
    bounds = {'get_machine_type': 'get', 'update_machine_type': 'update',
              'refused update (exit 4)': 'update',
              'nova-manage --help': 'get'}
    for name, kind in bounds.items():
        wall = lines[name]['wall']
        driver = lines['driver ' + kind]['wall']
        floor = lines['floor ' + kind]['wall']
        out.append('| %s | %.3f | %.3f | %.2fx | %.3f | %+.3f |' % (
            name, wall, driver, wall / driver, floor, wall - floor))
    return '\n'.join(out)


def total_order_table(run):
    """Markdown of one total_order run: the statements, then a client a
    line."""
    failures = sum(row['failures'] for row in run['clients'])
    lines = ['#### total_order, %s rows, wsrep_retry_autocommit %s: %d '
             'statements in total order in %.0f s' % (
                 '{:,}'.format(run['rows']),
                 '/'.join(str(k) for k in sorted(set(
                     run['retry_autocommit']))),
                 run['statements'], run['seconds']), '',
             'Each statement took %.0f ms (median), %.0f ms at worst; the '
             'clients saw %d of their statements fail, %.3f a statement in '
             'total order.' % (
                 run['statement_median_ms'], run['statement_worst_ms'],
                 failures, failures / run['statements']), '',
             '| client | requests | failures | worst ms | p99 ms |',
             '|---|---:|---:|---:|---:|']
    for row in run['clients']:
        lines.append('| %s | %d | %d | %.1f | %.1f |' % (
            row['client'], row['requests'], row['failures'], row['worst_ms'],
            row['p99_ms']))
    errors = ['- %s: `%s`' % (row['client'], error)
              for row in run['clients'] for error in row['first_errors']]
    return '\n'.join(lines + ([''] + errors if errors else []))


def main(paths):
    """Print the Markdown of every result in ``paths``, whatever the
    scenario that wrote it."""
    runs = _runs(paths)
    for key in sorted(runs):
        print(run_table(runs[key]))
        print()
    if runs:
        print(growth_tables(runs))
    upgrades = _runs(paths, 'upgrades')
    for key in sorted(upgrades):
        print(upgrade_table(upgrades[key]))
        print()
    if upgrades:
        print(upgrade_summary(upgrades))
    for kind, table in (('cells', cells_table),
                        ('commands', commands_table)):
        found = _runs(paths, kind)
        for key in sorted(found):
            print(table(found[key]))
            print()
    for path in paths:
        with open(path) as f:
            for run in json.load(f).get('total_order', []):
                print(total_order_table(run))
                print()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
