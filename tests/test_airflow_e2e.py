"""The DAG end to end through real Airflow commands, the HTTPS stand-in and MariaDB."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AirflowRunner, TokenDatabase, auth_connection_json

pytestmark = pytest.mark.airflow

# Cases from field reports of token endpoints: a copy of shared/cases/token_endpoint.json.
CASES = json.loads((Path(__file__).resolve().parent / "data" / "token_endpoint.json").read_text())
ALL_DONE = {"fetch_token": "success", "store_token": "success", "delete_expiring_tokens": "success"}


def _utc(naive: datetime) -> datetime:
    return naive.replace(tzinfo=UTC)


def _task_state(output: str) -> str:
    states = re.findall(r"new_state=(\w+)", output)
    assert states, "the Airflow command reported no task state"
    return states[-1]


def _assert_expiry(row: dict[str, Any], requested_at: datetime, lifetime_s: int) -> None:
    expected = requested_at + timedelta(seconds=lifetime_s)
    assert abs((_utc(row["expires"]) - expected).total_seconds()) <= 2, (row["expires"], expected)


def test_dags_test_stores_one_token_and_deletes_only_expiring_rows(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    db = empty_token_table
    db.insert("old-expiring-within-window", expires_in_s=30)
    db.insert("old-already-expired", expires_in_s=-600)
    db.insert("old-still-valid", expires_in_s=1800)

    result = airflow.dags_test()

    assert result.task_states == ALL_DONE, result.output[-3000:]
    [request] = standin.token_requests()
    assert request.auth_method == "client_secret_post"
    [issued] = standin.issued_tokens
    rows = {row["token"]: row for row in db.rows()}
    assert set(rows) == {issued, "old-still-valid"}
    _assert_expiry(rows[issued], request.received_at, 3600)
    assert "Deleted 2 token(s)" in result.output


def test_dags_test_with_client_secret_basic(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    env = {"AIRFLOW_CONN_PARKMOBILE_AUTH": auth_connection_json(standin, auth_method="client_secret_basic")}

    result = airflow.dags_test(env=env)

    assert result.task_states == ALL_DONE, result.output[-3000:]
    assert [r.auth_method for r in standin.token_requests()] == ["client_secret_basic"]
    assert [row["token"] for row in empty_token_table.rows()] == standin.issued_tokens


def test_tasks_test_fetch_token_alone_checks_the_credentials(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    result = airflow.tasks_test("fetch_token")

    assert _task_state(result.output) == "success", result.output[-3000:]
    assert "Fetched token on connection 'parkmobile_auth': fingerprint" in result.output
    assert len(standin.token_requests()) == 1
    assert empty_token_table.rows() == []


def test_tasks_test_fetch_token_with_a_wrong_secret_fails_naming_the_error(
    airflow: AirflowRunner, standin: Any
) -> None:
    conn = json.loads(auth_connection_json(standin))
    conn["password"] = "not-the-secret"

    result = airflow.tasks_test("fetch_token", env={"AIRFLOW_CONN_PARKMOBILE_AUTH": json.dumps(conn)})

    assert _task_state(result.output) == "failed"
    assert "HTTP 401, OAuth error 'invalid_client'" in result.output
    assert "on connection 'parkmobile_auth'" in result.output


def test_tasks_test_store_token_alone_fails_and_says_how_to_run_the_dag(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    result = airflow.tasks_test("store_token")

    assert _task_state(result.output) == "failed"
    assert "No token was fetched by task 'fetch_token' in this DAG run" in result.output
    assert "airflow dags test update_parkmobile_token" in result.output
    assert standin.token_requests() == []
    assert empty_token_table.rows() == []


def test_tasks_test_delete_expiring_tokens_alone_runs_the_cleanup(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    db = empty_token_table
    db.insert("expiring-soon", expires_in_s=59)
    db.insert("valid-for-long", expires_in_s=600)

    result = airflow.tasks_test("delete_expiring_tokens")

    assert _task_state(result.output) == "success", result.output[-3000:]
    assert [row["token"] for row in db.rows()] == ["valid-for-long"]
    assert standin.token_requests() == []


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_token_endpoint_case(
    case: dict[str, Any], airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    db = empty_token_table
    db.insert("valid-before-the-run", expires_in_s=1800)
    standin.script(case["responses"])
    expect = case["expect"]

    result = airflow.dags_test()

    tokens = [row["token"] for row in db.rows()]
    assert "valid-before-the-run" in tokens, "a token that was still valid was lost"
    assert len(standin.token_requests()) == len(case["responses"])
    if expect["outcome"] == "stored":
        assert result.task_states == ALL_DONE, result.output[-3000:]
        issued = case["responses"][-1]["json"]["access_token"]
        assert tokens == ["valid-before-the-run", issued]
        [row] = [row for row in db.rows() if row["token"] == issued]
        _assert_expiry(row, standin.token_requests()[-1].received_at, expect["lifetime_s"])
        return

    assert result.task_states["fetch_token"] == "failed", result.output[-3000:]
    assert result.task_states["store_token"] == "upstream_failed"
    assert result.task_states["delete_expiring_tokens"] == "upstream_failed"
    assert tokens == ["valid-before-the-run"]
    if expect["outcome"] == "fails_no_retry":
        assert result.try_numbers["fetch_token"] == 1, "a permanent error was retried by Airflow"
        assert expect["says"].lower() in result.output.lower()
