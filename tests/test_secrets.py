"""
No token and no client secret in anything a run writes, at DEBUG level, through retries and failures.

One exception is Airflow's, not ours, and the README states it: under `airflow dags test` at DEBUG,
Airflow 3.3's in-process supervisor prints every value handed to its secrets masker, which includes
the connection password, in a ``Sending request ... msg=MaskSecret(value=...)`` line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import CLIENT_SECRET, AirflowRunner, TokenDatabase

if TYPE_CHECKING:
    from tests.faulty_tcp import FaultyForwarder

pytestmark = pytest.mark.airflow

DEBUG = {"AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"}
MASKER_LINE = "msg=MaskSecret(value="


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.mark.parametrize("auth_method", ["client_secret_post", "client_secret_basic"])
def test_debug_tasks_test_with_retries_and_a_failure_writes_no_secret(
    auth_method: str, airflow: AirflowRunner, standin: Any
) -> None:
    from tests.conftest import auth_connection_json

    env = {**DEBUG, "AIRFLOW_CONN_PARKMOBILE_AUTH": auth_connection_json(standin, auth_method=auth_method)}
    standin.script([{"status": 503, "text": "busy"}, {"drop": True}, {"issue": True}])
    succeeded = airflow.tasks_test("fetch_token", env=env)
    standin.script([{"status": 401, "json": {"error": "invalid_client", "error_description": CLIENT_SECRET}}])
    failed = airflow.tasks_test("fetch_token", env=env)

    output = succeeded.output + failed.output
    assert "[debug" in output, "the run did not log at DEBUG"
    assert lines_with(output, '"POST /connect/token HTTP/1.1" 503'), "urllib3's debug lines are missing"
    assert "OAuth error 'invalid_client'" in failed.output
    for secret in [CLIENT_SECRET, *standin.issued_tokens]:
        assert lines_with(output, secret) == []


def test_debug_dags_test_with_retries_shows_no_token_and_the_secret_only_in_airflows_masker_line(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase, forwarder: FaultyForwarder
) -> None:
    forwarder.refuse_first = 2  # the history write, then the store
    standin.script([{"status": 503}, {"issue": True}])
    env = {**DEBUG, "AIRFLOW_CONN_PARKMOBILE_DB": empty_token_table.connection_json(port=forwarder.port)}

    result = airflow.dags_test(env=env)

    assert result.task_states["delete_expiring_tokens"] == "success", result.output[-3000:]
    assert result.try_numbers["store_token"] == 2
    [token] = standin.issued_tokens
    assert lines_with(result.output, token) == []
    leaking = [line for line in lines_with(result.output, CLIENT_SECRET) if MASKER_LINE not in line]
    assert leaking == []
