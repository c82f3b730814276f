#!/usr/bin/env bash
# Make this clone ready to test and demo: Debian build packages, the venv at .venv with the locked
# dependencies, and a MySQL/MariaDB server the tests can log in to. Idempotent, and quick once done.
#
# MySQL settings (the tests read the same): PARKMOBILE_MYSQL_HOST (127.0.0.1), PARKMOBILE_MYSQL_PORT
# (3306), PARKMOBILE_MYSQL_USER (root), PARKMOBILE_MYSQL_PASSWORD (empty). When nothing answers there
# and the host is loopback, this starts one: on port 3306 the machine's own MariaDB (installed from
# Debian's packages when missing), on any other port a private MariaDB in /tmp/parkmobile-mariadb-PORT.
# PARKMOBILE_PYTHON picks the interpreter for a new venv (default python3; 3.11 or newer).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

UV_VERSION="0.13.8"
APT_UPDATED=0
# chromium and its fonts: the token page test drives Debian's browser headless.
SYSTEM_DEBS=(python3-venv python3-dev build-essential pkg-config default-libmysqlclient-dev chromium fonts-liberation)
MYSQL_VERSION=""
MYSQL_SOCKET=""
MYSQL_LOGS=()

# ensure_debs PKG...: install the Debian packages that are not installed yet.
ensure_debs() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "not a Debian system: make sure the equivalents of these are installed: $*"
        return 0
    fi
    local pkg status missing=()
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        if [[ "$status" != *" ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get update
        APT_UPDATED=1
    fi
    quietly as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}

step_debs() {
    say "Debian packages for the venv and mysqlclient: checking"
    ensure_debs "${SYSTEM_DEBS[@]}"
}

python_ok() { # python_ok INTERPRETER: true when it runs and is Python 3.11 or newer
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

step_venv() {
    if [[ -x "$VENV_PY" ]] && python_ok "$VENV_PY"; then
        say "venv .venv: present ($("$VENV_PY" -V 2>&1))"
        return 0
    fi
    local python="${PARKMOBILE_PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || die "no '$python' on PATH: install Python 3.11 or newer"
    if ! python_ok "$python"; then
        die "$python is $("$python" -V 2>&1 || echo 'not runnable'): Python 3.11 or newer is needed" \
            "(set PARKMOBILE_PYTHON to another interpreter)"
    fi
    if [[ -e "$VENV" ]]; then
        say "venv .venv: unusable or older than Python 3.11, making it anew with $("$python" -V 2>&1)"
        rm -rf "$VENV"
    else
        say "venv .venv: creating with $("$python" -V 2>&1)"
    fi
    quietly "$python" -m venv "$VENV"
}

step_python_packages() {
    if [[ "$("$VENV/bin/uv" --version 2>/dev/null || true)" != "uv $UV_VERSION "* ]]; then
        say "uv $UV_VERSION: installing into .venv"
        if ! "$VENV_PY" -m pip --version >/dev/null 2>&1; then
            quietly "$VENV_PY" -m ensurepip
        fi
        quietly "$VENV_PY" -m pip install --disable-pip-version-check --no-input -q "uv==$UV_VERSION"
    fi
    # The stamp records what the last successful install was made from; uv itself would ask the
    # index again and rebuild the editable project on every run.
    local stamp="$VENV/.parkmobile-setup" want
    want="$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1) uv $UV_VERSION"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        say "Python packages: up to date with requirements/constraints.txt"
        return 0
    fi
    say "Python packages: installing .[dev] with requirements/constraints.txt"
    rm -f "$stamp"
    quietly "$VENV/bin/uv" pip install --python "$VENV_PY" -c requirements/constraints.txt -e '.[dev]'
    printf '%s\n' "$want" >"$stamp"
}

# --- MySQL ---------------------------------------------------------------------------------------

# mysqld_binary: print the path of the local server binary, or nothing.
mysqld_binary() {
    local candidate
    for candidate in /usr/sbin/mariadbd /usr/sbin/mysqld; do
        if [[ -x "$candidate" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
}

# The machine's own server, configured by /etc/mysql, started as this machine kind starts it.
start_system_mysql() {
    local mysqld="$1"
    as_root install -d -o mysql -g mysql -m 0755 /run/mysqld
    say "MySQL: starting the machine's MariaDB ($mysqld, configured by /etc/mysql)"
    # Debian's own config leaves the user to systemd; without --user, mariadbd refuses to run as root.
    MYSQL_LOGS=("/tmp/parkmobile-mariadbd-$MYSQL_PORT.out" /var/log/mysql/error.log)
    quietly as_root start-stop-daemon --start --oknodo --background --output "${MYSQL_LOGS[0]}" \
        --exec "$mysqld" -- --user=mysql
    MYSQL_SOCKET="$(system_mysql_socket "$mysqld")"
}

system_mysql_socket() {
    local sock
    sock="$("$1" --print-defaults 2>/dev/null | tr ' ' '\n' | sed -n 's/^--socket=//p' | tail -n 1)"
    printf '%s\n' "${sock:-/run/mysqld/mysqld.sock}"
}

# A private server of our own for a port other than 3306, so the machine's server is left alone.
start_private_mysql() {
    local mysqld="$1" base="/tmp/parkmobile-mariadb-$MYSQL_PORT" bind="$MYSQL_HOST" run_as=()
    [[ "$bind" != "localhost" ]] || die "a MySQL on port $MYSQL_PORT needs an IP host such as 127.0.0.1," \
        "not localhost (the client would use the default socket)"
    bind="${bind#[}"
    bind="${bind%]}"
    command -v mariadb-install-db >/dev/null 2>&1 || ensure_debs mariadb-server
    if [[ "$(id -u)" -eq 0 ]]; then
        run_as=(--user=mysql)
    fi
    MYSQL_SOCKET="$base/mysqld.sock"
    MYSQL_LOGS=("$base/mariadbd.out" "$base/error.log")
    if [[ ! -d "$base/data/mysql" ]]; then
        say "MySQL: initializing a private MariaDB in $base"
        mkdir -p "$base/data"
        chmod 0755 "$base"
        if [[ ${#run_as[@]} -gt 0 ]]; then
            chown -R mysql:mysql "$base"
        fi
        quietly mariadb-install-db --no-defaults --datadir="$base/data" "${run_as[@]}"
    fi
    say "MySQL: starting the private MariaDB at $MYSQL_HOST:$MYSQL_PORT (data in $base)"
    quietly start-stop-daemon --start --oknodo --background --pidfile "$base/mariadbd.pid" \
        --output "$base/mariadbd.out" --exec "$mysqld" -- \
        --no-defaults --datadir="$base/data" --port="$MYSQL_PORT" --bind-address="$bind" \
        --socket="$MYSQL_SOCKET" --pid-file="$base/mariadbd.pid" --log-error="${MYSQL_LOGS[1]}" \
        --skip-name-resolve "${run_as[@]}"
}

# Let MYSQL_USER log in over TCP with MYSQL_PASSWORD, through the server's unix socket as root (a new
# Debian MariaDB lets root in by unix_socket only). root@localhost keeps unix_socket as a second way in.
allow_tcp_login() {
    say "MySQL: letting $MYSQL_USER log in over TCP (through $MYSQL_SOCKET)"
    printf '%s' "$MYSQL_PASSWORD" | quietly as_root "$VENV_PY" -c '
import sys

import MySQLdb

sock, user = sys.argv[1], sys.argv[2]
password = sys.stdin.read()
conn = MySQLdb.connect(unix_socket=sock, user="root")
cursor = conn.cursor()
if user == "root":
    cursor.execute(
        "ALTER USER %s@%s IDENTIFIED VIA mysql_native_password USING PASSWORD(%s) OR unix_socket",
        (user, "localhost", password),
    )
hosts = ["127.0.0.1", "::1"] + ([] if user == "root" else ["localhost"])
for host in hosts:
    cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
    cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (user, host))
conn.close()
' "$MYSQL_SOCKET" "$MYSQL_USER"
}

# wait_for_mysql SECONDS: until the server answers (even with a refusal); prints the last probe.
wait_for_mysql() {
    local deadline=$((SECONDS + $1)) probe
    while :; do
        probe="$(mysql_probe)"
        if [[ "$probe" != down* || "$SECONDS" -ge "$deadline" ]]; then
            printf '%s\n' "$probe"
            return 0
        fi
        sleep 1
    done
}

ensure_test_database() {
    PM_HOST="$MYSQL_HOST" PM_PORT="$MYSQL_PORT" PM_USER="$MYSQL_USER" PM_PASSWORD="$MYSQL_PASSWORD" \
        quietly "$VENV_PY" -c '
import os

import MySQLdb

conn = MySQLdb.connect(
    host=os.environ["PM_HOST"],
    port=int(os.environ["PM_PORT"]),
    user=os.environ["PM_USER"],
    password=os.environ["PM_PASSWORD"],
)
conn.cursor().execute("CREATE DATABASE IF NOT EXISTS test")
conn.close()
'
}

step_mysql() {
    local where="$MYSQL_HOST:$MYSQL_PORT" probe mysqld
    probe="$(mysql_probe)" || die "could not run the MySQL probe with $VENV_PY"
    if [[ "$probe" == ok* ]]; then
        MYSQL_VERSION="${probe#ok }"
        say "MySQL at $where: answers ($MYSQL_VERSION)"
        return 0
    fi
    if [[ "$probe" == denied* ]]; then
        die "the MySQL at $where refuses user '$MYSQL_USER' (${probe#denied }); set PARKMOBILE_MYSQL_USER" \
            "and PARKMOBILE_MYSQL_PASSWORD, or on a local MariaDB run as root: mariadb -e" \
            "\"ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket\""
    fi
    if ! is_loopback "$MYSQL_HOST"; then
        die "no MySQL answers at $where (${probe#down }); start it, or point PARKMOBILE_MYSQL_HOST and" \
            "PARKMOBILE_MYSQL_PORT at one"
    fi

    say "MySQL at $where: nothing answers, starting a local MariaDB"
    mysqld="$(mysqld_binary)"
    if [[ -z "$mysqld" ]]; then
        ensure_debs mariadb-server
        mysqld="$(mysqld_binary)"
        [[ -n "$mysqld" ]] || die "mariadb-server is installed but neither /usr/sbin/mariadbd nor mysqld exists"
    fi
    if [[ "$MYSQL_PORT" == 3306 ]]; then
        start_system_mysql "$mysqld"
    else
        start_private_mysql "$mysqld"
    fi

    probe="$(wait_for_mysql 60)"
    if [[ "$probe" == down* ]]; then
        local log
        for log in "${MYSQL_LOGS[@]}"; do
            if as_root test -s "$log"; then
                warn "last lines of $log:"
                as_root tail -n 20 "$log" | sed 's/^/    /' >&2 || true
            fi
        done
        die "MariaDB did not answer at $where within 60 s (${probe#down })"
    fi
    if [[ "$probe" == denied* ]]; then
        allow_tcp_login
        probe="$(mysql_probe)"
        [[ "$probe" == ok* ]] || die "user '$MYSQL_USER' still cannot log in at $where: ${probe#* }"
    fi
    ensure_test_database
    MYSQL_VERSION="${probe#ok }"
    say "MySQL at $where: started ($MYSQL_VERSION), database test present"
}

step_debs
step_venv
step_python_packages
step_mysql
say "ready (python $("$VENV_PY" -c 'import platform; print(platform.python_version())'), MySQL $MYSQL_VERSION at $MYSQL_HOST:$MYSQL_PORT)"
