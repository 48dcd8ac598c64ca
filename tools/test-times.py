"""Test durations, so that a fresh clone's first run is balanced.

stestr spreads tests over its workers by their durations in its
repository; a fresh clone has none, and then deals them out in turn, so
the slow tests of one module can pile up on one worker (three minutes of
the functional tier's twelve, measured). tools/test-times.txt keeps one
line per test: its id and its seconds.

  python tools/test-times.py save     # from .stestr's repository
  python tools/test-times.py stream   # the file as a subunit v2 stream

tools/run-tests.sh loads the stream (``stestr load``) into a repository
that has no run yet. A test missing from the file, or renamed, is dealt
out in turn as before; refresh the file with ``save`` after a full run
when the slowest tests change.
"""

import datetime
import dbm
import os
import subprocess
import sys

import subunit

TIMES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     'test-times.txt')
EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
TIERS = ('./nova/tests/unit', './nova/tests/functional')


def save():
    """Write the seconds stestr's repository holds for every current test
    (the latest run of each) to TIMES."""
    current = set()
    for tier in TIERS:
        current.update(subprocess.run(
            [sys.executable, '-m', 'stestr', '--test-path', tier, 'list'],
            capture_output=True, text=True, check=True).stdout.split())
    times = dbm.open(os.path.join('.stestr', 'times.dbm'), 'r')
    try:
        rows = ['%s %.3f\n' % (key.decode(), float(times[key]))
                for key in times.keys() if key.decode() in current]
    finally:
        times.close()
    with open(TIMES, 'w') as f:
        f.writelines(sorted(rows))
    print('%d of %d tests written to %s' % (len(rows), len(current), TIMES))


def stream():
    """Write TIMES to stdout as a subunit v2 stream of passed tests, each
    lasting its seconds: what stestr needs to balance its workers."""
    output = subunit.StreamResultToBytes(sys.stdout.buffer)
    with open(TIMES) as f:
        for line in f:
            test_id, seconds = line.split()
            end = EPOCH + datetime.timedelta(seconds=float(seconds))
            output.status(test_id=test_id, test_status='inprogress',
                          timestamp=EPOCH)
            output.status(test_id=test_id, test_status='success',
                          timestamp=end)
    sys.stdout.flush()


if __name__ == '__main__':
    commands = {'save': save, 'stream': stream}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit('usage: %s save|stream' % sys.argv[0])
    commands[sys.argv[1]]()
