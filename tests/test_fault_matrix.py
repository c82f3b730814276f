"""
Faults of the token endpoint and the database, driven through the real DAG with `airflow dags test`.

Each case asserts the outcome, the rows in MySQL before and after, and the requests the stand-in got.
The endpoint faults one request at a time are covered through the hook in ``test_fetch_faults.py``;
here they meet Airflow's own retries and the database.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import AIRFLOW_BIN, ARTIFACTS, AirflowRunner, TokenDatabase, _airflow_base_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.faulty_tcp import FaultyForwarder

pytestmark = pytest.mark.airflow

ALL_DONE = {"fetch_token": "success", "store_token": "success", "delete_expiring_tokens": "success"}
PRE_EXISTING = "valid-before-the-run"


def db_through(forwarder: FaultyForwarder, db: TokenDatabase, **extra: Any) -> dict[str, str]:
    overrides: dict[str, Any] = {"host": "127.0.0.1", "port": forwarder.port}
    if extra:
        overrides["extra"] = extra
    return {"AIRFLOW_CONN_PARKMOBILE_DB": db.connection_json(**overrides)}


def tokens(db: TokenDatabase) -> list[str]:
    return [row["token"] for row in db.rows()]


def test_transient_fault_outlasting_the_in_task_retries_is_retried_by_airflow(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    db = empty_token_table
    db.insert(PRE_EXISTING, expires_in_s=1800)
    standin.script([{"status": 503}] * 4)  # the test policy makes four attempts per task try

    result = airflow.dags_test()

    assert result.task_states == ALL_DONE, result.output[-3000:]
    assert result.try_numbers["fetch_token"] == 2
    assert [r.status for r in standin.token_requests()] == [503, 503, 503, 503, 200]
    assert tokens(db) == [PRE_EXISTING, standin.issued_tokens[-1]]


def test_permanent_fault_fails_without_any_retry(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    db = empty_token_table
    db.insert(PRE_EXISTING, expires_in_s=1800)
    standin.script([{"status": 400, "json": {"error": "unauthorized_client"}}])

    result = airflow.dags_test()

    assert result.task_states["fetch_token"] == "failed"
    assert result.try_numbers["fetch_token"] == 1
    assert result.task_states["delete_expiring_tokens"] == "upstream_failed"
    assert len(standin.token_requests()) == 1
    assert "OAuth error 'unauthorized_client'" in result.output
    assert tokens(db) == [PRE_EXISTING]


def test_mysql_unreachable_at_store_time_is_retried_and_then_stores(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase, forwarder: FaultyForwarder
) -> None:
    db = empty_token_table
    db.insert(PRE_EXISTING, expires_in_s=1800)
    forwarder.refuse_first = 2  # the history write, then the store

    result = airflow.dags_test(env=db_through(forwarder, db))

    assert result.task_states == ALL_DONE, result.output[-3000:]
    assert result.try_numbers["store_token"] == 2
    assert len(standin.token_requests()) == 1
    assert tokens(db) == [PRE_EXISTING, standin.issued_tokens[0]]


def test_token_that_expired_while_mysql_was_down_fails_clearly_and_deletes_nothing(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase, forwarder: FaultyForwarder
) -> None:
    db = empty_token_table
    db.insert(PRE_EXISTING, expires_in_s=1800)
    db.insert("expiring-but-kept-because-the-store-failed", expires_in_s=20)
    standin.script([{"issue": True, "json": {"expires_in": 61}}])
    forwarder.refuse_first = 2  # the history write, then the store

    result = airflow.dags_test(env=db_through(forwarder, db))

    assert result.task_states["store_token"] == "failed", result.output[-3000:]
    assert result.task_states["delete_expiring_tokens"] == "upstream_failed"
    assert "within the 60 s cleanup window; it is not stored" in result.output
    assert tokens(db) == [PRE_EXISTING, "expiring-but-kept-because-the-store-failed"]


@pytest.mark.parametrize("cut_when", ["before", "after"], ids=["lost-before-commit", "lost-after-commit"])
def test_connection_lost_during_the_store_leaves_exactly_one_row(
    cut_when: str,
    airflow: AirflowRunner,
    standin: Any,
    empty_token_table: TokenDatabase,
    forwarder: FaultyForwarder,
) -> None:
    db = empty_token_table
    db.insert(PRE_EXISTING, expires_in_s=1800)
    forwarder.cut_on = b"COMMIT"
    forwarder.cut_when = cut_when  # type: ignore[assignment]

    result = airflow.dags_test(env=db_through(forwarder, db))

    assert forwarder.cuts == 1
    assert result.task_states == ALL_DONE, result.output[-3000:]
    assert result.try_numbers["store_token"] == 2
    assert tokens(db) == [PRE_EXISTING, standin.issued_tokens[0]]
    if cut_when == "after":
        assert "is already stored" in result.output


@pytest.fixture
def indian_server_time_zone(empty_token_table: TokenDatabase) -> Iterator[None]:
    """Make +05:30 the time zone of every new MySQL session, as a server set up in India would."""
    server = empty_token_table.server
    conn = server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT @@GLOBAL.time_zone")
        [(original,)] = cursor.fetchall()
        cursor.execute("SET GLOBAL time_zone = '+05:30'")
        probe = server.connect()
        probe_cursor = probe.cursor()
        probe_cursor.execute("SELECT @@SESSION.time_zone")
        assert probe_cursor.fetchall() == (("+05:30",),)
        probe.close()
        yield
    finally:
        conn.cursor().execute("SET GLOBAL time_zone = %s", (original,))
        conn.close()


@pytest.mark.usefixtures("indian_server_time_zone")
def test_utc_holds_with_an_indian_session_time_zone_and_airflow_default_timezone(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    db = empty_token_table
    for name, expires_in_s in [
        ("past", -10),
        ("in-30s", 30),
        ("in-59s", 59),
        ("in-2m", 120),
        ("in-1h", 3600),
    ]:
        db.insert(name, expires_in_s=expires_in_s)
    env = {
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Kolkata",
        "TZ": "Asia/Kolkata",
    }

    result = airflow.dags_test(env=env)

    assert result.task_states == ALL_DONE, result.output[-3000:]
    [issued] = standin.issued_tokens
    assert tokens(db) == ["in-2m", "in-1h", issued]
    [row] = [row for row in db.rows() if row["token"] == issued]
    expected = standin.token_requests()[0].received_at + timedelta(seconds=3600)
    assert abs((row["expires"].replace(tzinfo=UTC) - expected).total_seconds()) <= 2


def test_two_deployments_refreshing_at_once_both_store_and_delete_neither(
    airflow: AirflowRunner,
    standin: Any,
    empty_token_table: TokenDatabase,
    fernet_key: str,
    tmp_path: Path,
) -> None:
    db = empty_token_table
    db.insert(PRE_EXISTING, expires_in_s=1800)
    second_home = ARTIFACTS / "airflow-home-second"
    second_home.mkdir(parents=True, exist_ok=True)
    second_env = {**_airflow_base_env(second_home, fernet_key)}
    subprocess.run(
        [str(AIRFLOW_BIN), "db", "migrate"], env=second_env, check=True, capture_output=True, timeout=300
    )
    second = AirflowRunner(second_home, fernet_key, standin, db)

    with (tmp_path / "second.log").open("w") as sink:
        background = subprocess.Popen(
            [str(AIRFLOW_BIN), "dags", "test", "update_parkmobile_token"],
            env=second.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        first = airflow.dags_test()
        background.wait(timeout=300)
    (ARTIFACTS / "airflow-runs" / "second-deployment.log").write_text((tmp_path / "second.log").read_text())

    states, _ = second.latest_run_states("update_parkmobile_token")
    assert first.task_states == ALL_DONE, first.output[-3000:]
    assert states == ALL_DONE
    assert len(standin.issued_tokens) == 2
    assert sorted(tokens(db)) == sorted([PRE_EXISTING, *standin.issued_tokens])
