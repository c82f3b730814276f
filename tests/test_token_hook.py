"""
``ParkMobileTokenHook`` against the real MariaDB/MySQL and the HTTPS stand-in.

The valid-token path is one query on a reused connection and never calls the token endpoint; a miss
refreshes inline through the DAG's own fetch and store; a failed refresh falls back to a token that has
not expired yet, or raises; ten processes that miss at once cause exactly one token request.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from parkmobile_token.clock import fingerprint
from parkmobile_token.config import FetchRetryPolicy
from parkmobile_token.store import TokenStore
from parkmobile_token.token_hook import (
    MAX_LOCK_NAME_LENGTH,
    NEWEST_VALID_SQL,
    ParkMobileTokenHook,
    RefreshLockTimeoutError,
    TokenUnavailableError,
)
from tests.conftest import CLIENT_SECRET, REPO

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import TokenDatabase

FAST = FetchRetryPolicy(max_attempts=2, backoff_initial=0.05, backoff_max=0.1, jitter=0.0)
MARGIN = 60
PROCESSES = 10


def made_up_token() -> str:
    return "stored-" + secrets.token_urlsafe(24)


@pytest.fixture
def hook(connections_env: dict[str, str]) -> Iterator[ParkMobileTokenHook]:
    with ParkMobileTokenHook(margin=MARGIN, lock_timeout=5, retry_policy=FAST) as token_hook:
        yield token_hook


@pytest.fixture
def lock_holder(empty_token_table: TokenDatabase, hook: ParkMobileTokenHook) -> Iterator[Any]:
    """A separate MySQL session that holds the hook's refresh lock."""
    conn = empty_token_table.server.connect(empty_token_table.name)
    cursor = conn.cursor()
    cursor.execute("SELECT GET_LOCK(%s, 0)", (hook.lock_name,))
    assert cursor.fetchone() == (1,)
    yield conn
    conn.close()


def questions(conn: Any) -> int:
    """Statements the session has sent so far, this one included."""
    with conn.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])


def connection_id(conn: Any) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def lock_is_free(db: TokenDatabase, name: str) -> bool:
    return db.query("SELECT IS_FREE_LOCK(%s)", (name,)) == [(1,)]


def output_of(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    return out + err


def assert_no_secret(text: str, *tokens: str) -> None:
    for secret in (CLIENT_SECRET, *tokens):
        assert secret not in text


# -- the valid-token path --------------------------------------------------------------------------


def test_newest_valid_token_comes_from_one_query_without_a_token_request(
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    newest, older, expiring = made_up_token(), made_up_token(), made_up_token()
    empty_token_table.insert(older, expires_in_s=1200)
    empty_token_table.insert(newest, expires_in_s=2400)
    empty_token_table.insert(expiring, expires_in_s=MARGIN // 2)
    empty_token_table.insert(made_up_token(), expires_in_s=-30)

    assert hook.get_token() == newest  # opens the connection
    conn = hook.get_conn()
    session = connection_id(conn)
    before = questions(conn)
    token = hook.get_token()
    after = questions(conn)

    assert token == newest
    assert after - before - 1 == 1, "one statement between the two status reads, beside the second read"
    assert hook.get_conn() is conn
    assert connection_id(hook.get_conn()) == session, "the connection is kept across calls"
    assert standin.requests == []
    assert_no_secret(output_of(capfd), newest, older, expiring)


def test_valid_token_query_reads_the_expires_index(empty_token_table: TokenDatabase) -> None:
    for offset in range(-100, 100):
        empty_token_table.insert(made_up_token(), expires_in_s=offset * 60)

    plan = empty_token_table.query("EXPLAIN " + NEWEST_VALID_SQL.format(table=empty_token_table.table), (60,))

    [(_, _, table, kind, _, key, *_)] = plan
    assert table == empty_token_table.table
    assert key == "ix_pm_api_tokens_expires"
    assert kind == "range"


def test_a_connection_the_server_dropped_is_reopened_once(
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    token = made_up_token()
    empty_token_table.insert(token, expires_in_s=600)
    assert hook.get_token() == token
    dropped = connection_id(hook.get_conn())

    empty_token_table.query("KILL CONNECTION %s", (dropped,))

    assert hook.get_token() == token
    assert connection_id(hook.get_conn()) != dropped
    assert re.search(
        r"MySQL connection 'parkmobile_db' was lost \(error 20(06|13)\); reconnecting once", output_of(capfd)
    )
    assert standin.requests == []


# -- refresh inline -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([], id="empty-table"),
        pytest.param([-600, -1], id="expired"),
        pytest.param([-600, MARGIN // 2, MARGIN], id="expiring-within-the-margin"),
    ],
)
def test_refreshes_inline_when_no_token_stays_valid_for_the_margin(
    rows: list[int],
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for expires_in_s in rows:
        empty_token_table.insert(made_up_token(), expires_in_s=expires_in_s)

    token = hook.get_token()

    [issued] = standin.issued_tokens
    assert token == issued
    assert len(standin.token_requests()) == 1
    [stored] = [row for row in empty_token_table.rows() if row["token"] == issued]
    lifetime = stored["expires"] - datetime.now(UTC).replace(tzinfo=None)
    assert timedelta(minutes=58) < lifetime <= timedelta(hours=1)
    assert hook.get_token() == issued, "the next call reads the stored token"
    assert len(standin.token_requests()) == 1
    assert lock_is_free(empty_token_table, hook.lock_name)
    output = output_of(capfd)
    assert (
        f"Refreshed token inline on connection 'parkmobile_auth': fingerprint {fingerprint(issued)}" in output
    )
    assert_no_secret(output, issued)


def test_a_refreshed_token_must_outlive_the_margin(
    connections_env: dict[str, str], empty_token_table: TokenDatabase, standin: Any
) -> None:
    standin.script([{"issue": True, "json": {"expires_in": 300}}])

    with (
        ParkMobileTokenHook(margin=600, retry_policy=FAST) as hook,
        pytest.raises(TokenUnavailableError, match="does not outlive the 600 s"),
    ):
        hook.get_token()

    assert empty_token_table.rows() == []


def test_a_fetched_token_that_cannot_be_stored_is_still_returned_with_a_warning(
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    hook.store = TokenStore(hook.mysql_conn_id, "pm_no_such_table")

    token = hook.get_token()

    [issued] = standin.issued_tokens
    assert token == issued
    assert empty_token_table.rows() == []
    output = output_of(capfd)
    assert f"Fetched token {fingerprint(issued)}" in output
    assert (
        "could not store it in pm_api_tokens on connection 'parkmobile_db' (ProgrammingError, error 1146)"
        in output
    )
    assert lock_is_free(empty_token_table, hook.lock_name)
    assert_no_secret(output, issued)


@pytest.mark.parametrize(
    "arguments",
    [pytest.param({"margin": -1}, id="margin"), pytest.param({"lock_timeout": -1}, id="lock-timeout")],
)
def test_negative_bounds_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        ParkMobileTokenHook(**arguments)


# -- a failed refresh ------------------------------------------------------------------------------


def test_failed_refresh_returns_a_token_inside_the_margin_with_a_warning(
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    still_valid = made_up_token()
    empty_token_table.insert(made_up_token(), expires_in_s=-5)
    empty_token_table.insert(still_valid, expires_in_s=MARGIN // 2)
    standin.script([{"status": 400, "json": {"error": "invalid_client"}}])

    token = hook.get_token()

    assert token == still_valid
    assert len(standin.token_requests()) == 1
    output = output_of(capfd)
    warnings = [line for line in output.splitlines() if "warning" in line.lower()]
    assert any(
        "Could not refresh the token on connection 'parkmobile_auth'" in line
        and "OAuth error 'invalid_client'" in line
        and f"returning stored token {fingerprint(still_valid)}" in line
        for line in warnings
    ), output
    assert lock_is_free(empty_token_table, hook.lock_name)
    assert_no_secret(output, still_valid)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(
            ({"status": 400, "json": {"error": "invalid_client"}}, "invalid_client", False), id="oauth"
        ),
        pytest.param(({"status": 503, "text": "down"}, "HTTP 503", True), id="transient"),
    ],
)
def test_failed_refresh_with_no_valid_token_left_raises_naming_both_connections(
    failure: tuple[dict[str, Any], str, bool],
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    response, says, retryable = failure
    expired = made_up_token()
    empty_token_table.insert(expired, expires_in_s=-1)
    standin.script([response] * FAST.max_attempts)

    with pytest.raises(TokenUnavailableError) as raised:
        hook.get_token()

    message = str(raised.value)
    assert "No valid ParkMobile token is left in pm_api_tokens on connection 'parkmobile_db'" in message
    assert "refreshing it on connection 'parkmobile_auth' failed" in message
    assert says in message
    assert raised.value.retryable is retryable
    assert lock_is_free(empty_token_table, hook.lock_name)
    assert_no_secret(message + output_of(capfd), expired)


# -- single flight ---------------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json
    import sys

    from parkmobile_token.clock import fingerprint
    from parkmobile_token.token_hook import ParkMobileTokenHook

    with ParkMobileTokenHook(lock_timeout=60) as hook:
        hook.get_conn()  # connect before the start gate, so that every process reads at once
        print("READY", flush=True)
        sys.stdin.readline()
        token = hook.get_token()
    print("RESULT " + json.dumps({"fingerprint": fingerprint(token)}), flush=True)
    """
)


def test_ten_processes_that_miss_at_once_cause_one_token_request(
    connections_env: dict[str, str], empty_token_table: TokenDatabase, standin: Any, tmp_path: Any
) -> None:
    empty_token_table.insert(made_up_token(), expires_in_s=-60)
    # The winner's request takes a while, so the others are surely waiting on the lock meanwhile.
    standin.script([{"delay": 2.0}])
    script = tmp_path / "get_token.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    try:
        early_output = [_read_until_ready(worker) for worker in workers]
        for worker in workers:  # the start gate: every process is connected and blocked on stdin
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [
            text + worker.communicate(timeout=120)[0]
            for worker, text in zip(workers, early_output, strict=True)
        ]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    assert [worker.returncode for worker in workers] == [0] * PROCESSES, outputs
    [issued] = standin.issued_tokens
    assert len(standin.token_requests()) == 1
    results = [
        json.loads(line.split(" ", 1)[1])
        for text in outputs
        for line in text.splitlines()
        if line.startswith("RESULT ")
    ]
    assert [result["fingerprint"] for result in results] == [fingerprint(issued)] * PROCESSES
    everything = "\n".join(outputs)
    assert everything.count("Refreshed token inline") == 1
    assert everything.count("was stored by another process while this one waited") == PROCESSES - 1
    assert [row["token"] for row in empty_token_table.rows()][-1] == issued
    assert len(empty_token_table.rows()) == 2
    assert_no_secret(everything, issued)


def _read_until_ready(worker: subprocess.Popen[str]) -> str:
    assert worker.stdout is not None
    lines = []
    for line in worker.stdout:
        if line.strip() == "READY":
            return "".join(lines)
        lines.append(line)
    pytest.fail("a worker ended before its start gate:\n" + "".join(lines))


def test_after_the_lock_the_hook_looks_again_before_fetching(
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    lock_holder: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    result: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: result.setdefault("token", hook.get_token()))
    caller.start()
    _wait_until_someone_waits_for(empty_token_table, hook.lock_name)

    stored_meanwhile = made_up_token()
    empty_token_table.insert(stored_meanwhile, expires_in_s=3600)
    with lock_holder.cursor() as cursor:
        cursor.execute("SELECT RELEASE_LOCK(%s)", (hook.lock_name,))
    caller.join(timeout=30)

    assert result["token"] == stored_meanwhile
    assert standin.requests == []
    output = output_of(capfd)
    assert f"Token {fingerprint(stored_meanwhile)}" in output
    assert "was stored by another process" in output
    assert_no_secret(output, stored_meanwhile)


def _wait_until_someone_waits_for(db: TokenDatabase, lock_name: str) -> None:
    """Return once a session is blocked in GET_LOCK on the lock: MySQL offers no event to wait on."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        waiting = db.query(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
            (f"SELECT GET_LOCK('{lock_name}'%",),
        )
        if waiting[0][0]:
            return
        time.sleep(0.02)
    pytest.fail(f"nobody waited for lock {lock_name!r}")


def test_lock_timeout_returns_a_token_inside_the_margin_with_a_warning(
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    lock_holder: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    still_valid = made_up_token()
    empty_token_table.insert(still_valid, expires_in_s=MARGIN // 2)
    hook.lock_timeout = 0.5
    started = time.monotonic()

    token = hook.get_token()

    assert token == still_valid
    assert 0.4 < time.monotonic() - started < 5
    assert standin.requests == []
    output = output_of(capfd)
    assert f"for lock {hook.lock_name!r} without getting it" in output
    assert f"returning stored token {fingerprint(still_valid)}" in output
    assert_no_secret(output, still_valid)


def test_lock_timeout_with_no_valid_token_left_raises(
    hook: ParkMobileTokenHook,
    empty_token_table: TokenDatabase,
    standin: Any,
    lock_holder: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    expired = made_up_token()
    empty_token_table.insert(expired, expires_in_s=-1)
    hook.lock_timeout = 0.5

    with pytest.raises(TokenUnavailableError) as raised:
        hook.get_token()

    assert isinstance(raised.value.__cause__, RefreshLockTimeoutError)
    message = str(raised.value)
    assert f"held the refresh lock {hook.lock_name!r} for longer than 0.5 s" in message
    assert "'parkmobile_db'" in message
    assert "'parkmobile_auth'" in message
    assert raised.value.retryable
    assert standin.requests == []
    assert_no_secret(message + output_of(capfd), expired)


# -- the lock's name -------------------------------------------------------------------------------


def test_lock_is_named_after_the_database_and_the_table(
    hook: ParkMobileTokenHook, empty_token_table: TokenDatabase
) -> None:
    assert hook.lock_name == f"parkmobile_token:{empty_token_table.name}.pm_api_tokens"


def test_a_long_lock_name_is_hashed_to_fit_mysql(
    monkeypatch: pytest.MonkeyPatch, empty_token_table: TokenDatabase
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", empty_token_table.connection_json(schema="d" * 64))
    long_table = ParkMobileTokenHook(table="t" * 48)
    other_table = ParkMobileTokenHook(table="t" * 47)

    assert len(long_table.lock_name) == MAX_LOCK_NAME_LENGTH
    assert long_table.lock_name.startswith("parkmobile_token:")
    assert long_table.lock_name != other_table.lock_name


def test_inline_refreshes_are_recorded_in_the_history_like_the_dags(
    hook: ParkMobileTokenHook, empty_history_table: TokenDatabase, standin: Any
) -> None:
    from tests.conftest import history_rows

    standin.script([{"status": 400, "json": {"error": "invalid_client"}}])
    with pytest.raises(TokenUnavailableError):
        hook.get_token()
    token = hook.get_token()

    failed, stored = history_rows(empty_history_table)
    assert (failed["outcome"], failed["error_class"], failed["http_status"]) == (
        "failed",
        "invalid_client",
        400,
    )
    assert failed["stored_at"] is None
    assert (stored["outcome"], stored["run_id"], stored["fingerprint"]) == (
        "stored",
        "inline",
        fingerprint(token),
    )
    assert stored["stored_at"] is not None
    assert stored["lifetime_s"] == 3600
    assert token not in json.dumps([failed, stored], default=str)
