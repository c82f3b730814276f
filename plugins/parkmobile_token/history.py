"""
The refresh history: one row per token request, and the figures computed from it.

The functions at the top (coverage, percentiles, success rate, the short-lifetime check, the schedule
interval) take plain values and touch neither Airflow nor a database, so they are tested alone.
:class:`RefreshHistory` reads and writes the history table through ``MySqlHook``. The history never
holds a token, only its fingerprint (12 hex digits of its SHA-256).
"""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from parkmobile_token.clock import to_utc_naive
from parkmobile_token.config import DEFAULT_DB_CONN_ID, DEFAULT_HISTORY_TABLE, SECTION
from parkmobile_token.store import MySqlTable, render_ddl, validate_table_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

HISTORY_DDL_RESOURCE = "pm_api_token_refreshes.sql"
#: History rows attempted longer ago than this many days are purged by the cleanup task.
DEFAULT_RETENTION_DAYS = 30
#: Seconds between two scheduled refreshes, when the DAG's timetable does not say.
DEFAULT_REFRESH_INTERVAL_S = 1800
#: A token is short-lived when the next scheduled refresh comes after this share of its lifetime.
SHORT_LIFETIME_SHARE = 0.8
#: The window of the status figures.
STATUS_WINDOW = timedelta(hours=24)
#: How ``airflow tasks test`` names the run it makes and deletes; such runs are checks by hand, not refreshes.
TEMPORARY_RUN_PREFIX = "__airflow_temporary_run_"

FETCHED = "fetched"
STORED = "stored"
FAILED = "failed"
OUTCOMES = (FETCHED, STORED, FAILED)

# Widths of the history table's columns; longer values are cut rather than refused.
_ERROR_CLASS_WIDTH = 64
_RUN_FIELD_WIDTH = 250
_COLUMNS = (
    "id",
    "attempted_at",
    "dag_id",
    "run_id",
    "try_number",
    "outcome",
    "http_status",
    "error_class",
    "latency_ms",
    "lifetime_s",
    "expires",
    "fingerprint",
    "stored_at",
    "short_lifetime",
)

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class RefreshRecord:
    """
    One token request as the history table records it. Every time is aware UTC.

    :param attempted_at: just before the request was sent.
    :param outcome: ``fetched``, ``stored`` or ``failed``.
    :param dag_id: the DAG whose run asked.
    :param run_id: that DAG run.
    :param try_number: the task try that asked.
    :param http_status: the token endpoint's HTTP status, when one was answered.
    :param error_class: what failed: an OAuth error code, ``http_503``, ``tls_error``, an exception class.
    :param latency_ms: how long the whole fetch took, in-task retries and their waits included.
    :param lifetime_s: the issued ``expires_in``.
    :param expires: when the issued token expires.
    :param fingerprint: the issued token's fingerprint.
    :param stored_at: when the token was committed to the token table.
    :param short_lifetime: the lifetime ends too soon for the refresh schedule.
    :param id: the row's id, once it has one.
    """

    attempted_at: datetime
    outcome: str
    dag_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None
    http_status: int | None = None
    error_class: str | None = None
    latency_ms: int | None = None
    lifetime_s: int | None = None
    expires: datetime | None = None
    fingerprint: str | None = None
    stored_at: datetime | None = None
    short_lifetime: bool = False
    id: int | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")


@dataclass(frozen=True)
class HistorySummary:
    """
    The refresh figures of one window, as the status command prints them.

    :param start: the window's start.
    :param end: the window's end (now).
    :param attempts: token requests attempted within the window.
    :param stored: of those, the ones whose token was stored.
    :param fetched_not_stored: the ones whose token was fetched but not (yet) stored.
    :param failed: the ones that failed.
    :param short_lifetime: the ones whose token was too short-lived for the schedule.
    :param success_rate: ``stored / attempts``; None without attempts.
    :param latency_ms: the 50th, 95th and 99th percentile of the fetch latency, None where no latency
        was recorded.
    :param coverage: the share of the window during which a stored token had at least the margin left.
    """

    start: datetime
    end: datetime
    attempts: int
    stored: int
    fetched_not_stored: int
    failed: int
    short_lifetime: int
    success_rate: float | None
    latency_ms: dict[str, float | None]
    coverage: float

    def attempt_figures(self) -> dict[str, Any]:
        """Return the attempt counts, success rate and latency percentiles, as reports show them."""
        return {
            "attempts": self.attempts,
            "stored": self.stored,
            "fetched_not_stored": self.fetched_not_stored,
            "failed": self.failed,
            "short_lifetime": self.short_lifetime,
            "success_rate": self.success_rate,
            "latency_ms": self.latency_ms,
        }


# -- pure figures ---------------------------------------------------------------------------------


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Return the union of ``intervals`` as sorted, disjoint intervals; empty ones are dropped."""
    merged: list[Interval] = []
    for start, end in sorted(interval for interval in intervals if interval[1] > interval[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def coverage(intervals: Iterable[Interval], *, start: datetime, end: datetime) -> float:
    """
    Return the share of ``[start, end]`` that the union of ``intervals`` covers, from 0.0 to 1.0.

    :param intervals: ``(from, to)`` pairs; they may overlap, and reach outside the window.
    :param start: the window's start.
    :param end: the window's end; a window of no length is covered 0.0.
    """
    window = (end - start).total_seconds()
    if window <= 0:
        return 0.0
    clipped = ((max(low, start), min(high, end)) for low, high in intervals)
    covered = sum((high - low).total_seconds() for low, high in merge_intervals(clipped))
    return min(covered / window, 1.0)


def coverage_intervals(records: Iterable[RefreshRecord], *, margin_s: int) -> list[Interval]:
    """
    Return, for each stored token, when it was in the table with at least ``margin_s`` seconds left.

    :param records: history rows; those without ``stored_at`` or ``expires`` are skipped.
    :param margin_s: the time a token must still have left to count.
    """
    margin = timedelta(seconds=margin_s)
    return [
        (record.stored_at, record.expires - margin)
        for record in records
        if record.stored_at is not None and record.expires is not None
    ]


def percentile(values: Sequence[float], share: float) -> float | None:
    """
    Return the nearest-rank percentile of ``values``: the smallest value not exceeded by ``share`` of them.

    :param values: the observations, in any order.
    :param share: the percentile as a share, above 0 and at most 1 (0.95 for p95).
    :returns: one of the observations, or None when there are none.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be above 0 and at most 1, got {share}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(round(share * len(ordered), 9)), 1)
    return float(ordered[rank - 1])


def success_rate(outcomes: Iterable[str]) -> float | None:
    """Return the share of ``outcomes`` that are ``stored``, or None when there are none."""
    counted = list(outcomes)
    if not counted:
        return None
    return sum(outcome == STORED for outcome in counted) / len(counted)


def is_short_lifetime(
    lifetime_s: float, refresh_interval_s: float, share: float = SHORT_LIFETIME_SHARE
) -> bool:
    """
    Tell whether the next scheduled refresh would come after ``share`` of a token's lifetime.

    :param lifetime_s: the issued lifetime.
    :param refresh_interval_s: seconds between two scheduled refreshes.
    :param share: the share of the lifetime the next refresh must come within.
    """
    return refresh_interval_s > share * lifetime_s


def schedule_interval_s(timetable: Any, *, now: datetime) -> float | None:
    """
    Return the seconds between the next two scheduled runs of a timetable, or None when unknown.

    A cron timetable (``*/30 * * * *``) is read with ``croniter``, the library Airflow itself uses;
    a delta timetable gives its delta. Any other timetable (assets, several crons, none) gives None.

    :param timetable: the DAG's ``timetable``.
    :param now: the moment to count from, aware.
    """
    expression = getattr(timetable, "expression", None)
    if isinstance(expression, str):
        from croniter import croniter

        zone = getattr(timetable, "timezone", None)
        start = now.astimezone(zone) if isinstance(zone, tzinfo) else now
        try:
            runs = croniter(expression, start)
            first, second = runs.get_next(datetime), runs.get_next(datetime)
        except (ValueError, KeyError):
            return None
        return float((second - first).total_seconds())
    delta = getattr(timetable, "delta", None)
    if isinstance(delta, timedelta) and delta > timedelta(0):
        return delta.total_seconds()
    return None


def summarize(
    records: Iterable[RefreshRecord], *, start: datetime, end: datetime, margin_s: int
) -> HistorySummary:
    """
    Compute the status figures of the window ``[start, end]`` from history rows.

    The counts, the success rate and the latency percentiles take the rows attempted within the
    window; the coverage takes every row whose stored token reaches into it.

    :param records: history rows.
    :param start: the window's start.
    :param end: the window's end.
    :param margin_s: the time a token must still have left to count as covering.
    """
    rows = list(records)
    attempted = [row for row in rows if start <= row.attempted_at <= end]
    latencies = [float(row.latency_ms) for row in attempted if row.latency_ms is not None]
    return HistorySummary(
        start=start,
        end=end,
        attempts=len(attempted),
        stored=sum(row.outcome == STORED for row in attempted),
        fetched_not_stored=sum(row.outcome == FETCHED for row in attempted),
        failed=sum(row.outcome == FAILED for row in attempted),
        short_lifetime=sum(row.short_lifetime for row in attempted),
        success_rate=success_rate(row.outcome for row in attempted),
        latency_ms={name: percentile(latencies, share) for name, share in _PERCENTILES},
        coverage=coverage(coverage_intervals(rows, margin_s=margin_s), start=start, end=end),
    )


_PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


# -- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistorySettings:
    """
    The ``[parkmobile_token]`` settings of the history.

    :param table: the history table (``history_table``).
    :param retention_days: rows attempted longer ago are purged (``history_retention_days``).
    :param refresh_interval_s: seconds between two scheduled refreshes when the DAG's timetable does
        not say (``refresh_interval_s``).
    """

    table: str = DEFAULT_HISTORY_TABLE
    retention_days: int = DEFAULT_RETENTION_DAYS
    refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S

    def __post_init__(self) -> None:
        validate_table_name(self.table)
        if self.retention_days < 1:
            raise ValueError(f"history_retention_days must be at least 1, got {self.retention_days}")
        if self.refresh_interval_s <= 0:
            raise ValueError(f"refresh_interval_s must be positive, got {self.refresh_interval_s}")

    @classmethod
    def from_config(cls) -> HistorySettings:
        """Read the settings from ``[parkmobile_token]``, defaults where unset."""
        from airflow.sdk.configuration import conf

        return cls(
            table=conf.get(SECTION, "history_table", fallback=DEFAULT_HISTORY_TABLE),
            retention_days=conf.getint(SECTION, "history_retention_days", fallback=DEFAULT_RETENTION_DAYS),
            refresh_interval_s=conf.getfloat(
                SECTION, "refresh_interval_s", fallback=DEFAULT_REFRESH_INTERVAL_S
            ),
        )


# -- the table ------------------------------------------------------------------------------------


class RefreshHistory(MySqlTable):
    """
    Read and write the refresh history table.

    Writes run in autocommit mode: each is one statement, and none ever waits on another's ``COMMIT``.

    :param mysql_conn_id: the Airflow connection of the MySQL database.
    :param table: the history table; checked like the token table's name.
    :param purge_batch_size: rows purged per statement, so the purge never holds long locks.
    """

    def __init__(
        self,
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_HISTORY_TABLE,
        *,
        purge_batch_size: int = 1000,
    ) -> None:
        if purge_batch_size < 1:
            raise ValueError(f"purge_batch_size must be at least 1, got {purge_batch_size}")
        super().__init__(mysql_conn_id, table)
        self.purge_batch_size = purge_batch_size

    def record(self, record: RefreshRecord) -> int:
        """Insert one attempt and return its id."""
        statement = (
            f"INSERT INTO {self.table} (attempted_at, dag_id, run_id, try_number, outcome, "  # noqa: S608
            "http_status, error_class, latency_ms, lifetime_s, expires, fingerprint, stored_at, "
            "short_lifetime) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        params = (
            to_utc_naive(record.attempted_at),
            _cut(record.dag_id, _RUN_FIELD_WIDTH),
            _cut(record.run_id, _RUN_FIELD_WIDTH),
            record.try_number,
            record.outcome,
            record.http_status,
            _cut(record.error_class, _ERROR_CLASS_WIDTH),
            record.latency_ms,
            record.lifetime_s,
            _to_second(record.expires),
            record.fingerprint,
            _naive_or_none(record.stored_at),
            int(record.short_lifetime),
        )
        with self.connection(autocommit=True) as conn, closing(conn.cursor()) as cursor:
            cursor.execute(statement, params)
            return int(cursor.lastrowid)

    def mark_stored(self, history_id: int, *, stored_at: datetime) -> bool:
        """
        Set an attempt's outcome to ``stored``; return False when no such row exists.

        A repeated call (a retried store task) keeps the first ``stored_at``.

        :param history_id: the id :meth:`record` returned.
        :param stored_at: when the token was committed, aware.
        """
        statement = (
            f"UPDATE {self.table} SET outcome = %s, stored_at = COALESCE(stored_at, %s) "  # noqa: S608
            "WHERE id = %s"
        )
        with self.connection(autocommit=True) as conn, closing(conn.cursor()) as cursor:
            cursor.execute(statement, (STORED, to_utc_naive(stored_at), history_id))
            cursor.execute(f"SELECT 1 FROM {self.table} WHERE id = %s", (history_id,))  # noqa: S608
            return cursor.fetchone() is not None

    def purge(self, *, retention_days: int) -> int:
        """
        Delete the rows attempted more than ``retention_days`` ago, in batches; return how many went.

        :param retention_days: days of history to keep; at least 1.
        """
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {retention_days}")
        statement = (
            f"DELETE FROM {self.table} WHERE attempted_at < UTC_TIMESTAMP() - INTERVAL %s DAY "  # noqa: S608
            "ORDER BY attempted_at LIMIT %s"
        )
        purged = 0
        with self.connection(autocommit=True) as conn:
            while True:
                with closing(conn.cursor()) as cursor:
                    cursor.execute(statement, (retention_days, self.purge_batch_size))
                    batch = int(cursor.rowcount)
                purged += batch
                if batch < self.purge_batch_size:
                    return purged

    def window(self, *, start: datetime, margin_s: int) -> list[RefreshRecord]:
        """
        Return the rows the figures of a window starting at ``start`` need, oldest first.

        Those are the rows attempted since ``start`` and the stored ones whose token still had at least
        ``margin_s`` seconds left at ``start``.
        """
        statement = (
            f"SELECT {', '.join(_COLUMNS)} FROM {self.table} "  # noqa: S608
            "WHERE attempted_at >= %s OR (stored_at IS NOT NULL AND expires > %s) ORDER BY attempted_at, id"
        )
        since = to_utc_naive(start)
        return self._select(statement, (since, since + timedelta(seconds=margin_s)))

    def latest(self, outcomes: Sequence[str], *, limit: int) -> list[RefreshRecord]:
        """Return the ``limit`` newest rows with one of ``outcomes``, newest first."""
        placeholders = ", ".join(["%s"] * len(outcomes))
        statement = (
            f"SELECT {', '.join(_COLUMNS)} FROM {self.table} "  # noqa: S608
            f"WHERE outcome IN ({placeholders}) ORDER BY attempted_at DESC, id DESC LIMIT %s"
        )
        return self._select(statement, (*outcomes, limit))

    def failed_run_streak(self, dag_id: str) -> int:
        """
        Return how many runs of ``dag_id`` in a row, up to the newest, stored no token; one query.

        A run counts as failed when none of its attempts reached ``stored``: a failed fetch, or a
        fetched token that the store never committed. Only the runs after the newest attempt that
        was stored count. Runs that recorded nothing (the history was unreachable) are not seen, nor
        the temporary runs of ``airflow tasks test``.
        """
        statement = (
            "SELECT COUNT(*) FROM ("  # noqa: S608
            "SELECT MIN(attempted_at) AS started, MAX(outcome = %s) AS stored "
            f"FROM {self.table} WHERE dag_id = %s AND run_id NOT LIKE %s GROUP BY run_id"
            ") AS runs WHERE runs.stored = 0 AND runs.started > COALESCE("
            f"(SELECT MAX(attempted_at) FROM {self.table} WHERE dag_id = %s AND outcome = %s), "
            "'1000-01-01')"
        )
        temporary = TEMPORARY_RUN_PREFIX.replace("_", "\\_") + "%"
        with self.connection() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(statement, (STORED, dag_id, temporary, dag_id, STORED))
            (count,) = cursor.fetchone()
        return int(count)

    def apply_schema(self) -> None:
        """Create the history table (and its index) when it does not exist yet."""
        with self.connection() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(render_history_ddl(self.table))
            conn.commit()

    def _select(self, statement: str, params: tuple[Any, ...]) -> list[RefreshRecord]:
        with self.connection() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
        return [_record_of(row) for row in rows]


def render_history_ddl(table: str = DEFAULT_HISTORY_TABLE) -> str:
    """Return the shipped DDL of the history table, under the given (checked) name."""
    return render_ddl(table, resource=HISTORY_DDL_RESOURCE, default=DEFAULT_HISTORY_TABLE)


def _record_of(row: Sequence[Any]) -> RefreshRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in ("attempted_at", "expires", "stored_at"):
        if values[name] is not None:
            values[name] = values[name].replace(tzinfo=UTC)
    values["short_lifetime"] = bool(values["short_lifetime"])
    return RefreshRecord(**values)


def _cut(value: str | None, width: int) -> str | None:
    return value[:width] if value is not None else None


def _naive_or_none(moment: datetime | None) -> datetime | None:
    return to_utc_naive(moment) if moment is not None else None


def _to_second(moment: datetime | None) -> datetime | None:
    # Floored like the token table's expiry: the history never claims more lifetime than was issued.
    return to_utc_naive(moment).replace(microsecond=0) if moment is not None else None
