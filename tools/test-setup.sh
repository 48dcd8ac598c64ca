#!/usr/bin/env bash
# Prepare the services the functional tier talks to, idempotently:
#  - the openstack_citest user and database in MariaDB and PostgreSQL
#    (the oslo.db "opportunistic" convention);
#  - a three-node MariaDB Galera cluster on ports 4306-4308 with the same
#    user and database (tools/galera.sh);
#  - a libvirtd with the QEMU driver, started if it is not running.
# Run as root. Every step can run again without harm.
set -eu

DB_USER=openstack_citest
DB_PW=openstack_citest

log() { printf 'test-setup: %s\n' "$*"; }

start_mariadb() {
    if ! mariadb-admin -uroot ping >/dev/null 2>&1; then
        log "starting MariaDB"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
        for _ in $(seq 30); do mariadb-admin -uroot ping >/dev/null 2>&1 && break; sleep 1; done
    fi
}

citest_sql() {
    # The user and database, for the shared MariaDB and the Galera cluster.
    cat <<SQL
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PW}';
CREATE USER IF NOT EXISTS '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${DB_PW}';
CREATE USER IF NOT EXISTS '${DB_USER}'@'%' IDENTIFIED BY '${DB_PW}';
GRANT ALL PRIVILEGES ON *.* TO '${DB_USER}'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '${DB_USER}'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '${DB_USER}'@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS ${DB_USER};
FLUSH PRIVILEGES;
SQL
}

setup_mariadb() {
    command -v mariadb >/dev/null || { log "MariaDB client not installed"; return 1; }
    start_mariadb
    citest_sql | mariadb -uroot
    log "MariaDB: user and database ${DB_USER} ready"
}

setup_galera() {
    # Starts what is missing (all of it on a fresh or rebooted machine);
    # nothing when the three nodes are Synced.
    [ -f /usr/lib/galera/libgalera_smm.so ] || { log "galera-4 not installed"; return 1; }
    local galera
    galera="$(dirname "$0")/galera.sh"
    bash "$galera" start-all
    # Through node 1: users and databases replicate.
    citest_sql | bash "$galera" sql 1
    log "MariaDB Galera: 3 nodes Synced, user and database ${DB_USER} ready"
}

setup_postgresql() {
    command -v psql >/dev/null || { log "PostgreSQL client not installed"; return 1; }
    if ! pg_isready -h 127.0.0.1 -q; then
        log "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
        for _ in $(seq 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
    fi
    local psql="psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtA"
    if [ "$($psql -c "SELECT 1 FROM pg_roles WHERE rolname='${DB_USER}'")" != 1 ]; then
        $psql -c "CREATE ROLE ${DB_USER} WITH LOGIN SUPERUSER PASSWORD '${DB_PW}'"
    fi
    if [ "$($psql -c "SELECT 1 FROM pg_database WHERE datname='${DB_USER}'")" != 1 ]; then
        $psql -c "CREATE DATABASE ${DB_USER} OWNER ${DB_USER}"
    fi
    log "PostgreSQL: user and database ${DB_USER} ready"
}

setup_libvirtd() {
    command -v libvirtd >/dev/null || { log "libvirtd not installed"; return 1; }
    mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/qemu
    getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
    getent passwd libvirt-qemu >/dev/null || \
        useradd --system --no-create-home -g libvirt-qemu -s /usr/sbin/nologin libvirt-qemu
    local conf=/etc/libvirt/qemu.conf
    # The container has no cgroup delegation and no security module:
    # QEMU runs as root without either.
    if ! grep -q '^# written by tools/test-setup.sh' "$conf" 2>/dev/null; then
        mkdir -p /etc/libvirt
        cat > "$conf" <<CONF
# written by tools/test-setup.sh
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
# No virtlogd in the container: QEMU writes its log file directly.
stdio_handler = "file"
CONF
    fi
    if ! virsh -c qemu:///system version >/dev/null 2>&1; then
        # libvirtd daemonizes each QEMU, whose parent is then the
        # machine's init. A container's init may reap exited processes
        # late, and libvirt's destroy waits until the QEMU process is
        # gone: 1.2 to 2 s a destroy here, 0.2 s once tini, a subreaper
        # (-s) above libvirtd, reaps them at once.
        command -v tini >/dev/null || { log "tini not installed (bindep.txt)"; return 1; }
        log "starting libvirtd (under tini)"
        setsid tini -s -- libvirtd >> /var/log/libvirt/libvirtd.out 2>&1 \
            < /dev/null &
        for _ in $(seq 30); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
    fi
    virsh -c qemu:///system version >/dev/null
    log "libvirtd: qemu:///system answers"
}

setup_mariadb
setup_galera
setup_postgresql
setup_libvirtd
