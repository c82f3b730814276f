"""The DAG file: it imports cleanly, is shaped as documented, and does nothing at import time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO

if TYPE_CHECKING:
    from airflow.sdk import DAG

DAG_FILE = REPO / "dags" / "update_parkmobile_token.py"


@pytest.fixture(scope="module")
def dag() -> DAG:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE.parent), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags["update_parkmobile_token"]


def test_dag_runs_every_30_minutes_one_run_at_a_time_without_catchup(dag: DAG) -> None:
    assert dag.schedule == "*/30 * * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.dagrun_timeout is not None
    assert dag.dagrun_timeout < timedelta(minutes=30), "a run must end before the next one is due"


def test_dag_is_tagged_and_documented(dag: DAG) -> None:
    assert {"parkmobile", "oauth2"} <= set(dag.tags)
    assert dag.doc_md is not None
    for term in ("parkmobile_auth", "parkmobile_db", "client_secret_basic", "Fernet", "init-db"):
        assert term in dag.doc_md


def test_tasks_run_fetch_then_store_then_cleanup(dag: DAG) -> None:
    assert [task.task_id for task in dag.topological_sort()] == [
        "fetch_token",
        "store_token",
        "delete_expiring_tokens",
    ]
    assert dag.get_task("store_token").upstream_task_ids == {"fetch_token"}
    assert dag.get_task("delete_expiring_tokens").upstream_task_ids == {"store_token"}
    # The cleanup needs every upstream task to have succeeded: a failed refresh deletes nothing.
    assert {task.trigger_rule for task in dag.tasks} == {"all_success"}


def test_tasks_retry_with_exponential_backoff(dag: DAG) -> None:
    for task in dag.tasks:
        assert task.retries >= 1
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay is not None
        assert task.execution_timeout is not None


def test_fetch_task_templates_no_secret_field(dag: DAG) -> None:
    fetch = dag.get_task("fetch_token")
    assert set(fetch.template_fields) == {"http_conn_id", "endpoint", "scope"}
    assert fetch.http_conn_id == "parkmobile_auth"
    assert fetch.endpoint == "connect/token"


def test_dag_file_touches_no_connection_database_or_provider_at_import(
    tmp_path: pytest.TempPathFactory,
) -> None:
    probe = textwrap.dedent(
        f"""
        import socket, sys
        def refuse(*args, **kwargs):
            raise AssertionError("the DAG file opened a network connection at import time")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        sys.path.insert(0, {str(REPO / "plugins")!r})
        import importlib.util
        spec = importlib.util.spec_from_file_location("dag_under_test", {str(DAG_FILE)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        heavy = ("airflow.providers.http.hooks.http", "airflow.providers.mysql.hooks.mysql", "MySQLdb")
        loaded = [name for name in heavy if name in sys.modules]
        assert not loaded, loaded
        print("tasks", len(module.dag.tasks))
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path),
        # A metadata database that does not exist: any access at import time fails the probe.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing/dir/airflow.db",
    }

    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "tasks 3" in result.stdout
