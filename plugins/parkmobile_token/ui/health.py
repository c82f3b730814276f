"""
What the page and its JSON show, computed from what the two tables hold. Pure: no database, no clock.

The figures of each period (success rate, latency percentiles, counts) are the refresh history's own
(:func:`parkmobile_token.history.summarize`), as the ``status`` command prints them. The coverage and
the gaps also count the token table's rows, so a token stored before the history existed, or whose
history row is missing, still counts as valid while it was in the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parkmobile_token.clock import isoformat_z
from parkmobile_token.history import FAILED, HistorySummary, coverage, merge_intervals, summarize
from parkmobile_token.ui import DAG_ID

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from parkmobile_token.history import Interval, RefreshRecord

#: The periods the page draws: key, length, heading.
PERIODS: tuple[tuple[str, timedelta, str], ...] = (
    ("24h", timedelta(hours=24), "Last 24 hours"),
    ("7d", timedelta(days=7), "Last 7 days"),
)
#: How many of the newest failed attempts the page lists.
LAST_ERRORS = 10


@dataclass(frozen=True)
class TokenRow:
    """
    One row of the token table, without the token.

    :param fingerprint: the first 12 hex digits of the token's SHA-256 (its ``token_sha256`` column).
    :param created_at: when the row was stored, aware UTC.
    :param expires: when the token expires, aware UTC.
    """

    fingerprint: str
    created_at: datetime
    expires: datetime


@dataclass(frozen=True)
class Snapshot:
    """
    What the two tables held at one moment.

    :param now: the moment, aware UTC; every period ends then.
    :param tokens: the token table's rows that had not expired before the longest period.
    :param records: the history rows the longest period needs (``RefreshHistory.window``).
    :param last_failures: the newest failed attempts, newest first, however old.
    :param history_available: False when the history table does not exist (yet).
    """

    now: datetime
    tokens: Sequence[TokenRow]
    records: Sequence[RefreshRecord] = ()
    last_failures: Sequence[RefreshRecord] = ()
    history_available: bool = True


@dataclass(frozen=True)
class ValidityWindow:
    """
    When one token could be handed to clients: from its storing until ``margin`` before its expiry.

    :param fingerprint: the token's fingerprint.
    :param start: when it was stored.
    :param end: its expiry less the margin, when the clients' query stops returning it.
    :param expires: its expiry.
    :param sources: where it is known from: ``history``, ``tokens`` (the token table), or both.
    """

    fingerprint: str
    start: datetime
    end: datetime
    expires: datetime
    sources: tuple[str, ...]


@dataclass(frozen=True)
class CurrentToken:
    """The token clients get now: the valid one that expires last."""

    fingerprint: str
    stored_at: datetime
    expires: datetime
    valid_until: datetime
    seconds_left: float


@dataclass(frozen=True)
class PeriodHealth:
    """
    The figures and the drawing material of one period ``[start, end]``.

    :param coverage: the share of the period with a valid token, from the windows.
    :param gaps: the stretches of the period with no valid token.
    :param windows: the validity windows that reach into the period.
    :param records: the attempts made within the period, oldest first.
    :param summary: the history's figures of the period.
    """

    key: str
    heading: str
    start: datetime
    end: datetime
    coverage: float
    gaps: list[Interval]
    windows: list[ValidityWindow]
    records: list[RefreshRecord]
    summary: HistorySummary

    @property
    def gap_seconds(self) -> float:
        """How long the period went without a valid token."""
        return sum((high - low).total_seconds() for low, high in self.gaps)


@dataclass(frozen=True)
class ErrorClass:
    """How often one class of error occurred, and when last."""

    error_class: str
    count_24h: int
    count_7d: int
    last_at: datetime
    last_http_status: int | None


@dataclass(frozen=True)
class TokenHealth:
    """Everything the page and the JSON show."""

    now: datetime
    margin_s: int
    current: CurrentToken | None
    periods: list[PeriodHealth]
    error_classes: list[ErrorClass]
    last_errors: list[RefreshRecord]
    history_available: bool = True
    notes: list[str] = field(default_factory=list)


def validity_windows(
    tokens: Iterable[TokenRow], records: Iterable[RefreshRecord], *, margin_s: int
) -> list[ValidityWindow]:
    """
    Return one window per token, from token rows and from history rows with ``stored_at`` and ``expires``.

    A token known to both gets one window: the earliest start, the latest expiry. A token stored
    within the margin of its expiry was never valid and has no window.
    """
    found: dict[str, tuple[datetime, datetime, frozenset[str]]] = {}

    def add(fingerprint: str, start: datetime, expires: datetime, source: str) -> None:
        if fingerprint in found:
            old_start, old_expires, sources = found[fingerprint]
            start, expires = min(old_start, start), max(old_expires, expires)
            found[fingerprint] = (start, expires, sources | {source})
        else:
            found[fingerprint] = (start, expires, frozenset({source}))

    for token in tokens:
        add(token.fingerprint, token.created_at, token.expires, "tokens")
    for record in records:
        if record.stored_at is not None and record.expires is not None and record.fingerprint:
            add(record.fingerprint, record.stored_at, record.expires, "history")
    margin = timedelta(seconds=margin_s)
    windows = [
        ValidityWindow(fingerprint, start, expires - margin, expires, tuple(sorted(sources)))
        for fingerprint, (start, expires, sources) in found.items()
        if expires - margin > start
    ]
    return sorted(windows, key=lambda window: (window.start, window.end))


def gaps(intervals: Iterable[Interval], *, start: datetime, end: datetime) -> list[Interval]:
    """Return the stretches of ``[start, end]`` that no interval covers, oldest first."""
    found: list[Interval] = []
    cursor = start
    for low, high in merge_intervals((max(low, start), min(high, end)) for low, high in intervals):
        if low > cursor:
            found.append((cursor, low))
        cursor = max(cursor, high)
    if cursor < end:
        found.append((cursor, end))
    return found


def current_token(tokens: Iterable[TokenRow], *, now: datetime, margin_s: int) -> CurrentToken | None:
    """Return the token the clients' query returns now (valid beyond the margin, expiring last)."""
    margin = timedelta(seconds=margin_s)
    valid = [token for token in tokens if token.expires - margin > now]
    if not valid:
        return None
    newest = max(valid, key=lambda token: token.expires)
    valid_until = newest.expires - margin
    return CurrentToken(
        newest.fingerprint,
        newest.created_at,
        newest.expires,
        valid_until,
        (valid_until - now).total_seconds(),
    )


def error_label(record: RefreshRecord) -> str:
    """Name the class of a failed attempt: its error class, else its HTTP status, else ``unknown``."""
    if record.error_class:
        return record.error_class
    return f"http_{record.http_status}" if record.http_status else "unknown"


def error_classes(records: Iterable[RefreshRecord], *, now: datetime) -> list[ErrorClass]:
    """Count the failed attempts of the last 24 hours and 7 days by class; the latest class first."""
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    failures = sorted(
        (r for r in records if r.outcome == FAILED and week <= r.attempted_at <= now),
        key=lambda r: r.attempted_at,
    )
    by_class: dict[str, list[RefreshRecord]] = {}
    for record in failures:
        by_class.setdefault(error_label(record), []).append(record)
    summaries = [
        ErrorClass(
            error_class=label,
            count_24h=sum(1 for r in found if r.attempted_at >= day),
            count_7d=len(found),
            last_at=found[-1].attempted_at,
            last_http_status=found[-1].http_status,
        )
        for label, found in by_class.items()
    ]
    return sorted(summaries, key=lambda summary: summary.last_at, reverse=True)


def build_health(snapshot: Snapshot, *, margin_s: int) -> TokenHealth:
    """Compute everything the page shows from one snapshot of the tables."""
    now = snapshot.now
    windows = validity_windows(snapshot.tokens, snapshot.records, margin_s=margin_s)
    intervals = [(window.start, window.end) for window in windows]
    periods = []
    for key, length, heading in PERIODS:
        start = now - length
        periods.append(
            PeriodHealth(
                key=key,
                heading=heading,
                start=start,
                end=now,
                coverage=coverage(intervals, start=start, end=now),
                gaps=gaps(intervals, start=start, end=now),
                windows=[w for w in windows if w.end > start and w.start < now],
                records=[r for r in snapshot.records if start <= r.attempted_at <= now],
                summary=summarize(snapshot.records, start=start, end=now, margin_s=margin_s),
            )
        )
    notes = []
    if not snapshot.history_available:
        notes.append(
            "The refresh history table does not exist yet: windows come from the token table alone, "
            "and there are no attempts to count. `python -m parkmobile_token init-db` creates it."
        )
    return TokenHealth(
        now=now,
        margin_s=margin_s,
        current=current_token(snapshot.tokens, now=now, margin_s=margin_s),
        periods=periods,
        error_classes=error_classes(snapshot.records, now=now),
        last_errors=list(snapshot.last_failures[:LAST_ERRORS]),
        history_available=snapshot.history_available,
        notes=notes,
    )


# -- JSON -----------------------------------------------------------------------------------------


def to_json(health: TokenHealth) -> dict[str, Any]:
    """Return the figures as JSON-ready values: times as ISO 8601 UTC strings, never a token."""
    current = health.current
    return {
        "dag_id": DAG_ID,
        "generated_at": iso(health.now),
        "margin_s": health.margin_s,
        "history_available": health.history_available,
        "valid": current is not None,
        "current": None
        if current is None
        else {
            "fingerprint": current.fingerprint,
            "stored_at": iso(current.stored_at),
            "expires": iso(current.expires),
            "valid_until": iso(current.valid_until),
            "seconds_left": round(current.seconds_left, 3),
        },
        "periods": {period.key: _period_json(period) for period in health.periods},
        "errors_by_class": [
            {
                "error_class": summary.error_class,
                "count_24h": summary.count_24h,
                "count_7d": summary.count_7d,
                "last_at": iso(summary.last_at),
                "last_http_status": summary.last_http_status,
            }
            for summary in health.error_classes
        ],
        "last_errors": [_record_json(record) for record in health.last_errors],
        "notes": health.notes,
    }


def _period_json(period: PeriodHealth) -> dict[str, Any]:
    summary = period.summary
    return {
        "start": iso(period.start),
        "end": iso(period.end),
        "coverage": round(period.coverage, 6),
        "gap_seconds": round(period.gap_seconds, 3),
        "gaps": [
            {"start": iso(low), "end": iso(high), "seconds": round((high - low).total_seconds(), 3)}
            for low, high in period.gaps
        ],
        **summary.attempt_figures(),
        "windows": [
            {
                "fingerprint": window.fingerprint,
                "start": iso(window.start),
                "end": iso(window.end),
                "expires": iso(window.expires),
                "sources": list(window.sources),
            }
            for window in period.windows
        ],
        "refreshes": [_record_json(record) for record in period.records],
    }


def _record_json(record: RefreshRecord) -> dict[str, Any]:
    return {
        "attempted_at": iso(record.attempted_at),
        "outcome": record.outcome,
        "run_id": record.run_id,
        "try_number": record.try_number,
        "http_status": record.http_status,
        "error_class": error_label(record) if record.outcome == FAILED else record.error_class,
        "latency_ms": record.latency_ms,
        "fingerprint": record.fingerprint,
        "expires": iso(record.expires),
        "stored_at": iso(record.stored_at),
    }


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the millisecond when there is one."""
    if moment is None:
        return None
    if moment.microsecond:
        return isoformat_z(moment)[:-1] + f".{moment.microsecond // 1000:03d}Z"
    return isoformat_z(moment)
