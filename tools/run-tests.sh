#!/usr/bin/env bash
# The project's test command: set up everything a fresh machine needs,
# then run the unit and functional tiers and print one summary line:
#   N passed, N failed, N skipped
# Exits non-zero if any test failed or none ran, or, with CI=true, if any
# was skipped. Each tier ends with its ten slowest tests.
#
# As root on Debian it installs the missing system packages (bindep.txt),
# creates .venv, prepares MariaDB, PostgreSQL and libvirtd
# (tools/test-setup.sh). Later runs reuse all of that.
#
# Usage: tools/run-tests.sh [unit|functional|all]   (default: all)
set -euo pipefail

cd "$(dirname "$0")/.."
TIERS=${1:-all}
source tools/setup-env.sh

run_tier() {
    local name=$1 path=$2 concurrency=$3 rc=0
    log "$name tier ($path, $concurrency workers)"
    "$VENV/bin/stestr" --test-path "$path" run --concurrency "$concurrency" \
        || rc=$?
    "$VENV/bin/stestr" last --subunit | "$VENV/bin/python" tools/subunit-counts.py >> "$COUNTS"
    log "$name tier: the ten slowest tests"
    "$VENV/bin/stestr" slowest || true
    return $rc
}

# A repository with no run yet (a fresh clone): give stestr the test
# durations of tools/test-times.txt, so that it balances its first run.
seed_test_times() {
    [ -e .stestr/next-stream ] && return 0
    log "seeding stestr with the durations of tools/test-times.txt"
    "$VENV/bin/python" tools/test-times.py stream \
        | "$VENV/bin/stestr" load --force-init > /dev/null
}

install_system_packages
make_venv
seed_test_times
if [ "$TIERS" != unit ]; then
    log "preparing MariaDB, PostgreSQL and libvirtd"
    bash tools/test-setup.sh
fi

COUNTS=$(mktemp)
trap 'rm -f "$COUNTS"' EXIT
status=0
if [ "$TIERS" != functional ]; then
    run_tier unit ./nova/tests/unit "$(nproc)" || status=1
fi
if [ "$TIERS" != unit ]; then
    # A functional test spends most of its time waiting (for MariaDB,
    # PostgreSQL, libvirtd, a child process): twice as many workers as
    # cores keep both busy. FUNCTIONAL_CONCURRENCY overrides it.
    run_tier functional ./nova/tests/functional \
        "${FUNCTIONAL_CONCURRENCY:-$(( 2 * $(nproc) ))}" || status=1
fi

read -r passed failed skipped < <(awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}' "$COUNTS")
echo "$passed passed, $failed failed, $skipped skipped"
if [ "$passed" -eq 0 ] || [ "$failed" -ne 0 ]; then
    status=1
fi
# Under CI a skip hides a missing service or a broken set-up: it fails.
if [ "${CI:-}" = true ] && [ "$skipped" -ne 0 ]; then
    log "$skipped test(s) skipped under CI=true: that fails the run"
    status=1
fi
exit $status
