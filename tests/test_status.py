"""``python -m parkmobile_token`` status, show and init-db against the real MariaDB."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from parkmobile_token.__main__ import main
from parkmobile_token.history import FAILED, FETCHED, STORED
from tests.conftest import HISTORY_TABLE, REPO, insert_history

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.conftest import TokenDatabase

TOKEN = "pmTOKEN-status-SEKRIT-7f3a"
MARGIN = 60


def naive_ago(**delta: float) -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(**delta)


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, empty_history_table: TokenDatabase) -> TokenDatabase:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", empty_history_table.connection_json())
    for name in ("TABLE", "HISTORY_TABLE"):
        monkeypatch.delenv(f"AIRFLOW__PARKMOBILE_TOKEN__{name}", raising=False)
    return empty_history_table


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def a_day_of_history(db: TokenDatabase) -> None:
    """
    Four attempts in the last 24 hours, and one before, with a 30-minute gap in the coverage.

    Token A was stored 30 h ago and expires 12 h ago; token B was stored 11.5 h ago and lives on. Less
    the 60 s margin, nothing was covered from 12 h + 60 s ago until 11.5 h ago.
    """
    insert_history(
        db,
        attempted_at=naive_ago(hours=30),
        outcome=STORED,
        latency_ms=9999,
        lifetime_s=18 * 3600,
        expires=naive_ago(hours=12),
        stored_at=naive_ago(hours=30),
        fingerprint="aaaaaaaaaaaa",
    )
    insert_history(
        db,
        attempted_at=naive_ago(hours=20),
        outcome=FAILED,
        latency_ms=200,
        http_status=503,
        error_class="http_503",
    )
    insert_history(
        db,
        attempted_at=naive_ago(hours=11.5),
        outcome=STORED,
        latency_ms=100,
        lifetime_s=86400,
        expires=naive_ago(hours=-12.5),
        stored_at=naive_ago(hours=11.5),
        fingerprint="bbbbbbbbbbbb",
        run_id="scheduled__b",
        try_number=1,
    )
    insert_history(
        db,
        attempted_at=naive_ago(hours=2),
        outcome=FAILED,
        latency_ms=4000,
        error_class="ConnectTimeout",
        run_id="scheduled__c",
        try_number=2,
    )
    insert_history(
        db,
        attempted_at=naive_ago(hours=1),
        outcome=FETCHED,
        latency_ms=300,
        lifetime_s=1800,
        expires=naive_ago(hours=0.5),
        fingerprint="cccccccccccc",
        short_lifetime=1,
    )


def test_status_json_reports_the_token_the_last_refreshes_and_the_day(
    db: TokenDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db.insert(TOKEN, expires_in_s=3000)
    a_day_of_history(db)

    code, out, _ = run(capsys, "status", "--json")

    assert code == 0
    assert TOKEN not in out
    report = json.loads(out)
    token = report["token"]
    assert (token["valid"], token["fingerprint"], token["table"]) == (
        True,
        fingerprint(TOKEN),
        "pm_api_tokens",
    )
    assert 2990 <= token["seconds_left"] <= 3000
    assert token["expires"].endswith("Z")
    history = report["history"]
    assert history["table"] == HISTORY_TABLE
    assert (history["attempts"], history["stored"], history["failed"], history["fetched_not_stored"]) == (
        4,
        1,
        2,
        1,
    )
    assert history["short_lifetime"] == 1
    assert history["success_rate"] == pytest.approx(0.25)
    assert history["latency_ms"] == {"p50": 200.0, "p95": 4000.0, "p99": 4000.0}
    assert history["coverage"] == pytest.approx(1 - (1800 + MARGIN) / 86400, abs=1e-4)
    assert [row["fingerprint"] for row in history["last_successes"]] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]
    assert [row["error_class"] for row in history["last_failures"]] == ["ConnectTimeout", "http_503"]
    assert history["last_failures"][1]["http_status"] == 503


def test_status_text_names_the_token_by_fingerprint_only(
    db: TokenDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db.insert(TOKEN, expires_in_s=3000)
    a_day_of_history(db)

    code, out, _ = run(capsys, "status")

    assert code == 0
    assert TOKEN not in out
    lines = out.splitlines()
    assert lines[0].startswith(
        f"Newest valid token in pm_api_tokens: fingerprint {fingerprint(TOKEN)}, expires "
    )
    assert "4 attempt(s), 1 stored, 2 failed, 1 fetched but not stored" in lines[1]
    assert "success rate 25.0 %; fetch latency p50 200 ms, p95 4000 ms, p99 4000 ms" in out
    assert (
        f"coverage {(1 - 1860 / 86400) * 100:.1f} % of the last 24 h with a token of at least 60 s left"
        in out
    )
    assert "1 token(s) lived too short for the refresh schedule" in out
    assert "ConnectTimeout, 4000 ms, run scheduled__c try 2" in out
    assert "http_503 (HTTP 503), 200 ms" in out
    assert "fingerprint bbbbbbbbbbbb, lifetime 86400 s, 100 ms, run scheduled__b" in out


@pytest.mark.parametrize(
    ("expires_in_s", "argv", "code"),
    [
        pytest.param(3600, [], 0, id="valid-token"),
        pytest.param(30, [], 1, id="token-within-the-margin"),
        pytest.param(30, ["--margin", "10"], 0, id="token-beyond-a-smaller-margin"),
        pytest.param(-10, ["--margin", "0"], 1, id="expired-token"),
        pytest.param(None, [], 1, id="no-token"),
    ],
)
def test_status_exit_code_says_whether_a_valid_token_exists(
    db: TokenDatabase,
    capsys: pytest.CaptureFixture[str],
    expires_in_s: int | None,
    argv: list[str],
    code: int,
) -> None:
    if expires_in_s is not None:
        db.insert(TOKEN, expires_in_s=expires_in_s)

    exit_code, out, _ = run(capsys, "status", *argv)

    assert exit_code == code
    if code == 1:
        assert out.startswith("No valid token in pm_api_tokens: none has")


def test_status_of_an_empty_history(db: TokenDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--json")

    assert code == 1
    history = json.loads(out)["history"]
    assert (history["attempts"], history["success_rate"], history["coverage"]) == (0, None, 0.0)
    assert history["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_status_without_a_history_table_still_reports_the_token(
    db: TokenDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db.insert(TOKEN, expires_in_s=3600)

    code, out, _ = run(capsys, "status", "--history-table", "no_such_history")

    assert code == 0
    assert out.splitlines()[0].startswith("Newest valid token in pm_api_tokens")
    assert (
        "Refresh history: no_such_history on connection 'parkmobile_db' cannot be read: ProgrammingError"
        in out
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        pytest.param(
            ["status", "--table", "bad-name"], "Table name 'bad-name' is not allowed", id="bad-table"
        ),
        pytest.param(["status", "--history-table", "x;drop"], "is not allowed", id="bad-history-table"),
        pytest.param(["status", "--margin", "-5"], "--margin must not be negative", id="negative-margin"),
        pytest.param(["status", "--conn-id", "no_such_conn"], "cannot be read", id="unknown-connection"),
        pytest.param(["init-db", "--history-table", "pm_api_tokens"], "must differ", id="same-table-names"),
    ],
)
def test_usage_and_configuration_errors_exit_2(
    db: TokenDatabase, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = run(capsys, *argv)

    assert code == 2
    assert says in err
    assert out == ""


def test_argparse_usage_errors_exit_2(db: TokenDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["status", "--margin", "soon"])

    assert exit_info.value.code == 2


def test_common_options_work_before_and_after_the_command(
    db: TokenDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_DB", db.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", db.connection_json(port=1))
    db.insert(TOKEN, expires_in_s=3600)

    before = run(capsys, "--conn-id", "other_db", "status", "--json")
    after = run(capsys, "status", "--conn-id", "other_db", "--json")

    assert before[0] == after[0] == 0
    assert json.loads(before[1])["connection"] == json.loads(after[1])["connection"] == "other_db"


def test_status_reads_the_tables_the_dag_is_configured_with(
    db: TokenDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__HISTORY_TABLE", "configured_history")

    code, out, _ = run(capsys, "status", "--json")

    assert code == 1
    assert json.loads(out)["history"]["table"] == "configured_history"


@pytest.fixture
def other_tables(db: TokenDatabase) -> Iterator[tuple[str, str]]:
    names = ("status_tokens", "status_refreshes")
    for name in names:
        db.query(f"DROP TABLE IF EXISTS {name}")
    yield names
    for name in names:
        db.query(f"DROP TABLE IF EXISTS {name}")


def test_init_db_creates_both_tables_and_show_still_works(
    db: TokenDatabase, capsys: pytest.CaptureFixture[str], other_tables: tuple[str, str]
) -> None:
    tokens, refreshes = other_tables

    code, out, _ = run(capsys, "init-db", "--table", tokens, "--history-table", refreshes)
    again, _, _ = run(capsys, "init-db", "--table", tokens, "--history-table", refreshes)

    assert (code, again) == (0, 0)
    assert f"Token table {tokens} and refresh history table {refreshes} are ready" in out
    assert {row[0] for row in db.query("SHOW TABLES")} >= {tokens, refreshes}
    columns = {row[0] for row in db.query(f"SHOW COLUMNS FROM {refreshes}")}
    assert {"attempted_at", "outcome", "stored_at", "fingerprint", "short_lifetime"} <= columns
    assert "token" not in columns

    assert run(capsys, "show", "--table", tokens)[0] == 1
    db.query(
        f"INSERT INTO {tokens} (token, token_sha256, expires, created_at) "
        "VALUES (%s, %s, UTC_TIMESTAMP() + INTERVAL 600 SECOND, UTC_TIMESTAMP())",
        (TOKEN, hashlib.sha256(TOKEN.encode()).hexdigest()),
    )
    code, out, _ = run(capsys, "show", "--table", tokens)
    assert code == 0
    assert f"fingerprint {fingerprint(TOKEN)}, " in out
    assert TOKEN not in out


def test_the_module_runs_as_a_command(db: TokenDatabase, tmp_path: Path) -> None:
    db.insert(TOKEN, expires_in_s=3600)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_CONN_PARKMOBILE_DB": db.connection_json(),
        "PYTHONPATH": str(REPO / "plugins"),
    }

    result = subprocess.run(
        [sys.executable, "-m", "parkmobile_token", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["token"]["fingerprint"] == fingerprint(TOKEN)
    assert TOKEN not in result.stdout + result.stderr
