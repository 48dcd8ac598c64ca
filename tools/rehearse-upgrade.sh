#!/usr/bin/env bash
# Rehearse the upgrade that starts recording machine types, on a cloud
# built for the purpose, with the real commands. Installs what it needs
# first (as tools/run-tests.sh does).
#
# Usage: tools/rehearse-upgrade.sh [--instances N] [--database-url URL]
#                                  [--qemu] [--keep]
#   --instances N       instances to build (default 200)
#   --database-url URL  MariaDB/MySQL or PostgreSQL server (a user that may
#                       create databases), instead of SQLite files
#   --qemu              a real libvirtd with QEMU instead of libvirt's
#                       test driver: versioned machine types then appear
#   --keep              keep the state directory for inspection
set -euo pipefail

cd "$(dirname "$0")/.."
source tools/setup-env.sh
install_system_packages >&2
make_venv >&2
for arg in "$@"; do
    if [ "$arg" = --qemu ] || [[ "$arg" == --database-url* ]]; then
        bash tools/test-setup.sh >&2
        break
    fi
done
exec "$VENV/bin/python" tools/rehearse_upgrade.py "$@"
