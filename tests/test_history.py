"""The refresh history: its pure figures, the table through ``RefreshHistory``, and what the DAG records."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from parkmobile_token.history import (
    DEFAULT_HISTORY_TABLE,
    FAILED,
    FETCHED,
    STORED,
    HistorySettings,
    RefreshHistory,
    RefreshRecord,
    coverage,
    coverage_intervals,
    is_short_lifetime,
    merge_intervals,
    percentile,
    render_history_ddl,
    schedule_interval_s,
    success_rate,
    summarize,
)
from parkmobile_token.store import TokenStore
from tests.conftest import history_rows, insert_history

if TYPE_CHECKING:
    from tests.conftest import AirflowRunner, TokenDatabase

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY_AGO = NOW - timedelta(hours=24)
ALL_DONE = {"fetch_token": "success", "store_token": "success", "delete_expiring_tokens": "success"}


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


# -- coverage -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        pytest.param([], 0.0, id="empty-history"),
        pytest.param([(at(30), at(-1))], 1.0, id="one-token-valid-the-whole-day"),
        pytest.param([(at(24), at(12)), (at(12), at(0))], 1.0, id="back-to-back-intervals"),
        pytest.param([(at(24), at(11)), (at(13), at(0))], 1.0, id="overlapping-intervals"),
        pytest.param([(at(24), at(12.5)), (at(12), at(0))], 1 - 1800 / 86400, id="one-30-minute-gap"),
        pytest.param([(at(20), at(10))], 10 / 24, id="gaps-at-both-ends"),
        pytest.param([(at(48), at(25))], 0.0, id="interval-before-the-window"),
        pytest.param([(at(30), at(12))], 0.5, id="interval-reaching-into-the-window"),
        pytest.param([(at(6), at(-6))], 0.25, id="interval-reaching-past-now"),
        pytest.param([(at(5), at(6))], 0.0, id="interval-ending-before-it-starts"),
        pytest.param(
            [(at(23), at(22)), (at(22.5), at(21)), (at(10), at(9)), (at(9.5), at(9.25))],
            3 / 24,
            id="nested-and-overlapping-intervals",
        ),
    ],
)
def test_coverage_is_the_share_of_the_window_under_the_union_of_intervals(
    intervals: list[tuple[datetime, datetime]], expected: float
) -> None:
    assert coverage(intervals, start=DAY_AGO, end=NOW) == pytest.approx(expected, abs=1e-9)


def test_coverage_of_a_window_of_no_length_is_zero() -> None:
    assert coverage([(at(2), at(0))], start=NOW, end=NOW) == 0.0


def test_merge_intervals_returns_sorted_disjoint_intervals() -> None:
    merged = merge_intervals([(at(3), at(1)), (at(10), at(8)), (at(2), at(0)), (at(9), at(8.5))])
    assert merged == [(at(10), at(8)), (at(3), at(0))]


def test_coverage_intervals_end_a_margin_before_the_expiry_and_skip_unstored_rows() -> None:
    stored = RefreshRecord(at(2), STORED, expires=at(1), stored_at=at(1.99))
    fetched = RefreshRecord(at(1), FETCHED, expires=at(0))
    failed = RefreshRecord(at(0.5), FAILED)

    intervals = coverage_intervals([stored, fetched, failed], margin_s=60)

    assert intervals == [(at(1.99), at(1) - timedelta(seconds=60))]


# -- percentiles and success rate -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [
        pytest.param([], 0.5, None, id="no-values"),
        pytest.param([42], 0.99, 42.0, id="one-value"),
        pytest.param([3, 1, 2], 0.5, 2.0, id="median-of-three-unsorted"),
        pytest.param([1, 2, 3, 4], 0.5, 2.0, id="median-of-four-is-the-lower-middle"),
        pytest.param(list(range(1, 101)), 0.95, 95.0, id="p95-of-1-to-100"),
        pytest.param(list(range(1, 101)), 0.99, 99.0, id="p99-of-1-to-100"),
        pytest.param(list(range(1, 21)), 0.95, 19.0, id="p95-of-1-to-20"),
        pytest.param([10] * 99 + [5000], 0.99, 10.0, id="p99-ignores-one-outlier-in-100"),
        pytest.param([10] * 98 + [5000, 5000], 0.99, 5000.0, id="p99-sees-two-outliers-in-100"),
        pytest.param([7, 9], 1.0, 9.0, id="p100-is-the-maximum"),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], share: float, expected: float | None) -> None:
    assert percentile(values, share) == expected


@pytest.mark.parametrize("share", [0.0, -0.5, 1.01], ids=["zero", "negative", "above-one"])
def test_percentile_refuses_a_share_outside_0_to_1(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        percentile([1.0], share)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        pytest.param([], None, id="no-attempts"),
        pytest.param([STORED, STORED], 1.0, id="all-stored"),
        pytest.param([FAILED, STORED, STORED, FAILED], 0.5, id="half-failed"),
        pytest.param([FETCHED, STORED], 0.5, id="fetched-but-not-stored-is-no-success"),
        pytest.param([FAILED], 0.0, id="all-failed"),
    ],
)
def test_success_rate_is_the_share_of_stored_attempts(outcomes: list[str], expected: float | None) -> None:
    assert success_rate(outcomes) == expected


# -- short lifetime and the schedule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime_s", "interval_s", "short"),
    [
        pytest.param(1800, 1800, True, id="30-min-token-every-30-min"),
        pytest.param(3600, 1800, False, id="1-h-token-every-30-min"),
        pytest.param(2250, 1800, False, id="next-refresh-at-exactly-80-percent"),
        pytest.param(2249, 1800, True, id="next-refresh-just-after-80-percent"),
        pytest.param(86400, 3600, False, id="day-token-hourly"),
    ],
)
def test_short_lifetime_when_the_next_refresh_comes_after_80_percent_of_it(
    lifetime_s: int, interval_s: int, short: bool
) -> None:
    assert is_short_lifetime(lifetime_s, interval_s) is short


def _timetable(schedule: Any) -> Any:
    from airflow.sdk import DAG

    return DAG("schedule_probe", schedule=schedule, start_date=datetime(2026, 1, 1)).timetable


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        pytest.param("*/30 * * * *", 1800.0, id="every-30-minutes"),
        pytest.param("@hourly", 3600.0, id="hourly-preset"),
        pytest.param("0 */6 * * *", 21600.0, id="every-6-hours"),
        pytest.param(timedelta(minutes=20), 1200.0, id="delta"),
        pytest.param(None, None, id="no-schedule"),
    ],
)
def test_schedule_interval_is_read_from_the_dag_timetable(schedule: Any, expected: float | None) -> None:
    assert schedule_interval_s(_timetable(schedule), now=NOW) == expected


def test_schedule_interval_of_no_timetable_is_unknown() -> None:
    assert schedule_interval_s(None, now=NOW) is None


# -- summary --------------------------------------------------------------------------------------


def test_summarize_counts_attempts_in_the_window_and_covers_with_stored_tokens() -> None:
    rows = [
        # Stored before the window, still covering its first half hour.
        RefreshRecord(at(25), STORED, latency_ms=999, expires=at(23.5), stored_at=at(25)),
        RefreshRecord(at(23.5), FAILED, latency_ms=100, error_class="http_503", http_status=503),
        RefreshRecord(at(23.4), STORED, latency_ms=200, expires=at(-0.5), stored_at=at(23.4)),
        RefreshRecord(at(1), FETCHED, latency_ms=300, expires=at(0), short_lifetime=True),
    ]

    summary = summarize(rows, start=DAY_AGO, end=NOW, margin_s=0)

    assert (summary.attempts, summary.stored, summary.failed, summary.fetched_not_stored) == (3, 1, 1, 1)
    assert summary.short_lifetime == 1
    assert summary.success_rate == pytest.approx(1 / 3)
    assert summary.latency_ms == {"p50": 200.0, "p95": 300.0, "p99": 300.0}
    # Uncovered: from 23.5 h ago (the first token's end) to 23.4 h ago (the second's store).
    assert summary.coverage == pytest.approx(1 - 360 / 86400)


def test_summarize_empty_history() -> None:
    summary = summarize([], start=DAY_AGO, end=NOW, margin_s=60)

    assert summary.attempts == 0
    assert summary.success_rate is None
    assert summary.latency_ms == {"p50": None, "p95": None, "p99": None}
    assert summary.coverage == 0.0


# -- settings -------------------------------------------------------------------------------------


def test_settings_are_read_from_the_airflow_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__HISTORY_TABLE", "refreshes_2")
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__HISTORY_RETENTION_DAYS", "7")
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__REFRESH_INTERVAL_S", "900")

    assert HistorySettings.from_config() == HistorySettings("refreshes_2", 7, 900.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"table": "bad name"}, id="table-name-with-a-space"),
        pytest.param({"table": "x" * 49}, id="table-name-too-long"),
        pytest.param({"retention_days": 0}, id="no-retention"),
        pytest.param({"refresh_interval_s": 0}, id="no-interval"),
    ],
)
def test_settings_refuse_unusable_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"not allowed|must be"):
        HistorySettings(**kwargs)


def test_history_ddl_names_the_configured_table_and_its_index() -> None:
    ddl = render_history_ddl("other_refreshes")

    assert "CREATE TABLE IF NOT EXISTS other_refreshes (" in ddl
    assert "KEY ix_other_refreshes_attempted_at (attempted_at)" in ddl
    assert DEFAULT_HISTORY_TABLE not in ddl


# -- the table ------------------------------------------------------------------------------------


@pytest.fixture
def history(monkeypatch: pytest.MonkeyPatch, empty_history_table: TokenDatabase) -> RefreshHistory:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", empty_history_table.connection_json())
    return RefreshHistory()


def test_record_then_mark_stored_keeps_the_first_stored_at(
    history: RefreshHistory, empty_history_table: TokenDatabase
) -> None:
    now = datetime.now(UTC)
    record = RefreshRecord(
        now,
        FETCHED,
        dag_id="update_parkmobile_token",
        run_id="scheduled__1",
        try_number=2,
        latency_ms=123,
        lifetime_s=3600,
        expires=now + timedelta(seconds=3600, microseconds=700_000),
        fingerprint="0123456789ab",
    )

    row_id = history.record(record)
    assert history.mark_stored(row_id, stored_at=now + timedelta(seconds=1)) is True
    assert history.mark_stored(row_id, stored_at=now + timedelta(seconds=9)) is True

    [row] = history_rows(empty_history_table)
    assert row["id"] == row_id
    assert row["outcome"] == STORED
    # DATETIME(3) keeps milliseconds; a server may round or truncate the rest.
    assert abs(row["stored_at"] - naive(now + timedelta(seconds=1))) <= timedelta(milliseconds=1)
    assert record.expires is not None
    assert row["expires"] == naive(record.expires).replace(microsecond=0), "the expiry is floored"
    assert (row["dag_id"], row["run_id"], row["try_number"]) == ("update_parkmobile_token", "scheduled__1", 2)
    assert (row["latency_ms"], row["lifetime_s"], row["fingerprint"]) == (123, 3600, "0123456789ab")


def test_mark_stored_of_a_missing_row_says_so(history: RefreshHistory) -> None:
    assert history.mark_stored(987654, stored_at=datetime.now(UTC)) is False


def test_record_keeps_a_lifetime_beyond_32_bits_and_cuts_a_long_error_class(
    history: RefreshHistory, empty_history_table: TokenDatabase
) -> None:
    history.record(RefreshRecord(datetime.now(UTC), FETCHED, lifetime_s=9_999_999_999))
    history.record(RefreshRecord(datetime.now(UTC), FAILED, error_class="E" * 100))

    rows = history_rows(empty_history_table)
    assert rows[0]["lifetime_s"] == 9_999_999_999
    assert rows[1]["error_class"] == "E" * 64


@pytest.mark.parametrize(
    ("old", "recent", "batch_size"),
    [
        pytest.param(0, 3, 2, id="nothing-old"),
        pytest.param(5, 2, 2, id="several-batches"),
        pytest.param(4, 1, 4, id="exactly-one-full-batch"),
        pytest.param(3, 0, 1000, id="one-partial-batch"),
    ],
)
def test_purge_deletes_rows_older_than_the_retention_in_batches(
    empty_history_table: TokenDatabase,
    monkeypatch: pytest.MonkeyPatch,
    old: int,
    recent: int,
    batch_size: int,
) -> None:
    db = empty_history_table
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", db.connection_json())
    now = naive(datetime.now(UTC))
    for index in range(old):
        insert_history(db, attempted_at=now - timedelta(days=31, minutes=index), outcome=STORED)
    for index in range(recent):
        insert_history(db, attempted_at=now - timedelta(days=29, minutes=index), outcome=FAILED)

    purged = RefreshHistory(purge_batch_size=batch_size).purge(retention_days=30)

    assert purged == old
    assert [row["outcome"] for row in history_rows(db)] == [FAILED] * recent


def test_window_reads_recent_attempts_and_older_tokens_still_covering(
    history: RefreshHistory, empty_history_table: TokenDatabase
) -> None:
    db = empty_history_table
    now = datetime.now(UTC)
    insert_history(db, attempted_at=naive(now - timedelta(hours=30)), outcome=FAILED)
    covering = insert_history(
        db,
        attempted_at=naive(now - timedelta(hours=25)),
        outcome=STORED,
        stored_at=naive(now - timedelta(hours=25)),
        expires=naive(now - timedelta(hours=23)),
    )
    insert_history(
        db,
        attempted_at=naive(now - timedelta(hours=26)),
        outcome=STORED,
        stored_at=naive(now - timedelta(hours=26)),
        expires=naive(now - timedelta(hours=24, seconds=30)),  # ends within the margin of the window
    )
    recent = insert_history(db, attempted_at=naive(now - timedelta(hours=1)), outcome=FAILED)

    rows = history.window(start=now - timedelta(hours=24), margin_s=60)

    assert [row.id for row in rows] == [covering, recent]
    assert rows[0].expires is not None
    assert rows[0].expires.tzinfo is UTC


def test_latest_returns_the_newest_rows_of_an_outcome(
    history: RefreshHistory, empty_history_table: TokenDatabase
) -> None:
    db = empty_history_table
    now = naive(datetime.now(UTC))
    ids = [
        insert_history(db, attempted_at=now - timedelta(minutes=minutes), outcome=outcome)
        for minutes, outcome in [(50, FAILED), (40, STORED), (30, FAILED), (20, FAILED), (10, STORED)]
    ]

    failures = history.latest([FAILED], limit=2)

    assert [row.id for row in failures] == [ids[3], ids[2]]
    assert [row.id for row in history.latest([STORED, FAILED], limit=10)] == ids[::-1]


RUNS = "update_parkmobile_token"


def _runs(db: TokenDatabase, outcomes_per_run: list[list[str]], *, dag_id: str = RUNS) -> None:
    """Insert runs one after the other, oldest first, each with its attempts' outcomes in order."""
    start = naive(datetime.now(UTC)) - timedelta(hours=len(outcomes_per_run))
    for number, outcomes in enumerate(outcomes_per_run):
        for attempt, outcome in enumerate(outcomes):
            insert_history(
                db,
                dag_id=dag_id,
                run_id=f"scheduled__{number}",
                try_number=attempt + 1,
                attempted_at=start + timedelta(hours=number, minutes=attempt),
                outcome=outcome,
            )


@pytest.mark.parametrize(
    ("runs", "streak"),
    [
        pytest.param([], 0, id="no-history"),
        pytest.param([[STORED], [STORED]], 0, id="all-stored"),
        pytest.param([[FAILED], [FAILED]], 2, id="never-stored"),
        pytest.param(
            [[STORED], [FAILED], [FAILED, FAILED], [FAILED]], 3, id="three-failed-runs-after-a-success"
        ),
        pytest.param(
            [[FAILED], [FAILED], [STORED], [FAILED]], 1, id="failures-before-a-success-do-not-count"
        ),
        pytest.param([[FAILED], [FAILED, STORED]], 0, id="a-run-that-stored-on-its-retry-is-no-failure"),
        pytest.param([[STORED], [FETCHED], [FAILED]], 2, id="a-fetched-but-unstored-run-is-a-failure"),
    ],
)
def test_failed_run_streak_counts_runs_without_a_stored_token_since_the_last_one(
    history: RefreshHistory, empty_history_table: TokenDatabase, runs: list[list[str]], streak: int
) -> None:
    _runs(empty_history_table, runs)

    assert history.failed_run_streak(RUNS) == streak


def test_failed_run_streak_ignores_other_dags_and_temporary_runs(
    history: RefreshHistory, empty_history_table: TokenDatabase
) -> None:
    db = empty_history_table
    _runs(db, [[STORED], [FAILED]])
    _runs(db, [[FAILED], [FAILED], [FAILED]], dag_id="another_dag")
    insert_history(
        db,
        dag_id=RUNS,
        run_id="__airflow_temporary_run_2026-12-03T10:00:00+00:00__",
        attempted_at=naive(datetime.now(UTC)),
        outcome=FAILED,
    )

    assert history.failed_run_streak(RUNS) == 1


# -- what the DAG records -------------------------------------------------------------------------


def _fetch_xcom(airflow: AirflowRunner) -> dict[str, Any]:
    with sqlite3.connect(airflow.home / "airflow.db") as db:
        [(value,)] = db.execute(
            "SELECT value FROM xcom WHERE task_id = 'fetch_token' AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = 'update_parkmobile_token' ORDER BY id DESC LIMIT 1)"
        ).fetchall()
    return dict(json.loads(value))


@pytest.mark.airflow
def test_a_refresh_records_fetched_then_stored_and_purges_old_history(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase
) -> None:
    db = empty_history_table
    old = insert_history(db, attempted_at=naive(datetime.now(UTC) - timedelta(days=40)), outcome=FAILED)
    kept = insert_history(db, attempted_at=naive(datetime.now(UTC) - timedelta(days=3)), outcome=FAILED)

    result = airflow.dags_test()

    assert result.task_states == ALL_DONE, result.output[-3000:]
    rows = history_rows(db)
    assert old not in [row["id"] for row in rows]
    assert "Purged 1 refresh history row(s) older than 30 day(s)" in result.output
    [request] = standin.token_requests()
    [token] = standin.issued_tokens
    [stored] = [row for row in rows if row["id"] != kept]
    token_row = db.rows()[-1]
    assert stored["outcome"] == STORED
    assert stored["dag_id"] == "update_parkmobile_token"
    assert stored["run_id"] == _latest_run_id(airflow)
    assert stored["try_number"] == 1
    assert stored["fingerprint"] == token_row["token_sha256"][:12]
    assert stored["expires"] == token_row["expires"]
    assert stored["lifetime_s"] == 3600
    assert stored["short_lifetime"] == 0
    assert stored["http_status"] is None
    assert stored["error_class"] is None
    assert 0 <= stored["latency_ms"] < 60_000
    assert abs((stored["attempted_at"].replace(tzinfo=UTC) - request.received_at).total_seconds()) < 2
    assert stored["attempted_at"] <= stored["stored_at"] <= naive(datetime.now(UTC))
    assert token not in json.dumps(rows, default=str)
    xcom = _fetch_xcom(airflow)
    assert xcom["history_id"] == stored["id"]
    assert token not in json.dumps(xcom)
    assert "lives 3600 s" not in result.output


def _latest_run_id(airflow: AirflowRunner) -> str:
    with sqlite3.connect(airflow.home / "airflow.db") as db:
        [(run_id,)] = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'update_parkmobile_token' ORDER BY id DESC LIMIT 1"
        ).fetchall()
    return str(run_id)


@pytest.mark.airflow
def test_a_token_too_short_lived_for_the_schedule_is_warned_of_and_recorded(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase
) -> None:
    standin.script([{"issue": True, "json": {"expires_in": 1800}}])

    result = airflow.dags_test()

    assert result.task_states == ALL_DONE, result.output[-3000:]
    [row] = history_rows(empty_history_table)
    assert (row["short_lifetime"], row["lifetime_s"], row["outcome"]) == (1, 1800, STORED)
    warnings = [line for line in result.output.splitlines() if "lives 1800 s" in line]
    assert warnings, result.output[-3000:]
    assert "warning" in warnings[0].lower()
    assert (
        "next scheduled refresh comes 1800 s after this one, later than 80% of that lifetime" in warnings[0]
    )


@pytest.mark.airflow
def test_each_failed_try_is_recorded_with_its_status_and_the_retry_that_stored(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase
) -> None:
    standin.script([{"status": 503}] * 4)  # the test policy makes four attempts per task try

    result = airflow.dags_test()

    assert result.task_states == ALL_DONE, result.output[-3000:]
    rows = history_rows(empty_history_table)
    assert [(row["try_number"], row["outcome"]) for row in rows] == [(1, FAILED), (2, STORED)]
    assert (rows[0]["http_status"], rows[0]["error_class"]) == (503, "http_503")
    assert rows[0]["fingerprint"] is None
    assert rows[0]["latency_ms"] > 0
    assert rows[0]["run_id"] == rows[1]["run_id"]


@pytest.mark.airflow
def test_a_permanent_failure_is_recorded_with_the_oauth_error(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase
) -> None:
    standin.script([{"status": 401, "json": {"error": "invalid_client"}}])

    result = airflow.dags_test()

    assert result.task_states["fetch_token"] == "failed", result.output[-3000:]
    [row] = history_rows(empty_history_table)
    assert (row["outcome"], row["http_status"], row["error_class"], row["try_number"]) == (
        FAILED,
        401,
        "invalid_client",
        1,
    )
    assert row["stored_at"] is None
    # The token table is empty, so the failure is escalated through the default, log-only notifier.
    escalation = f"ParkMobile token refresh: DAG update_parkmobile_token run {row['run_id']} failed; "
    [line] = [line for line in result.output.splitlines() if escalation in line]
    assert "[error" in line
    assert line.rstrip().split(escalation, 1)[1].startswith("no token is stored")


@pytest.mark.airflow
def test_a_missing_history_table_warns_and_the_refresh_still_stores(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase
) -> None:
    env = {"AIRFLOW__PARKMOBILE_TOKEN__HISTORY_TABLE": "no_such_history_table"}

    result = airflow.dags_test(env=env)

    assert result.task_states == ALL_DONE, result.output[-3000:]
    assert [row["token"] for row in empty_history_table.rows()] == standin.issued_tokens
    assert "This fetch was not recorded in the refresh history no_such_history_table" in result.output
    assert "Old refresh history was not purged in the refresh history no_such_history_table" in result.output
    assert history_rows(empty_history_table) == []
    assert _fetch_xcom(airflow)["history_id"] is None


def test_token_store_newest_reads_fingerprint_expiry_and_time_left(
    monkeypatch: pytest.MonkeyPatch, empty_token_table: TokenDatabase
) -> None:
    db = empty_token_table
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", db.connection_json())
    db.insert("token-expiring-first", expires_in_s=100)
    db.insert("token-expiring-last", expires_in_s=1000)
    db.insert("token-expired", expires_in_s=-100)

    newest = TokenStore().newest()
    valid = TokenStore().newest(min_seconds_left=2000)

    assert newest is not None
    [last] = [row for row in db.rows() if row["token"] == "token-expiring-last"]
    assert newest.fingerprint == last["token_sha256"][:12]
    assert 998 <= newest.seconds_left <= 1000
    assert newest.expires.tzinfo is UTC
    assert valid is None
