"""
Fixtures shared by the tests: a real MariaDB/MySQL, the local HTTPS stand-in, real Airflow commands.

Everything a test run writes (Airflow's home, the output of every Airflow command) lands under
``test-artifacts/``, where the secret scan reads it back.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import MySQLdb
import pytest
from cryptography.fernet import Fernet

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.faulty_tcp import FaultyForwarder

REPO = Path(__file__).resolve().parent.parent
# Separate test sessions on one machine can each keep their own, e.g. PARKMOBILE_TEST_ARTIFACTS=/tmp/a.
ARTIFACTS = Path(os.environ.get("PARKMOBILE_TEST_ARTIFACTS", REPO / "test-artifacts")).resolve()
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"
DAG_ID = "update_parkmobile_token"

CLIENT_ID = "pm-test-client"
# Every character that needs care in a form body or a Basic header, and a space.
CLIENT_SECRET = "Sx+9:q%2F&k=v/ z-" + secrets.token_hex(6)


@dataclass(frozen=True)
class MySQLServer:
    """Where the test MySQL/MariaDB answers."""

    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        return MySQLdb.connect(
            host=self.host, port=self.port, user=self.user, passwd=self.password, db=database or "", **kwargs
        )


@dataclass
class TokenDatabase:
    """A database of the test session's own, holding the token table."""

    server: MySQLServer
    name: str
    table: str = "pm_api_tokens"

    def connection_json(self, **overrides: Any) -> str:
        conn = {
            "conn_type": "mysql",
            "host": self.server.host,
            "port": self.server.port,
            "login": self.server.user,
            "password": self.server.password,
            "schema": self.name,
        }
        conn.update(overrides)
        return json.dumps(conn)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.server.connect(self.name)
        try:
            cursor = conn.cursor()
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute(sql, params)
            rows = list(cursor.fetchall())
            conn.commit()
            return rows
        finally:
            conn.close()

    def rows(self) -> list[dict[str, Any]]:
        names = ("id", "token", "token_sha256", "expires", "created_at")
        result = self.query(f"SELECT {', '.join(names)} FROM {self.table} ORDER BY id")
        return [dict(zip(names, row, strict=True)) for row in result]

    def insert(self, token: str, *, expires_in_s: int, created_ago_s: int = 3600) -> None:
        """Insert a row the way an earlier run would have, with times relative to the server's clock."""
        import hashlib

        self.query(
            f"INSERT INTO {self.table} (token, token_sha256, expires, created_at) VALUES "
            "(%s, %s, UTC_TIMESTAMP() + INTERVAL %s SECOND, UTC_TIMESTAMP() - INTERVAL %s SECOND)",
            (token, hashlib.sha256(token.encode()).hexdigest(), expires_in_s, created_ago_s),
        )


@dataclass
class AirflowResult:
    """What one Airflow command did."""

    args: list[str]
    returncode: int
    output: str
    log_path: Path
    task_states: dict[str, str] = field(default_factory=dict)
    try_numbers: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="session")
def mysql_server() -> MySQLServer:
    server = MySQLServer(
        host=os.environ.get("PARKMOBILE_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("PARKMOBILE_MYSQL_PORT", "3306")),
        user=os.environ.get("PARKMOBILE_MYSQL_USER", "root"),
        password=os.environ.get("PARKMOBILE_MYSQL_PASSWORD", ""),
    )
    try:
        server.connect().close()
    except MySQLdb.OperationalError as err:
        pytest.fail(f"No MySQL/MariaDB answers at {server.host}:{server.port}; run scripts/setup.sh ({err})")
    return server


@pytest.fixture(scope="session")
def token_db(mysql_server: MySQLServer) -> Iterator[TokenDatabase]:
    name = f"pm_test_{uuid.uuid4().hex[:10]}"
    conn = mysql_server.connect()
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    db = TokenDatabase(mysql_server, name)
    from parkmobile_token.store import render_ddl

    db.query(render_ddl(db.table))
    yield db
    conn = mysql_server.connect()
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


@pytest.fixture
def empty_token_table(token_db: TokenDatabase) -> TokenDatabase:
    token_db.query(f"DELETE FROM {token_db.table}")
    return token_db


@pytest.fixture(scope="session")
def standin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from parkmobile_token.standin import StandInServer

    server = StandInServer(CLIENT_ID, CLIENT_SECRET, cert_dir=tmp_path_factory.mktemp("standin-ca"))
    server.start()
    yield server
    server.stop()


#: Every token the stand-in issued this session, and the secrets in use: what the secret scan looks for.
SECRETS_IN_PLAY: set[str] = {CLIENT_SECRET}


def remember_secrets(server: Any) -> None:
    SECRETS_IN_PLAY.update(server.issued_tokens)


@pytest.fixture
def standin(standin_server: Any) -> Iterator[Any]:
    standin_server.reset()
    yield standin_server
    remember_secrets(standin_server)


def auth_connection_json(standin: Any, **extra: Any) -> str:
    """The ``parkmobile_auth`` connection for the stand-in, trusting its test CA."""
    return json.dumps(
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": standin.port,
            "schema": "https",
            "login": CLIENT_ID,
            "password": CLIENT_SECRET,
            "extra": {"verify": standin.ca_path, **extra},
        }
    )


@pytest.fixture
def connections_env(
    monkeypatch: pytest.MonkeyPatch, standin: Any, empty_token_table: TokenDatabase
) -> dict[str, str]:
    """Point both connections at the stand-in and the test database, in this process."""
    env = {
        "AIRFLOW_CONN_PARKMOBILE_AUTH": auth_connection_json(standin),
        "AIRFLOW_CONN_PARKMOBILE_DB": empty_token_table.connection_json(),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def forwarder(empty_token_table: TokenDatabase) -> Iterator[FaultyForwarder]:
    """A TCP forwarder to the test MySQL that can refuse or cut connections on purpose."""
    from tests.faulty_tcp import FaultyForwarder

    server = empty_token_table.server
    proxy = FaultyForwarder((server.host, server.port))
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def fernet_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def airflow_home(fernet_key: str) -> Path:
    """An Airflow home with an embedded SQLite metadata database, migrated once per session."""
    home = ARTIFACTS / "airflow-home"
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    home.mkdir(parents=True)
    env = _airflow_base_env(home, fernet_key)
    result = subprocess.run(
        [str(AIRFLOW_BIN), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    (ARTIFACTS / "db-migrate.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


def _airflow_base_env(home: Path, fernet_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": fernet_key,
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Short waits, so that retries are exercised in seconds, not minutes.
            "AIRFLOW__PARKMOBILE_TOKEN__TASK_RETRIES": "1",
            "AIRFLOW__PARKMOBILE_TOKEN__TASK_RETRY_DELAY": "1",
            "AIRFLOW__PARKMOBILE_TOKEN__FETCH_BACKOFF_INITIAL": "0.05",
            "AIRFLOW__PARKMOBILE_TOKEN__FETCH_BACKOFF_MAX": "0.2",
            "AIRFLOW__PARKMOBILE_TOKEN__FETCH_BACKOFF_JITTER": "0.05",
            "AIRFLOW__PARKMOBILE_TOKEN__FETCH_RETRY_AFTER_CAP": "1",
            "PYTHONPATH": str(REPO / "plugins"),
        }
    )
    return env


class AirflowRunner:
    """Run real Airflow commands against the test home, keeping every byte they print."""

    def __init__(self, home: Path, fernet_key: str, standin: Any, token_db: TokenDatabase) -> None:
        self.home = home
        self.env = _airflow_base_env(home, fernet_key)
        self.env["AIRFLOW_CONN_PARKMOBILE_AUTH"] = auth_connection_json(standin)
        self.env["AIRFLOW_CONN_PARKMOBILE_DB"] = token_db.connection_json()

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> AirflowResult:
        full_env = {**self.env, **(env or {})}
        started = time.time()
        result = subprocess.run(
            [str(AIRFLOW_BIN), *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = result.stdout + result.stderr
        runs = ARTIFACTS / "airflow-runs"
        runs.mkdir(parents=True, exist_ok=True)
        log_path = runs / f"{int(started * 1000)}-{'-'.join(args[:3])}.log"
        log_path.write_text(output)
        outcome = AirflowResult(list(args), result.returncode, output, log_path)
        if args[:2] == ("dags", "test"):
            outcome.task_states, outcome.try_numbers = self.latest_run_states(args[2])
        return outcome

    def dags_test(self, env: dict[str, str] | None = None) -> AirflowResult:
        return self.run("dags", "test", DAG_ID, env=env)

    def tasks_test(self, task_id: str, env: dict[str, str] | None = None) -> AirflowResult:
        return self.run("tasks", "test", DAG_ID, task_id, env=env)

    def latest_run_states(self, dag_id: str) -> tuple[dict[str, str], dict[str, int]]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            run_id = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchall()
        return {task: state for task, state, _ in rows}, {task: tries for task, _, tries in rows}


@pytest.fixture
def airflow(
    airflow_home: Path, fernet_key: str, standin: Any, empty_token_table: TokenDatabase
) -> AirflowRunner:
    return AirflowRunner(airflow_home, fernet_key, standin, empty_token_table)


# -- refresh history ------------------------------------------------------------------------------

HISTORY_TABLE = "pm_api_token_refreshes"
HISTORY_COLUMNS = (
    "id",
    "attempted_at",
    "dag_id",
    "run_id",
    "try_number",
    "outcome",
    "http_status",
    "error_class",
    "latency_ms",
    "lifetime_s",
    "expires",
    "fingerprint",
    "stored_at",
    "short_lifetime",
)


def history_rows(db: TokenDatabase) -> list[dict[str, Any]]:
    """Every row of the refresh history, oldest first."""
    result = db.query(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM {HISTORY_TABLE} ORDER BY id")
    return [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in result]


def insert_history(db: TokenDatabase, **values: Any) -> int:
    """Insert one history row with the given columns (times as naive UTC datetimes); return its id."""
    names = list(values)
    placeholders = ", ".join(["%s"] * len(names))
    db.query(
        f"INSERT INTO {HISTORY_TABLE} ({', '.join(names)}) VALUES ({placeholders})",
        tuple(values[name] for name in names),
    )
    [(row_id,)] = db.query(f"SELECT MAX(id) FROM {HISTORY_TABLE}")
    return int(row_id)


@pytest.fixture
def empty_history_table(empty_token_table: TokenDatabase) -> TokenDatabase:
    """The test database with an empty token table and an empty refresh history table."""
    from parkmobile_token.history import render_history_ddl

    empty_token_table.query(render_history_ddl(HISTORY_TABLE))
    empty_token_table.query(f"DELETE FROM {HISTORY_TABLE}")
    return empty_token_table


# -- token page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderAccount:
    """A MySQL account that may read the refresh history and each column of the token table but ``token``."""

    user: str
    password: str

    def connection_json(self, db: TokenDatabase) -> str:
        return db.connection_json(login=self.user, password=self.password)


@pytest.fixture(scope="session")
def token_reader_account(token_db: TokenDatabase) -> Iterator[ReaderAccount]:
    """The least the token page needs: it still works, so it never reads a token."""
    from parkmobile_token.history import render_history_ddl

    token_db.query(render_history_ddl(HISTORY_TABLE))
    account = ReaderAccount(f"pm_ui_{uuid.uuid4().hex[:8]}", secrets.token_hex(12))
    columns = "id, token_sha256, token_type, scope, expires, created_at"
    grants = (
        f"SELECT ({columns}) ON {token_db.name}.{token_db.table}",
        f"SELECT ON {token_db.name}.{HISTORY_TABLE}",
    )
    token_db.query("CREATE USER %s@'%%' IDENTIFIED BY %s", (account.user, account.password))
    for grant in grants:
        token_db.query(f"GRANT {grant} TO %s@'%%'", (account.user,))
    yield account
    token_db.query("DROP USER IF EXISTS %s@'%%'", (account.user,))
