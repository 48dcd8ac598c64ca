# Shared by tools/run-tests.sh and tools/rehearse-upgrade.sh: install what a
# fresh Debian machine lacks and make the virtual environment. Source it
# from the repository root with VENV and PYTHON set (or left to defaults).

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Each line says how long the run has taken so far (bash's SECONDS), so
# a log shows where a fresh machine's time goes.
log() { printf '==> [%4ds] %s\n' "$SECONDS" "$*"; }

install_system_packages() {
    local wanted=(libvirt-dev pkg-config gcc libvirt-daemon
                  libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
                  galera-4 rsync tini)
    command -v mariadb >/dev/null || wanted+=(mariadb-server mariadb-client)
    command -v psql >/dev/null || wanted+=(postgresql postgresql-client)
    local missing=()
    for pkg in "${wanted[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing system packages: ${missing[*]} (install them as root)"
        return 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_venv() {
    # Reinstall only when the requirements change.
    local stamp="$VENV/.requirements.sha" want
    want=$(cat requirements.txt test-requirements.txt pyproject.toml | sha256sum)
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r requirements.txt -r test-requirements.txt
    "$VENV/bin/pip" install -q --no-deps -e .
    "$VENV/bin/python" -c 'import nova, libvirt, oslo_db, stestr'
    echo "$want" > "$stamp"
}
