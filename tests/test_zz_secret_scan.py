"""
A last look at everything the test session's Airflow runs wrote: no token, no client secret.

It reads every file under ``test-artifacts/`` byte by byte (the output of each Airflow command, the
task logs, and the SQLite metadata database whole, with its XCom and rendered-field tables), and
searches for each token the stand-in issued and for the client secret. The file is named so that
pytest runs it after the other modules; it makes a run of its own so it never scans nothing.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import ARTIFACTS, CLIENT_SECRET, SECRETS_IN_PLAY, remember_secrets

if TYPE_CHECKING:
    from tests.conftest import AirflowRunner, TokenDatabase

pytestmark = pytest.mark.airflow

# The one line allowed to hold the client secret: Airflow's own, printed by `airflow dags test` at
# DEBUG (see test_secrets.py and the README's security section). It never holds a token.
MASKER_LINE = b"msg=MaskSecret(value="


def test_nothing_written_during_the_tests_holds_a_token_or_the_client_secret(
    airflow: AirflowRunner, standin: Any, empty_token_table: TokenDatabase
) -> None:
    result = airflow.dags_test()
    assert result.task_states["delete_expiring_tokens"] == "success", result.output[-3000:]
    remember_secrets(standin)
    [token] = standin.issued_tokens
    metadata_db = airflow.home / "airflow.db"

    with sqlite3.connect(metadata_db) as db:
        xcoms = db.execute("SELECT task_id, value FROM xcom").fetchall()
        rendered = db.execute("SELECT task_id, rendered_fields FROM rendered_task_instance_fields").fetchall()
    fetched = [json.loads(value) for task_id, value in xcoms if task_id == "fetch_token"]
    assert fetched, "no XCom of fetch_token to scan"
    assert all(value["sealed_token"].startswith("gAAAA") for value in fetched), "the token is not sealed"
    assert rendered, "no rendered fields to scan"

    files = [path for path in ARTIFACTS.rglob("*") if path.is_file()]
    assert metadata_db in files
    assert len(files) >= 3
    contents = {path: path.read_bytes() for path in files}
    fingerprint = empty_token_table.rows()[-1]["token_sha256"][:12].encode()
    assert any(fingerprint in data for data in contents.values()), "the scan does not see the run's logs"

    secrets = sorted(SECRETS_IN_PLAY | {CLIENT_SECRET, token})
    found = []
    for path, data in contents.items():
        for secret in secrets:
            needle = secret.encode()
            if needle not in data:
                continue
            lines = [line for line in data.split(b"\n") if needle in line]
            only_masker_lines = all(MASKER_LINE in line for line in lines)
            if secret == CLIENT_SECRET and path.suffix == ".log" and only_masker_lines:
                continue
            kind = "the client secret" if secret == CLIENT_SECRET else "a token"
            found.append(f"{path.relative_to(ARTIFACTS)} holds {kind}")
    assert found == []
