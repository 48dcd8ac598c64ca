"""Read a subunit v2 stream on stdin; print "passed failed skipped".

Counts the final status of each test id, so a test reported twice (a
worker restart) counts once. Used by tools/run-tests.sh for its summary.
"""

import sys

import subunit
import testtools

PASSED = {'success', 'xfail'}
FAILED = {'fail', 'uxsuccess'}
SKIPPED = {'skip'}


class FinalStatus(testtools.StreamResult):
    def __init__(self):
        super().__init__()
        self.statuses = {}

    def status(self, test_id=None, test_status=None, **kwargs):
        if test_id and test_status in PASSED | FAILED | SKIPPED:
            self.statuses[test_id] = test_status


def main():
    result = FinalStatus()
    stream = subunit.ByteStreamToStreamResult(sys.stdin.buffer,
                                              non_subunit_name='stdout')
    result.startTestRun()
    stream.run(result)
    result.stopTestRun()
    values = list(result.statuses.values())
    print(sum(v in PASSED for v in values), sum(v in FAILED for v in values),
          sum(v in SKIPPED for v in values))


if __name__ == '__main__':
    main()
