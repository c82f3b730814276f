#!/usr/bin/env bash
# Run the DAG update_parkmobile_token once, end to end, with an embedded (SQLite) Airflow metadata
# database in .demo/airflow, and print the stored token's expiry and fingerprint (never the token).
#
# The token endpoint, first that applies:
#   AIRFLOW_CONN_PARKMOBILE_AUTH                  used as it is;
#   PARKMOBILE_CLIENT_ID + PARKMOBILE_CLIENT_SECRET  the real https://auth.parkmobile.io;
#   otherwise                                     the local HTTPS stand-in, with a fresh secret per run.
# The token database: the MySQL of scripts/setup.sh (PARKMOBILE_MYSQL_*), database
# PARKMOBILE_MYSQL_DATABASE (default parkmobile_demo), created when missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$REPO_ROOT/scripts/setup.sh"

umask 077 # the demo's files hold a Fernet key, a CA and logs that may show connection details
DEMO="$REPO_ROOT/.demo"
mkdir -p "$DEMO/airflow"
MYSQL_DATABASE="${PARKMOBILE_MYSQL_DATABASE:-parkmobile_demo}"
[[ "$MYSQL_DATABASE" =~ ^[A-Za-z_][A-Za-z0-9_]{0,63}$ ]] ||
    die "PARKMOBILE_MYSQL_DATABASE must be a plain identifier, not '$MYSQL_DATABASE'"

export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export AIRFLOW_HOME="$DEMO/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# A failed task would otherwise wait out its retry delays before the demo could report it.
export AIRFLOW__PARKMOBILE_TOKEN__TASK_RETRIES="${AIRFLOW__PARKMOBILE_TOKEN__TASK_RETRIES:-0}"

if [[ ! -s "$DEMO/fernet.key" ]]; then
    say "Fernet key: generating .demo/fernet.key"
    "$VENV_PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' \
        >"$DEMO/fernet.key.partial"
    mv "$DEMO/fernet.key.partial" "$DEMO/fernet.key"
fi
chmod 600 "$DEMO/fernet.key"
AIRFLOW__CORE__FERNET_KEY="$(cat "$DEMO/fernet.key")"
export AIRFLOW__CORE__FERNET_KEY

if [[ ! -f "$AIRFLOW_HOME/airflow.db" ]]; then
    say "Airflow metadata database: airflow db migrate (.demo/airflow/airflow.db)"
    quietly airflow db migrate
else
    say "Airflow metadata database: present (.demo/airflow/airflow.db)"
fi

# --- the token database --------------------------------------------------------------------------
say "token database: $MYSQL_DATABASE at $MYSQL_HOST:$MYSQL_PORT"
AIRFLOW_CONN_PARKMOBILE_DB="$(
    # shellcheck disable=SC2016 # the backquotes are MySQL's, inside Python
    PM_HOST="$MYSQL_HOST" PM_PORT="$MYSQL_PORT" PM_USER="$MYSQL_USER" PM_PASSWORD="$MYSQL_PASSWORD" \
        PM_DATABASE="$MYSQL_DATABASE" "$VENV_PY" -c '
import json
import os

import MySQLdb

env = os.environ
conn = MySQLdb.connect(
    host=env["PM_HOST"], port=int(env["PM_PORT"]), user=env["PM_USER"], password=env["PM_PASSWORD"]
)
database = env["PM_DATABASE"]  # checked to be a plain identifier above
conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
conn.close()
print(json.dumps({
    "conn_type": "mysql",
    "host": env["PM_HOST"],
    "port": int(env["PM_PORT"]),
    "login": env["PM_USER"],
    "password": env["PM_PASSWORD"],
    "schema": database,
}))
'
)"
export AIRFLOW_CONN_PARKMOBILE_DB
quietly python -m parkmobile_token init-db

# --- the token endpoint --------------------------------------------------------------------------
STANDIN_PID=""
stop_standin() {
    if [[ -n "$STANDIN_PID" ]]; then
        kill "$STANDIN_PID" 2>/dev/null || true
        wait "$STANDIN_PID" 2>/dev/null || true
        STANDIN_PID=""
    fi
}
trap stop_standin EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "${AIRFLOW_CONN_PARKMOBILE_AUTH:-}" ]]; then
    say "token endpoint: AIRFLOW_CONN_PARKMOBILE_AUTH from the environment"
elif [[ -n "${PARKMOBILE_CLIENT_ID:-}" && -n "${PARKMOBILE_CLIENT_SECRET:-}" ]]; then
    say "token endpoint: https://auth.parkmobile.io with client id and secret from the environment"
    AIRFLOW_CONN_PARKMOBILE_AUTH="$(
        "$VENV_PY" -c '
import json
import os

print(json.dumps({
    "conn_type": "http",
    "host": "auth.parkmobile.io",
    "schema": "https",
    "login": os.environ["PARKMOBILE_CLIENT_ID"],
    "password": os.environ["PARKMOBILE_CLIENT_SECRET"],
}))
'
    )"
    export AIRFLOW_CONN_PARKMOBILE_AUTH
else
    STANDIN_DIR="$DEMO/standin"
    mkdir -p "$STANDIN_DIR"
    rm -f "$STANDIN_DIR/ready.json"
    STANDIN_SECRET="$("$VENV_PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
    PARKMOBILE_STANDIN_CLIENT_ID=demo-client PARKMOBILE_STANDIN_CLIENT_SECRET="$STANDIN_SECRET" \
        "$VENV_PY" -m parkmobile_token.standin --port 0 --cert-dir "$STANDIN_DIR" \
        --ready-file "$STANDIN_DIR/ready.json" </dev/null >"$STANDIN_DIR/standin.log" 2>&1 &
    STANDIN_PID=$!
    for _ in $(seq 1 300); do
        [[ ! -s "$STANDIN_DIR/ready.json" ]] || break
        if ! kill -0 "$STANDIN_PID" 2>/dev/null; then
            STANDIN_PID=""
            tail -n 40 "$STANDIN_DIR/standin.log" | sed 's/^/    /' >&2
            die "the stand-in stopped before it was ready (log: .demo/standin/standin.log)"
        fi
        sleep 0.1
    done
    [[ -s "$STANDIN_DIR/ready.json" ]] || die "the stand-in was not ready within 30 s"
    AIRFLOW_CONN_PARKMOBILE_AUTH="$(
        PM_SECRET="$STANDIN_SECRET" PM_READY="$STANDIN_DIR/ready.json" "$VENV_PY" -c '
import json
import os

with open(os.environ["PM_READY"], encoding="utf-8") as ready_file:
    ready = json.load(ready_file)
print(json.dumps({
    "conn_type": "http",
    "host": "127.0.0.1",
    "port": int(ready["port"]),
    "schema": "https",
    "login": "demo-client",
    "password": os.environ["PM_SECRET"],
    "extra": {"verify": ready["ca_path"]},
}))
'
    )"
    unset STANDIN_SECRET
    export AIRFLOW_CONN_PARKMOBILE_AUTH
    say "token endpoint: the local stand-in at https://127.0.0.1:$(
        "$VENV_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' "$STANDIN_DIR/ready.json"
    ) (pid $STANDIN_PID)"
fi

# --- one run of the DAG --------------------------------------------------------------------------
LOG="$DEMO/dags-test.log"
say "airflow dags test update_parkmobile_token (output in .demo/dags-test.log)"
status=0
airflow dags test update_parkmobile_token >"$LOG" 2>&1 </dev/null || status=$?
# `airflow dags test` can exit 0 with a failed task: the run's own final state decides.
if [[ "$status" -ne 0 ]] ||
    ! grep -Eq 'DagRun Finished: dag_id=update_parkmobile_token, .*state=success,' "$LOG"; then
    tail -n 40 "$LOG" | sed 's/^/    /' >&2
    final="$(grep -Eo 'DagRun Finished: .*state=[a-z_]+' "$LOG" | grep -Eo 'state=[a-z_]+$' | tail -n 1 || true)"
    die "the DAG run did not succeed (exit $status, ${final:-no final state}; full log: .demo/dags-test.log)"
fi
say "DAG run: success"

stop_standin
python -m parkmobile_token show
