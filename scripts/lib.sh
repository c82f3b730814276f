# shellcheck shell=bash
# Functions shared by scripts/*.sh. Sourced, never run; defines variables but exports nothing.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$REPO_ROOT/.venv"
VENV_PY="$VENV/bin/python"
SCRIPT_NAME="$(basename "${BASH_SOURCE[1]:-$0}" .sh)"

# Where the token MySQL/MariaDB is expected; the tests read the same variables.
MYSQL_HOST="${PARKMOBILE_MYSQL_HOST:-127.0.0.1}"
MYSQL_PORT="${PARKMOBILE_MYSQL_PORT:-3306}"
MYSQL_USER="${PARKMOBILE_MYSQL_USER:-root}"
MYSQL_PASSWORD="${PARKMOBILE_MYSQL_PASSWORD:-}"

say() { printf '%s: %s\n' "$SCRIPT_NAME" "$*"; }
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

# as_root CMD...: run CMD as root, through sudo when we are not root.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* (run as root or install sudo)"
    fi
}

# quietly CMD...: run CMD with its output kept in a temporary file; show the end of that output
# only when CMD fails, and return CMD's status.
quietly() {
    local log status=0
    log="$(mktemp "${TMPDIR:-/tmp}/parkmobile-${SCRIPT_NAME}.XXXXXX")"
    "$@" >"$log" 2>&1 || status=$?
    if [[ "$status" -ne 0 ]]; then
        printf '%s: failed (exit %s): %s\n' "$SCRIPT_NAME" "$status" "$*" >&2
        tail -n 40 "$log" | sed 's/^/    /' >&2
    fi
    rm -f "$log"
    return "$status"
}

# is_loopback HOST: true for localhost, 127.0.0.0/8 and ::1.
is_loopback() {
    case "$1" in
        localhost | ::1 | '[::1]' | 127.*) return 0 ;;
        *) return 1 ;;
    esac
}

# mysql_probe: print one line about the server at MYSQL_HOST:MYSQL_PORT, from the venv's MySQLdb:
#   "ok VERSION"        the server answers and MYSQL_USER can log in;
#   "denied CODE ..."   a server answers but refuses that login;
#   "down CODE ..."     nothing usable answers.
# The password travels in the environment, never in argv.
mysql_probe() {
    PM_HOST="$MYSQL_HOST" PM_PORT="$MYSQL_PORT" PM_USER="$MYSQL_USER" PM_PASSWORD="$MYSQL_PASSWORD" \
        "$VENV_PY" - <<'PY'
import os

import MySQLdb

try:
    conn = MySQLdb.connect(
        host=os.environ["PM_HOST"],
        port=int(os.environ["PM_PORT"]),
        user=os.environ["PM_USER"],
        password=os.environ["PM_PASSWORD"],
        connect_timeout=3,
    )
except MySQLdb.Error as err:
    code = err.args[0] if err.args and isinstance(err.args[0], int) else 0
    message = str(err.args[1] if len(err.args) > 1 else err).replace("\n", " ")
    # 1044/1045/1698: access denied; 1130: this host may not connect.
    print("denied" if code in (1044, 1045, 1130, 1698) else "down", code, message)
else:
    with conn:
        cursor = conn.cursor()
        cursor.execute("SELECT VERSION()")
        print("ok", cursor.fetchone()[0])
PY
}
