"""
The example DAG ``example_parkmobile_api_call``, run for real with ``airflow dags test``.

Its task takes a token from ``ParkMobileTokenHook`` and calls the stand-in's protected ``GET /v1/ping``
with it; the token must not reach the command output, XCom or rendered fields.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from parkmobile_token.hooks import ParkMobileAuthHook
from tests.conftest import CLIENT_SECRET, REPO, auth_connection_json

if TYPE_CHECKING:
    from tests.conftest import AirflowResult, AirflowRunner, TokenDatabase

pytestmark = pytest.mark.airflow

DAG_ID = "example_parkmobile_api_call"
DAG_FILE = REPO / "dags" / "example_parkmobile_api_call.py"
TASK_ID = "ping_parkmobile_api"


def api_connection_json(standin: Any) -> str:
    """The ``parkmobile_api`` connection for the stand-in: no login, its test CA trusted."""
    return json.dumps(
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": standin.port,
            "schema": "https",
            "extra": {"verify": standin.ca_path},
        }
    )


def run_dag(airflow: AirflowRunner, standin: Any, log_level: str = "INFO") -> AirflowResult:
    env = {
        "AIRFLOW_CONN_PARKMOBILE_API": api_connection_json(standin),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": log_level,
    }
    return airflow.run("dags", "test", DAG_ID, env=env)


def pings(standin: Any) -> list[Any]:
    return [request for request in standin.requests if request.path == "/v1/ping"]


def metadata_of_latest_run(airflow: AirflowRunner) -> tuple[dict[str, Any], list[str]]:
    """The XCom values and rendered fields of this DAG's latest run, as Airflow stored them."""
    with sqlite3.connect(airflow.home / "airflow.db") as db:
        [run_id] = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        xcoms = db.execute(
            "SELECT key, value FROM xcom WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
        ).fetchall()
        rendered = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ? AND run_id = ?",
            (DAG_ID, run_id),
        ).fetchall()
    values = {key: json.loads(value) if isinstance(value, str) else value for key, value in xcoms}
    return values, [str(fields) for (fields,) in rendered]


def assert_token_nowhere(result: AirflowResult, airflow: AirflowRunner, token: str) -> None:
    xcoms, rendered = metadata_of_latest_run(airflow)
    # The dict return type makes TaskFlow push each key too: status_code beside return_value.
    assert xcoms == {"return_value": {"status_code": 200}, "status_code": 200}
    for text in (result.output, json.dumps(xcoms), *rendered):
        assert token not in text
        assert CLIENT_SECRET not in text


def test_dag_file_defines_the_dag_and_touches_nothing_at_import(tmp_path: Any) -> None:
    # A fresh interpreter, with connections that point nowhere: importing must neither connect nor
    # import the hooks, which the task imports when it runs.
    probe = textwrap.dedent(
        f"""
        import json, sys
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder={str(DAG_FILE)!r}, safe_mode=False)
        dag = bag.dags[{DAG_ID!r}]
        prefixes = ("parkmobile_token", "MySQLdb", "airflow.providers.http.hooks",
                    "airflow.providers.mysql.hooks")
        facts = {{
            "errors": list(bag.import_errors),
            "schedule": dag.schedule,
            "tags": sorted(dag.tags),
            "doc": bool(dag.doc_md),
            "tasks": [task.task_id for task in dag.tasks],
            "loaded": [name for name in sys.modules if name.startswith(prefixes)],
        }}
        print(json.dumps(facts))
        """
    )
    env = {
        "PYTHONPATH": str(REPO / "plugins"),
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_CONN_PARKMOBILE_DB": '{"conn_type": "mysql", "host": "192.0.2.1", "schema": "x"}',
        "AIRFLOW_CONN_PARKMOBILE_AUTH": '{"conn_type": "http", "host": "192.0.2.1"}',
        "AIRFLOW_CONN_PARKMOBILE_API": '{"conn_type": "http", "host": "192.0.2.1"}',
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts == {
        "errors": [],
        "schedule": None,
        "tags": ["example", "parkmobile"],
        "doc": True,
        "tasks": [TASK_ID],
        "loaded": [],
    }


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
def test_the_task_calls_the_api_with_a_token_already_stored(
    log_level: str,
    airflow: AirflowRunner,
    standin: Any,
    empty_token_table: TokenDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_AUTH", auth_connection_json(standin))
    token = ParkMobileAuthHook().fetch_token().access_token
    empty_token_table.insert(token, expires_in_s=3000)

    result = run_dag(airflow, standin, log_level)

    assert result.task_states == {TASK_ID: "success"}, result.output[-3000:]
    assert len(standin.token_requests()) == 1, "only this test's own request: the task read the table"
    [ping] = pings(standin)
    assert (ping.status, ping.auth_method) == (200, "bearer")
    assert "GET v1/ping on connection 'parkmobile_api' answered HTTP 200" in result.output
    assert_token_nowhere(result, airflow, token)


def test_the_task_refreshes_the_token_inline_when_the_table_is_empty(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    result = run_dag(airflow, standin)

    assert result.task_states == {TASK_ID: "success"}, result.output[-3000:]
    [issued] = standin.issued_tokens
    assert len(standin.token_requests()) == 1
    assert [row["token"] for row in empty_token_table.rows()] == [issued]
    [ping] = pings(standin)
    assert (ping.status, ping.auth_method) == (200, "bearer")
    assert "Refreshed token inline on connection 'parkmobile_auth'" in result.output
    assert_token_nowhere(result, airflow, issued)


def test_a_refused_token_fails_the_task_without_showing_it(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    unknown = "not-issued-" + "x" * 24
    empty_token_table.insert(unknown, expires_in_s=3000)

    # `tasks test` runs the task once, with no retry delay to wait out.
    result = airflow.run(
        "tasks", "test", DAG_ID, TASK_ID, env={"AIRFLOW_CONN_PARKMOBILE_API": api_connection_json(standin)}
    )

    [ping] = pings(standin)
    assert ping.status == 401
    assert "GET v1/ping on connection 'parkmobile_api' answered HTTP 401" in result.output
    assert unknown not in result.output
    assert standin.token_requests() == []
