"""Markdown tables of the figures benchmarks/run.py wrote as JSON.

    python benchmarks/report.py results.json [more.json ...]

One table per backend and N (operation beside its lower bound), then
one table per backend of how each operation's wall time and peak RSS
grow with N.
"""

import collections
import json
import sys


def _runs(paths):
    """Every run of every file, by (backend, instances); later wins."""
    runs = {}
    for path in paths:
        with open(path) as f:
            for run in json.load(f)['runs']:
                runs[(run['backend'], run['instances'])] = run
    return runs


def _notes(row):
    if 'round_trips' not in row:
        return ''
    small = row['round_trips_small_host']
    return '%d round trips (%d statements); %d-domain host: %d' % (
        row['round_trips']['round_trips'], row['round_trips']['statements'],
        small['domains'], small['round_trips'])


def run_table(run):
    """Markdown of one backend and N."""
    lines = ['#### %s, N = %s (seeded in %.0f s)' % (
        run['backend'], '{:,}'.format(run['instances']),
        run['seed_seconds']), '',
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
                         '{:,}'.format(row['rows']), _notes(row)))
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


def main(paths):
    runs = _runs(paths)
    for key in sorted(runs):
        print(run_table(runs[key]))
        print()
    print(growth_tables(runs))


if __name__ == '__main__':
    main(sys.argv[1:])
