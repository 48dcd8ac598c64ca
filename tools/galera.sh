#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on 127.0.0.1 for the functional tests
# (nova/tests/functional/db/test_galera.py). Run as root.
#
#   tools/galera.sh status     each node's state and the cluster size
#   tools/galera.sh start N    start node N (1-3) as a joiner, wait: Synced
#   tools/galera.sh stop N     shut node N down cleanly
#   tools/galera.sh start-empty N
#                              start node N (stopped) with its data
#                              directory emptied, as after a lost disk:
#                              it joins by a full copy (SST)
#   tools/galera.sh sql N      run the SQL read from stdin on node N as root
#   tools/galera.sh start-all  what tools/test-setup.sh runs: make the
#                              cluster, bootstrap it again after a reboot
#                              or start the missing nodes; nothing to do
#                              when all three are Synced
#
# Every node listens on 127.0.0.1 only, on ports clear of the shared
# MariaDB (3306): node 1, 2, 3 take 4306, 4307, 4308 for clients, 4567,
# 4577, 4587 for group communication, 4568, 4578, 4588 for incremental
# state transfer (IST) and 4444, 4454, 4464 for rsync's state snapshot
# transfer (SST). Node N's data is in $GALERA_DIR/nodeN, its config,
# socket, pid file and error log beside it as nodeN.{cnf,sock,pid,err}.
set -eu

GALERA_DIR=${GALERA_DIR:-/var/lib/nova-galera}
NODES=(1 2 3)
# Seconds a node may take to reach Synced (a joiner copies the whole data
# directory from its donor first).
START_TIMEOUT=${GALERA_START_TIMEOUT:-120}

log() { printf 'galera: %s\n' "$*"; }

client_port() { echo $((4305 + $1)); }
gcomm_port() { echo $((4557 + 10 * $1)); }
ist_port() { echo $((4558 + 10 * $1)); }
sst_port() { echo $((4434 + 10 * $1)); }
node_file() { echo "$GALERA_DIR/node$1.$2"; }

cluster_address() {
    local n addresses=()
    for n in "${NODES[@]}"; do
        addresses+=("127.0.0.1:$(gcomm_port "$n")")
    done
    local IFS=,
    echo "gcomm://${addresses[*]}"
}

provider_options() {
    # gcache.recover=no: a node killed (a reboot) rejoins through a full
    # copy, and a write-set cache recovered from a history the cluster
    # does not share (it ran on after node 1 stopped) makes the
    # incremental transfer after that copy fail ("Unsupported CC action
    # version"), leaving the node out of the cluster.
    local n=$1 options=(
        "gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n")"
        "ist.recv_addr=127.0.0.1:$(ist_port "$n")"
        gcache.size=128M
        gcache.recover=no)
    local IFS=';'
    echo "${options[*]}"
}

write_config() {
    # Rewritten at every start, so a change here reaches existing nodes.
    local n=$1
    cat > "$(node_file "$n" cnf)" <<CNF
# written by tools/galera.sh
[mysqld]
# Not root: rsync's SST daemon started by root drops to nobody, who may
# not write a joiner's data directory.
user = mysql
datadir = $GALERA_DIR/node$n
socket = $(node_file "$n" sock)
pid-file = $(node_file "$n" pid)
log-error = $(node_file "$n" err)
bind-address = 127.0.0.1
port = $(client_port "$n")
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
# Small: two cores and 3 nodes beside the other servers.
innodb_buffer_pool_size = 128M
innodb_log_file_size = 48M
innodb_flush_log_at_trx_commit = 2
performance_schema = OFF
# What Galera requires.
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_cluster_name = nova_galera
wsrep_cluster_address = $(cluster_address)
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:$(gcomm_port "$n")
wsrep_provider_options = "$(provider_options "$n")"
wsrep_sst_method = rsync
# "MDL conflict ... solved by abort" and certification conflicts in the
# error log: why a client got a deadlock error.
wsrep_log_conflicts = ON
wsrep_sst_receive_address = 127.0.0.1:$(sst_port "$n")
CNF
}

sql() {
    local n=$1
    shift
    mariadb --no-defaults -uroot -S "$(node_file "$n" sock)" -NB "$@"
}

is_up() {
    mariadb-admin --no-defaults -uroot -S "$(node_file "$1" sock)" \
        ping >/dev/null 2>&1
}

status_of() {
    # The value of status variable $2 on node $1; empty if it is down.
    sql "$1" -e "SHOW STATUS LIKE '$2'" 2>/dev/null | cut -f2
}

is_synced() {
    [ "$(status_of "$1" wsrep_local_state_comment)" = Synced ] &&
        [ "$(status_of "$1" wsrep_ready)" = ON ]
}

fail() {
    local n=$1
    shift
    log "node $n: $*" >&2
    tail -n 40 "$(node_file "$n" err)" >&2 || true
    exit 1
}

alive() {
    # Process $1 runs (a server that died is our zombie until we exit).
    local _pid _comm state
    read -r _pid _comm state _ 2>/dev/null </proc/"$1"/stat &&
        [ "$state" != Z ]
}

wait_synced() {
    # Wait until node $1 (started as process $2, if given) is Synced.
    local n=$1 pid=${2:-} deadline=$((SECONDS + START_TIMEOUT))
    until is_synced "$n"; do
        [ -z "$pid" ] || alive "$pid" ||
            fail "$n" "mariadbd exited while starting; its error log ends:"
        [ $SECONDS -lt $deadline ] ||
            fail "$n" "not Synced after ${START_TIMEOUT}s; its error log ends:"
        sleep 0.5
    done
}

make_datadir() {
    # Node 1 gets system tables; a joiner's empty directory is filled by
    # the SST from its donor.
    local n=$1 dir=$GALERA_DIR/node$1
    [ -d "$dir" ] && return 0
    mkdir -p "$dir"
    chown mysql:mysql "$dir"
    if [ "$n" = 1 ]; then
        local install_log
        install_log=$(node_file "$n" install.log)
        mariadb-install-db --no-defaults --user=mysql --datadir="$dir" \
            --skip-test-db >"$install_log" 2>&1 ||
            fail "$n" "mariadb-install-db failed: see $install_log"
    fi
}

launch() {
    # Start mariadbd of node $1 in the background, detached from the
    # caller (a test's subprocess must not wait for its output).
    local n=$1
    shift
    mkdir -p "$GALERA_DIR"
    chown mysql:mysql "$GALERA_DIR"
    make_datadir "$n"
    write_config "$n"
    local err
    err=$(node_file "$n" err)
    touch "$err"
    chown mysql:mysql "$err"
    setsid /usr/sbin/mariadbd --defaults-file="$(node_file "$n" cnf)" "$@" \
        </dev/null >>"$err" 2>&1 &
    LAUNCHED=$!
}

bootstrap() {
    # Node 1 starts a new cluster. After a reboot no node shut down
    # cleanly and grastate.dat marks none safe to bootstrap from: node 1
    # is the reference, and the others come back as copies of it.
    local state=$GALERA_DIR/node1/grastate.dat
    if [ -f "$state" ]; then
        sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$state"
    fi
    log "node 1: bootstrapping a new cluster"
    launch 1 --wsrep-new-cluster
    wait_synced 1 "$LAUNCHED"
}

others_up() {
    local other
    for other in "${NODES[@]}"; do
        [ "$other" != "$1" ] && is_up "$other" && return 0
    done
    return 1
}

start_node() {
    local n=$1
    if is_up "$n"; then
        wait_synced "$n"
        return 0
    fi
    others_up "$n" ||
        { log "node $n: no other node runs to join: use start-all" >&2;
          exit 1; }
    log "node $n: starting (joiner)"
    local err offset
    err=$(node_file "$n" err)
    offset=$(stat -c %s "$err" 2>/dev/null || echo 0)
    launch "$n"
    wait_synced "$n" "$LAUNCHED"
    log "node $n: Synced, joined by $(transfer_since "$err" "$offset")"
}

transfer_since() {
    # How the node whose error log is $1 got the cluster's state since
    # byte $2 of it, as the SST script says on the joiner: SST (a copy of
    # the donor's data directory) or IST (only the write sets it missed).
    local received
    received=$(tail -c +"$(($2 + 1))" "$1" |
        grep -o '[IS]ST completed on joiner' || true)
    case $received in
        SST*) echo SST ;;
        IST*) echo IST ;;
        *) echo 'no state transfer' ;;
    esac
}

start_empty() {
    # A node back after losing its disk: nothing of it is kept.
    local n=$1
    is_up "$n" && { log "node $n: running; stop it first" >&2; exit 1; }
    rm -rf "${GALERA_DIR:?}/node$n"
    mkdir -p "$GALERA_DIR/node$n"
    chown mysql:mysql "$GALERA_DIR/node$n"
    start_node "$n"
}

stop_node() {
    local n=$1
    if ! is_up "$n"; then
        log "node $n: not running"
        return 0
    fi
    # Waits until the server has exited (its pid file is gone).
    mariadb-admin --no-defaults -uroot -S "$(node_file "$n" sock)" shutdown
    log "node $n: stopped"
}

cluster_size() {
    status_of "$1" wsrep_cluster_size
}

all_synced() {
    local n
    for n in "${NODES[@]}"; do
        is_synced "$n" && [ "$(cluster_size "$n")" = ${#NODES[@]} ] ||
            return 1
    done
}

start_all() {
    if all_synced; then
        log "${#NODES[@]} nodes Synced, nothing to do"
        return 0
    fi
    local n running=0
    for n in "${NODES[@]}"; do
        is_up "$n" && running=1
    done
    [ $running = 1 ] || bootstrap
    for n in "${NODES[@]}"; do
        start_node "$n"
    done
    all_synced || { log "the cluster did not form" >&2; status >&2; exit 1; }
}

status() {
    local n
    for n in "${NODES[@]}"; do
        if is_up "$n"; then
            printf 'node %s: port %s, %s, cluster size %s\n' "$n" \
                "$(client_port "$n")" \
                "$(status_of "$n" wsrep_local_state_comment)" \
                "$(cluster_size "$n")"
        else
            printf 'node %s: port %s, down\n' "$n" "$(client_port "$n")"
        fi
    done
}

usage() {
    echo "usage: $0 status|start-all|start N|start-empty N|stop N|sql N" \
        "(N: 1, 2 or 3)" >&2
    exit 2
}

case ${1:-}/${2:-} in
    status/) status ;;
    start-all/) start_all ;;
    start/[123]) start_node "$2" ;;
    start-empty/[123]) start_empty "$2" ;;
    stop/[123]) stop_node "$2" ;;
    sql/[123]) sql "$2" ;;
    *) usage ;;
esac
