"""
Benchmarks of the ParkMobile token package, each measured beside its floor in one run on this machine.

1. Parse time of ``dags/update_parkmobile_token.py`` against a trivial one-task DAG, in forked
   children of a parent that holds what the dag processor's parent holds (``parse_harness.py``).
2. One in-process refresh (``fetch_token``, ``store``, ``delete_expiring``) against one raw
   ``requests.post`` to the same stand-in plus one plain INSERT and one DELETE with MySQLdb.
3. ``ParkMobileTokenHook.get_token()`` latency and queries per call over a table of 100,000 rows.
4. ``TokenStore.delete_expiring`` over 1,000,000 expired rows, with a concurrent ``get_token()`` loop.

Run from the repository root: ``python benchmarks/run.py [--quick] [--json PATH]``. It needs the local
MySQL/MariaDB (a scratch database ``pm_bench_<random>`` is created and dropped) and starts the HTTPS
stand-in in-process. The exit status is 0 whenever the benchmarks ran, whether or not a target was
met; it is non-zero only when something failed. No token and no secret is ever printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "plugins"
DAG_FILE = REPO / "dags" / "update_parkmobile_token.py"
HARNESS = Path(__file__).resolve().parent / "parse_harness.py"

TOKEN_TABLE = "pm_api_tokens"
HISTORY_TABLE = "pm_api_token_refreshes"
HISTORY_DDL = "pm_api_token_refreshes.sql"

PARSE_TARGET_RATIO = 1.3
REFRESH_TARGET_RATIO = 1.5
GET_TOKEN_TARGET_P99_MS = 2.0
GET_TOKEN_TARGET_QUERIES = 1
CLEANUP_TARGET_MAX_MS = 100.0

TRIVIAL_DAG = '''\
"""A trivial DAG: the floor of what any DAG file costs to parse."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(
    dag_id="benchmark_trivial",
    schedule="*/30 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
):
    EmptyOperator(task_id="noop")
'''


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; ``--quick`` shrinks everything."""

    parse_repeats: int
    refresh_repeats: int
    refresh_warmup: int
    token_rows: int
    history_rows: int
    get_token_calls: int
    cleanup_rows: int

    @classmethod
    def for_mode(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(5, 8, 2, 10_000, 10_000, 300, 20_000)
        return cls(15, 40, 5, 100_000, 100_000, 2_000, 1_000_000)


@dataclass(frozen=True)
class MySQLTarget:
    """Where the benchmark's MySQL/MariaDB answers; the password comes from the environment only."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)

    def connect(self, database: str = "", **kwargs: Any) -> Any:
        import MySQLdb

        return MySQLdb.connect(
            host=self.host, port=self.port, user=self.user, passwd=self.password, db=database, **kwargs
        )


@dataclass
class Row:
    """One line of the final table."""

    number: str
    measure: str
    value: str
    target: str
    result: str


@dataclass
class Report:
    """Everything measured, for the final table and the JSON file."""

    rows: list[Row] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)

    def add(self, number: str, measure: str, value: str, target: str, passed: bool | None) -> None:
        result = "report" if passed is None else ("PASS" if passed else "MISS")
        self.rows.append(Row(number, measure, value, target, result))


# -- small helpers ----------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile by the nearest-rank method: a value that was actually observed."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def load_summary() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def made_up_token(prefix: str, number: int) -> tuple[str, str]:
    """A made-up token (not a secret: the benchmark invents it) and its SHA-256."""
    token = f"{prefix}-{number:09d}"
    return token, hashlib.sha256(token.encode("ascii")).hexdigest()


def isolated_environment(airflow_home: Path) -> dict[str, str]:
    """This environment without inherited Airflow settings, plus the benchmark's own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") and key != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # INFO would print one line per token request; both sides of each comparison log alike.
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    return env


# -- 1. parse time ------------------------------------------------------------------------------------


def run_parse_harness(parent: str, trivial: Path, repeats: int, env: dict[str, str]) -> dict[str, Any]:
    command = [
        sys.executable,
        str(HARNESS),
        "--parent",
        parent,
        "--repeats",
        str(repeats),
        "--plugins-folder",
        str(PLUGINS),
        str(DAG_FILE),
        str(trivial),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"parse harness ({parent}) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, trivial_run = result["files"]
    result["ours_median_ms"] = median(ours["samples_ms"])
    result["trivial_median_ms"] = median(trivial_run["samples_ms"])
    result["ratio"] = result["ours_median_ms"] / result["trivial_median_ms"]
    # The fastest run of each is the least disturbed by a loaded machine: a second view of the same ratio.
    result["ratio_of_minimums"] = min(ours["samples_ms"]) / min(trivial_run["samples_ms"])
    result["pass"] = result["ratio"] <= PARSE_TARGET_RATIO
    return result


def bench_parse(sizes: Sizes, env: dict[str, str], workdir: Path, report: Report) -> None:
    say(f"[1/4] DAG parse time, {sizes.parse_repeats} interleaved runs of each file in forked children")
    trivial = workdir / "dags" / "benchmark_trivial.py"
    trivial.parent.mkdir(parents=True, exist_ok=True)
    trivial.write_text(TRIVIAL_DAG, encoding="utf-8")
    section: dict[str, Any] = {"target_ratio": PARSE_TARGET_RATIO, "repeats": sizes.parse_repeats}
    labels = {
        "sdk": "parent imported airflow.sdk + config",
        "processor": "parent also imported airflow.dag_processing.processor",
    }
    for parent, label in labels.items():
        result = run_parse_harness(parent, trivial, sizes.parse_repeats, env)
        section[parent] = result
        say(
            f"      {label}: ours {result['ours_median_ms']:.1f} ms, trivial "
            f"{result['trivial_median_ms']:.1f} ms, ratio {result['ratio']:.2f} "
            f"(of the fastest runs: {result['ratio_of_minimums']:.2f})"
        )
    say(
        "      children execute only the DAG file (and the package modules it imports); Airflow modules "
        "the files name were pre-imported in the parent, as the dag processor does"
    )
    section.update(
        ours_median_ms=section["sdk"]["ours_median_ms"],
        trivial_median_ms=section["sdk"]["trivial_median_ms"],
        ratio=section["sdk"]["ratio"],
        passed=section["sdk"]["pass"],
    )
    report.sections["parse"] = section
    for number, parent in (("1", "sdk"), ("1b", "processor")):
        result = section[parent]
        report.add(
            number,
            f"DAG parse, ours / trivial ({labels[parent]})",
            f"{result['ratio']:.2f} ({result['ours_median_ms']:.1f} / {result['trivial_median_ms']:.1f} ms)",
            f"<= {PARSE_TARGET_RATIO}",
            result["pass"],
        )


# -- scratch database and stand-in -----------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(mysql: MySQLTarget) -> Iterator[str]:
    """Create ``pm_bench_<random>`` with the package's own DDL; drop it afterwards, whatever happens."""
    from parkmobile_token.store import render_ddl

    name = f"pm_bench_{secrets.token_hex(5)}"
    admin = mysql.connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    try:
        conn = mysql.connect(name)
        try:
            with conn.cursor() as cursor:
                cursor.execute(render_ddl(TOKEN_TABLE))
                cursor.execute(render_ddl(HISTORY_TABLE, resource=HISTORY_DDL, default=HISTORY_TABLE))
            conn.commit()
        finally:
            conn.close()
        yield name
    finally:
        admin = mysql.connect()
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        finally:
            admin.close()


@dataclass(frozen=True)
class Setup:
    """What every database benchmark uses."""

    mysql: MySQLTarget
    database: str
    standin: Any
    client_id: str
    client_secret: str = field(repr=False)

    def connect(self, **kwargs: Any) -> Any:
        conn = self.mysql.connect(self.database, **kwargs)
        with conn.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
        return conn

    def token_requests(self) -> int:
        return len(self.standin.token_requests())


def point_connections_at(setup: Setup) -> None:
    """Set both Airflow connections in this process's environment (JSON connections)."""
    os.environ["AIRFLOW_CONN_PARKMOBILE_AUTH"] = json.dumps(
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": setup.standin.port,
            "schema": "https",
            "login": setup.client_id,
            "password": setup.client_secret,
            "extra": {"verify": setup.standin.ca_path},
        }
    )
    os.environ["AIRFLOW_CONN_PARKMOBILE_DB"] = json.dumps(
        {
            "conn_type": "mysql",
            "host": setup.mysql.host,
            "port": setup.mysql.port,
            "login": setup.mysql.user,
            "password": setup.mysql.password,
            "schema": setup.database,
        }
    )


def execute(conn: Any, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        rows = list(cursor.fetchall() or ())
    conn.commit()
    return rows


def global_status(conn: Any, name: str) -> int:
    return int(execute(conn, "SHOW GLOBAL STATUS LIKE %s", (name,))[0][1])


def session_questions(conn: Any) -> int:
    """Statements this session has sent so far, this one included."""
    with conn.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])


# -- 2. one refresh -----------------------------------------------------------------------------------


def refresh_ours() -> None:
    """One refresh as the DAG's three tasks do it, in-process: fetch, store, clean up."""
    from parkmobile_token.hooks import ParkMobileAuthHook
    from parkmobile_token.store import TokenStore

    token = ParkMobileAuthHook().fetch_token()
    store = TokenStore()
    store.store(
        token.access_token, expires_at=token.expires_at, token_type=token.token_type, scope=token.scope
    )
    store.delete_expiring(keep_sha256=token.sha256)


INSERT_SQL = (
    f"INSERT INTO {TOKEN_TABLE} (token, token_sha256, token_type, scope, expires, created_at) "  # noqa: S608
    "VALUES (%s, %s, %s, %s, UTC_TIMESTAMP() + INTERVAL %s SECOND, UTC_TIMESTAMP())"
)
DELETE_SQL = (
    f"DELETE FROM {TOKEN_TABLE} WHERE expires <= UTC_TIMESTAMP() + INTERVAL 60 SECOND "  # noqa: S608
    "AND created_at < UTC_TIMESTAMP() - INTERVAL 60 SECOND AND token_sha256 <> %s LIMIT 1000"
)


def make_floor(setup: Setup, *, reuse: Any = None) -> Callable[[], None]:
    """The floor: one raw POST (same CA, same form), one plain INSERT, one plain DELETE."""
    import requests

    url = f"{setup.standin.base_url}/connect/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": setup.client_id,
        "client_secret": setup.client_secret,
    }

    def run_statement(statement: str, params: Sequence[Any]) -> None:
        conn = reuse if reuse is not None else setup.mysql.connect(setup.database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement, params)
            conn.commit()
        finally:
            if reuse is None:
                conn.close()

    def refresh_floor() -> None:
        response = requests.post(
            url,
            data=form,
            headers={"Accept": "application/json"},
            verify=setup.standin.ca_path,
            timeout=10,
            allow_redirects=False,
        )
        response.raise_for_status()
        body = response.json()
        token = body["access_token"]
        sha256 = hashlib.sha256(token.encode("utf-8")).hexdigest()
        run_statement(INSERT_SQL, (token, sha256, body["token_type"], body.get("scope"), body["expires_in"]))
        run_statement(DELETE_SQL, (sha256,))

    return refresh_floor


def connections_per_call(setup: Setup, action: Callable[[], None], calls: int = 3) -> float:
    """MySQL connections opened per call, from the server-wide counter (others' connections add noise)."""
    with contextlib.closing(setup.connect()) as watcher:
        before = global_status(watcher, "Connections")
        for _ in range(calls):
            action()
        return (global_status(watcher, "Connections") - before) / calls


def bench_refresh(setup: Setup, sizes: Sizes, report: Report) -> None:
    say(f"[2/4] one refresh, ours against the floor, {sizes.refresh_repeats} interleaved runs of each")
    reused = setup.mysql.connect(setup.database)
    try:
        contenders: dict[str, Callable[[], None]] = {
            "ours": refresh_ours,
            "floor": make_floor(setup),
            "floor_one_connection": make_floor(setup, reuse=reused),
        }
        for _ in range(sizes.refresh_warmup):
            for action in contenders.values():
                action()
        connections = {name: connections_per_call(setup, action) for name, action in contenders.items()}
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for repeat in range(sizes.refresh_repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                contenders[name]()
                samples[name].append((time.perf_counter() - started) * 1000)
    finally:
        reused.close()
    medians = {name: median(values) for name, values in samples.items()}
    ratio = medians["ours"] / medians["floor"]
    fairness = (
        "the floor opens a new MySQL connection for its INSERT and another for its DELETE, as TokenStore "
        "does (one per store, one per delete); the ratio is against that floor, the one-connection floor "
        "is shown for reference"
    )
    say(
        f"      ours {medians['ours']:.1f} ms, floor {medians['floor']:.1f} ms, floor on one reused "
        f"connection {medians['floor_one_connection']:.1f} ms; ratio {ratio:.2f}"
    )
    say(f"      {fairness}")
    report.sections["refresh"] = {
        "target_ratio": REFRESH_TARGET_RATIO,
        "repeats": sizes.refresh_repeats,
        "median_ms": medians,
        "samples_ms": samples,
        "mysql_connections_per_refresh": connections,
        "ratio": ratio,
        "ratio_vs_one_connection_floor": medians["ours"] / medians["floor_one_connection"],
        "passed": ratio <= REFRESH_TARGET_RATIO,
        "fairness": fairness,
    }
    report.add(
        "2",
        "refresh, ours / floor (median; floor opens its connections too)",
        f"{ratio:.2f} ({medians['ours']:.1f} / {medians['floor']:.1f} ms)",
        f"<= {REFRESH_TARGET_RATIO}",
        ratio <= REFRESH_TARGET_RATIO,
    )


# -- 3. get_token over a full table ------------------------------------------------------------------


def fill_token_rows(conn: Any, rows: int, *, now: datetime, batch: int = 5_000) -> None:
    """Insert ``rows`` made-up tokens, nine in ten expired (up to 30 days ago), one in ten valid."""
    statement = (
        f"INSERT INTO {TOKEN_TABLE} (token, token_sha256, token_type, scope, expires, created_at) "  # noqa: S608
        "VALUES (%s, %s, 'Bearer', 'api', %s, %s)"
    )
    prefix = f"bench-{secrets.token_hex(4)}"
    naive_now = now.replace(tzinfo=None)
    for start in range(0, rows, batch):
        values = []
        for number in range(start, min(start + batch, rows)):
            token, sha256 = made_up_token(prefix, number)
            if number % 10 == 9:  # valid: 2 to 50 minutes left, less than the stand-in's fresh tokens
                expires = naive_now + timedelta(seconds=120 + (number * 7919) % 2_880)
            else:
                expires = naive_now - timedelta(seconds=60 + (number * 7919) % 2_592_000)
            values.append((token, sha256, expires, expires - timedelta(hours=1)))
        with conn.cursor() as cursor:
            cursor.executemany(statement, values)
        conn.commit()


HISTORY_COLUMNS = (
    "attempted_at",
    "dag_id",
    "run_id",
    "try_number",
    "outcome",
    "http_status",
    "latency_ms",
    "lifetime_s",
    "expires",
    "fingerprint",
    "stored_at",
)


def fill_history_rows(conn: Any, rows: int, *, now: datetime, batch: int = 5_000) -> int:
    """Insert ``rows`` refresh history rows, one per half hour back from now; return 0 if no such table."""
    existing = {row[0] for row in execute(conn, f"SHOW COLUMNS FROM {HISTORY_TABLE}")}
    columns = [name for name in HISTORY_COLUMNS if name in existing]
    statement = (
        f"INSERT INTO {HISTORY_TABLE} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    naive_now = now.replace(tzinfo=None)
    for start in range(0, rows, batch):
        values = []
        for number in range(start, min(start + batch, rows)):
            attempted = naive_now - timedelta(minutes=30 * number)
            failed = number % 20 == 7
            record = {
                "attempted_at": attempted,
                "dag_id": "update_parkmobile_token",
                "run_id": f"scheduled__{attempted:%Y-%m-%dT%H:%M:%S}+00:00",
                "try_number": 1,
                "outcome": "failed" if failed else "stored",
                "http_status": 503 if failed else 200,
                "latency_ms": 40 + number % 200,
                "lifetime_s": None if failed else 3600,
                "expires": None if failed else attempted + timedelta(hours=1),
                "fingerprint": None if failed else f"{number:012x}",
                "stored_at": None if failed else attempted + timedelta(seconds=2),
            }
            values.append(tuple(record[name] for name in columns))
        with conn.cursor() as cursor:
            cursor.executemany(statement, values)
        conn.commit()
    return rows


def explain_newest_valid(conn: Any) -> dict[str, Any]:
    from parkmobile_token.token_hook import NEWEST_VALID_SQL

    with conn.cursor() as cursor:
        cursor.execute("EXPLAIN " + NEWEST_VALID_SQL.format(table=TOKEN_TABLE), (60,))
        names = [column[0] for column in cursor.description]
        row = cursor.fetchone()
    plan = dict(zip(names, row, strict=True))
    return {key: plan.get(key) for key in ("type", "key", "rows", "Extra")}


def bench_get_token(setup: Setup, sizes: Sizes, report: Report) -> None:
    from parkmobile_token.token_hook import NEWEST_VALID_SQL, ParkMobileTokenHook

    say(
        f"[3/4] get_token(), {sizes.get_token_calls} calls over {sizes.token_rows:,} token rows and "
        f"{sizes.history_rows:,} history rows"
    )
    now = datetime.now(UTC)
    with contextlib.closing(setup.connect()) as conn:
        started = time.perf_counter()
        fill_token_rows(conn, sizes.token_rows, now=now)
        history_rows = fill_history_rows(conn, sizes.history_rows, now=now)
        fill_s = time.perf_counter() - started
        plan = explain_newest_valid(conn)
        # Tokens stored within the same second tie on the newest expiry; any of them is right.
        newest_shas = {
            row[0]
            for row in execute(
                conn,
                f"SELECT token_sha256 FROM {TOKEN_TABLE} "  # noqa: S608
                f"WHERE expires = (SELECT MAX(expires) FROM {TOKEN_TABLE})",
            )
        }
    say(f"      filled in {fill_s:.1f} s; plan of the hook's query: {plan}")

    requests_before = setup.token_requests()
    raw_sql = NEWEST_VALID_SQL.format(table=TOKEN_TABLE)
    ours: list[float] = []
    raw: list[float] = []
    with ParkMobileTokenHook() as hook, contextlib.closing(setup.connect(autocommit=True)) as raw_conn:
        for _ in range(50):  # warm-up: connection opened, statement paths hot
            token = hook.get_token()
        same_token = hashlib.sha256(token.encode("utf-8")).hexdigest() in newest_shas
        questions_before = session_questions(hook.get_conn())
        for _ in range(sizes.get_token_calls):
            started_ns = time.perf_counter_ns()
            hook.get_token()
            ours.append((time.perf_counter_ns() - started_ns) / 1e6)
            started_ns = time.perf_counter_ns()
            with raw_conn.cursor() as cursor:
                cursor.execute(raw_sql, (60,))
                cursor.fetchone()
            raw.append((time.perf_counter_ns() - started_ns) / 1e6)
        # The SHOW that reads the counter counts itself, hence the one subtracted.
        queries = (session_questions(hook.get_conn()) - questions_before - 1) / sizes.get_token_calls
    refreshes = setup.token_requests() - requests_before

    p99 = percentile(ours, 0.99)
    section = {
        "target_p99_ms": GET_TOKEN_TARGET_P99_MS,
        "target_queries_per_call": GET_TOKEN_TARGET_QUERIES,
        "token_rows": sizes.token_rows,
        "history_rows": history_rows,
        "fill_s": fill_s,
        "calls": sizes.get_token_calls,
        "median_ms": median(ours),
        "p99_ms": p99,
        "max_ms": max(ours),
        "raw_query_median_ms": median(raw),
        "raw_query_p99_ms": percentile(raw, 0.99),
        "share_over_target": sum(ms >= GET_TOKEN_TARGET_P99_MS for ms in ours) / len(ours),
        "raw_query_share_over_target": sum(ms >= GET_TOKEN_TARGET_P99_MS for ms in raw) / len(raw),
        "queries_per_call": queries,
        "refreshes_during_benchmark": refreshes,
        "returned_newest_valid_token": same_token,
        "plan": plan,
        "passed_p99": p99 < GET_TOKEN_TARGET_P99_MS,
        # When the bare query misses the target too, the machine, not the hook, sets the p99.
        "raw_query_misses_target_too": percentile(raw, 0.99) >= GET_TOKEN_TARGET_P99_MS,
        "passed_queries": queries == GET_TOKEN_TARGET_QUERIES,
    }
    report.sections["get_token"] = section
    say(
        f"      median {section['median_ms']:.3f} ms, p99 {p99:.3f} ms, max {section['max_ms']:.2f} ms; "
        f"raw query median {section['raw_query_median_ms']:.3f} ms, "
        f"p99 {section['raw_query_p99_ms']:.3f} ms; "
        f"{queries:.2f} queries per call; refreshes {refreshes}; newest valid token returned: {same_token}"
    )
    report.add(
        "3",
        f"get_token() p99 over {sizes.token_rows:,} rows",
        f"{p99:.3f} ms (median {section['median_ms']:.3f}; raw query p99 {section['raw_query_p99_ms']:.3f})",
        f"< {GET_TOKEN_TARGET_P99_MS} ms",
        section["passed_p99"],
    )
    report.add(
        "3b",
        "queries per get_token() (session Questions counter)",
        f"{queries:.2f}",
        str(GET_TOKEN_TARGET_QUERIES),
        section["passed_queries"],
    )


# -- 4. cleanup of a large backlog --------------------------------------------------------------------


def has_sequence_engine(conn: Any) -> bool:
    try:
        execute(conn, "SELECT seq FROM seq_1_to_1")
    except Exception:  # MySQL, or MariaDB without the SEQUENCE engine: fall back to executemany
        return False
    return True


def fill_expired_rows(conn: Any, rows: int, *, chunk: int = 100_000) -> str:
    """Insert ``rows`` expired tokens, created long ago; return how."""
    prefix = f"bench-expired-{secrets.token_hex(4)}"
    if has_sequence_engine(conn):
        token = f"CONCAT('{prefix}-', seq)"
        for start in range(1, rows + 1, chunk):
            end = min(start + chunk - 1, rows)
            execute(
                conn,
                f"INSERT INTO {TOKEN_TABLE} (token, token_sha256, token_type, expires, created_at) "  # noqa: S608
                f"SELECT {token}, SHA2({token}, 256), 'Bearer', "
                "UTC_TIMESTAMP() - INTERVAL (120 + seq MOD 86400) SECOND, "
                f"UTC_TIMESTAMP() - INTERVAL (3720 + seq MOD 86400) SECOND FROM seq_{start}_to_{end}",
            )
        return "INSERT ... SELECT from the SEQUENCE engine"
    statement = (
        f"INSERT INTO {TOKEN_TABLE} (token, token_sha256, token_type, expires, created_at) "  # noqa: S608
        "VALUES (%s, %s, 'Bearer', UTC_TIMESTAMP() - INTERVAL %s SECOND, "
        "UTC_TIMESTAMP() - INTERVAL %s SECOND)"
    )
    for start in range(0, rows, 10_000):
        values = []
        for number in range(start, min(start + 10_000, rows)):
            token, sha256 = made_up_token(prefix, number)
            values.append((token, sha256, 120 + number % 86400, 3720 + number % 86400))
        with conn.cursor() as cursor:
            cursor.executemany(statement, values)
        conn.commit()
    return "multi-row executemany"


class TokenReader(threading.Thread):
    """Calls ``get_token()`` in a loop on its own hook and connection, recording each call's latency."""

    def __init__(self, pause_s: float = 0.001) -> None:
        super().__init__(name="benchmark-token-reader", daemon=True)
        self.pause_s = pause_s
        self.samples: list[tuple[float, float]] = []  # (started, milliseconds)
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        from parkmobile_token.token_hook import ParkMobileTokenHook

        try:
            with ParkMobileTokenHook() as hook:
                while not self._stop_event.is_set():
                    started = time.perf_counter()
                    hook.get_token()
                    self.samples.append((started, (time.perf_counter() - started) * 1000))
                    self._stop_event.wait(self.pause_s)
        except BaseException as err:  # handed to the main thread, which fails the benchmark
            self.error = err

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"the concurrent get_token() loop failed: {type(self.error).__name__}") from (
                self.error
            )

    def during(self, start: float, end: float) -> list[float]:
        return [ms for started, ms in self.samples if start <= started <= end]


def insert_valid_tokens(conn: Any, count: int) -> None:
    """Insert ``count`` made-up tokens valid for another one to two hours, so the reader never refreshes."""
    prefix = f"bench-valid-{secrets.token_hex(4)}"
    values = []
    for number in range(count):
        token, sha256 = made_up_token(prefix, number)
        values.append((token, sha256, 3600 + 360 * number))
    with conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {TOKEN_TABLE} (token, token_sha256, token_type, expires, created_at) "  # noqa: S608
            "VALUES (%s, %s, 'Bearer', UTC_TIMESTAMP() + INTERVAL %s SECOND, UTC_TIMESTAMP())",
            values,
        )
    conn.commit()


def prepare_backlog(setup: Setup, rows: int) -> tuple[float, str, int]:
    """Empty the token table, add a few valid tokens and ``rows`` expired ones; return fill time and how."""
    with contextlib.closing(setup.connect()) as conn:
        execute(conn, f"TRUNCATE TABLE {TOKEN_TABLE}")
        insert_valid_tokens(conn, 10)
        started = time.perf_counter()
        how = fill_expired_rows(conn, rows)
        fill_s = time.perf_counter() - started
        expiring = execute(
            conn,
            f"SELECT COUNT(*) FROM {TOKEN_TABLE} WHERE expires <= UTC_TIMESTAMP()",  # noqa: S608
        )[0][0]
    return fill_s, how, int(expiring)


def bench_cleanup(setup: Setup, sizes: Sizes, report: Report) -> None:
    from parkmobile_token.store import TokenStore

    say(f"[4/4] delete_expiring() over {sizes.cleanup_rows:,} expired rows, get_token() looping meanwhile")
    fill_s, how, expiring = prepare_backlog(setup, sizes.cleanup_rows)
    say(f"      filled {expiring:,} expired rows in {fill_s:.1f} s ({how})")

    store = TokenStore()
    reader = TokenReader()
    baseline_s = 0.5 if sizes.cleanup_rows < 100_000 else 2.0
    with contextlib.closing(setup.connect()) as watcher:
        reader.start()
        baseline_start = time.perf_counter()
        time.sleep(baseline_s)  # the reader alone first: its latency without a cleanup beside it
        deletes_before = global_status(watcher, "Com_delete")
        lock_waits_before = global_status(watcher, "Innodb_row_lock_waits")
        started = time.perf_counter()
        deleted = store.delete_expiring()
        ended = time.perf_counter()
        time.sleep(0.1)
        reader.stop()
        delete_statements = global_status(watcher, "Com_delete") - deletes_before
        lock_waits = global_status(watcher, "Innodb_row_lock_waits") - lock_waits_before
        left = execute(watcher, f"SELECT COUNT(*) FROM {TOKEN_TABLE}")[0][0]  # noqa: S608
    during = reader.during(started, ended)
    baseline = reader.during(baseline_start, started)
    if not during:
        raise RuntimeError("the concurrent get_token() loop made no call during the cleanup")
    cleanup_s = ended - started
    max_ms = max(during)
    section: dict[str, Any] = {
        "target_max_get_token_ms": CLEANUP_TARGET_MAX_MS,
        "rows": sizes.cleanup_rows,
        "fill_s": fill_s,
        "fill_method": how,
        "cleanup_s": cleanup_s,
        "rows_per_s": deleted / cleanup_s if cleanup_s else None,
        "reported_deleted": deleted,
        "expected_deleted": expiring,
        "rows_left": int(left),
        "batch_size": store.delete_batch_size,
        "delete_statements_server_wide": delete_statements,
        "row_lock_waits_server_wide": lock_waits,
        "get_token_before_cleanup_calls": len(baseline),
        "get_token_before_cleanup_p99_ms": percentile(baseline, 0.99) if baseline else None,
        "get_token_before_cleanup_max_ms": max(baseline) if baseline else None,
        "get_token_calls_during": len(during),
        "get_token_median_ms": median(during),
        "get_token_p99_ms": percentile(during, 0.99),
        "get_token_max_ms": max_ms,
        "get_token_over_100ms": sum(ms > CLEANUP_TARGET_MAX_MS for ms in during),
        "passed_max": max_ms < CLEANUP_TARGET_MAX_MS,
        "passed_count": deleted == expiring,
    }
    report.sections["cleanup"] = section
    say(
        f"      deleted {deleted:,} (expected {expiring:,}) in {cleanup_s:.1f} s, "
        f"{delete_statements:,} DELETE statements server-wide (batch {store.delete_batch_size}); "
        f"{len(during):,} get_token() calls meanwhile: median {section['get_token_median_ms']:.2f} ms, "
        f"p99 {section['get_token_p99_ms']:.2f} ms, max {max_ms:.1f} ms"
    )
    if baseline:
        say(
            f"      before the cleanup, {len(baseline):,} calls: p99 "
            f"{section['get_token_before_cleanup_p99_ms']:.2f} ms, max "
            f"{section['get_token_before_cleanup_max_ms']:.1f} ms; InnoDB row lock waits during the "
            f"cleanup, server-wide: {lock_waits}"
        )
    report.add(
        "4",
        f"cleanup of {sizes.cleanup_rows:,} expired rows",
        f"{cleanup_s:.1f} s ({section['rows_per_s']:,.0f} rows/s)",
        "-",
        None,
    )
    report.add(
        "4b",
        "max get_token() latency during the cleanup",
        f"{max_ms:.1f} ms (p99 {section['get_token_p99_ms']:.2f} ms)",
        f"< {CLEANUP_TARGET_MAX_MS:.0f} ms",
        max_ms < CLEANUP_TARGET_MAX_MS,
    )
    report.add(
        "4c",
        "delete_expiring() reports the rows it deleted",
        f"{deleted:,} of {expiring:,}",
        "equal",
        deleted == expiring,
    )


# -- the run --------------------------------------------------------------------------------------------


def print_table(report: Report) -> None:
    headers = ("#", "measure", "value", "target", "result")
    cells = [headers] + [(r.number, r.measure, r.value, r.target, r.result) for r in report.rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    say("")
    for position, row in enumerate(cells):
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if position == 0:
            say("  ".join("-" * width for width in widths))


def database_benchmarks(mysql: MySQLTarget, sizes: Sizes, report: Report) -> None:
    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))
    from parkmobile_token.standin import StandInServer

    client_id = f"bench-{secrets.token_hex(4)}"
    client_secret = secrets.token_urlsafe(24)
    with scratch_database(mysql) as database, StandInServer(client_id, client_secret) as standin:
        setup = Setup(mysql, database, standin, client_id, client_secret)
        point_connections_at(setup)
        say(f"      scratch database {database}; stand-in at {standin.base_url}")
        bench_refresh(setup, sizes, report)
        bench_get_token(setup, sizes, report)
        bench_cleanup(setup, sizes, report)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmark the ParkMobile token package against its floors; prints a table.",
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with small sizes")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--mysql-host", default="127.0.0.1", help="MySQL/MariaDB host (default 127.0.0.1)")
    parser.add_argument("--mysql-port", type=int, default=3306, help="MySQL/MariaDB port (default 3306)")
    parser.add_argument(
        "--mysql-user",
        default="root",
        help="MySQL user (default root); the password, if any, comes from PARKMOBILE_MYSQL_PASSWORD",
    )
    parser.add_argument("--parse-repeats", type=int, help="timed runs of each DAG file (default 15, quick 5)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.for_mode(quick=args.quick)
    if args.parse_repeats:
        sizes = dataclasses.replace(sizes, parse_repeats=max(1, args.parse_repeats))
    mysql = MySQLTarget(
        args.mysql_host, args.mysql_port, args.mysql_user, os.environ.get("PARKMOBILE_MYSQL_PASSWORD", "")
    )
    report = Report()
    started = time.perf_counter()
    load_before = load_summary()
    say(
        f"ParkMobile token benchmarks ({'quick' if args.quick else 'full'} mode); {os.cpu_count()} CPUs, "
        f"load average {load_before}"
    )
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as workdir:
        env = isolated_environment(Path(workdir) / "airflow-home")
        for key in [key for key in os.environ if key.startswith("AIRFLOW")]:
            del os.environ[key]
        os.environ.update(env)
        try:
            bench_parse(sizes, env, Path(workdir), report)
            database_benchmarks(mysql, sizes, report)
        except Exception:
            traceback.print_exc()
            say("benchmark failed; see the error above")
            return 1
    report.sections["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_summary(),
        "python": sys.version.split()[0],
        "quick": args.quick,
        "total_s": time.perf_counter() - started,
    }
    print_table(report)
    say(
        f"\nload average before {load_before}, after {load_summary()}; "
        f"{time.perf_counter() - started:.0f} s in all. The machine may be shared: "
        "read the ratios, not the absolute times."
    )
    if args.json:
        payload = {**report.sections, "table": [row.__dict__ for row in report.rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        say(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
