"""Where each validity window, gap and refresh attempt of a period is drawn in the page's SVG. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from parkmobile_token.history import FAILED, FETCHED, STORED
from parkmobile_token.ui.health import error_label, iso

if TYPE_CHECKING:
    from parkmobile_token.history import RefreshRecord
    from parkmobile_token.ui.health import PeriodHealth, ValidityWindow

#: The drawing's width in SVG units; the page scales it to the screen.
WIDTH = 1000.0
LANE_HEIGHT = 14.0
LANE_SPACING = 4.0
#: Overlapping windows are stacked in up to this many lanes.
MAX_LANES = 3
#: A gap is drawn at least this wide, so that a gap of seconds in a week still shows.
MIN_GAP_WIDTH = 2.0
TOP = 6.0
MARK_ROW = 22.0
AXIS_ROW = 22.0

OUTCOME_LABELS = {STORED: "stored", FETCHED: "fetched, not stored", FAILED: "failed"}


@dataclass(frozen=True)
class Bar:
    """A token's validity window."""

    x: float
    width: float
    y: float
    fingerprint: str
    start: str
    end: str
    title: str


@dataclass(frozen=True)
class GapRect:
    """A stretch with no valid token."""

    x: float
    width: float
    start: str
    end: str
    seconds: float
    title: str


@dataclass(frozen=True)
class Mark:
    """A refresh attempt."""

    x: float
    outcome: str
    at: str
    title: str


@dataclass(frozen=True)
class Tick:
    """A labelled time on the axis."""

    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    """One period's drawing: ``height`` and the rows' positions in SVG units."""

    key: str
    heading: str
    width: float
    height: float
    lanes_bottom: float
    mark_y: float
    axis_y: float
    bars: list[Bar]
    gaps: list[GapRect]
    marks: list[Mark]
    ticks: list[Tick]


def build_timeline(period: PeriodHealth) -> Timeline:
    """Lay out one period: windows in stacked lanes, gaps across them, attempts on a row below."""
    span = (period.end - period.start).total_seconds()

    def x_of(moment: datetime) -> float:
        offset = (moment - period.start).total_seconds() / span
        return round(min(max(offset, 0.0), 1.0) * WIDTH, 2)

    lanes = assign_lanes(period.windows)
    lane_count = max(lanes, default=0) + 1
    bars = [
        Bar(
            x=x_of(window.start),
            width=max(x_of(window.end) - x_of(window.start), 0.5),
            y=TOP + lane * (LANE_HEIGHT + LANE_SPACING),
            fingerprint=window.fingerprint,
            start=iso(window.start) or "",
            end=iso(window.end) or "",
            title=(
                f"Token {window.fingerprint}: valid {_hm(window.start)} to {_hm(window.end)} "
                f"(expires {_hm(window.expires)}; from {' and '.join(window.sources)})"
            ),
        )
        for window, lane in zip(period.windows, lanes, strict=True)
    ]
    gap_rects = []
    for low, high in period.gaps:
        x, seconds = x_of(low), (high - low).total_seconds()
        width = max(x_of(high) - x, MIN_GAP_WIDTH)
        gap_rects.append(
            GapRect(
                x=min(x, WIDTH - width),
                width=width,
                start=iso(low) or "",
                end=iso(high) or "",
                seconds=round(seconds, 3),
                title=f"No valid token from {_hm(low)} to {_hm(high)} ({human_duration(seconds)})",
            )
        )
    lanes_bottom = TOP + lane_count * (LANE_HEIGHT + LANE_SPACING)
    return Timeline(
        key=period.key,
        heading=period.heading,
        width=WIDTH,
        height=lanes_bottom + MARK_ROW + AXIS_ROW,
        lanes_bottom=lanes_bottom,
        mark_y=lanes_bottom + MARK_ROW / 2,
        axis_y=lanes_bottom + MARK_ROW,
        bars=bars,
        gaps=gap_rects,
        marks=[_mark(record, x_of(record.attempted_at)) for record in period.records],
        ticks=[Tick(x_of(moment), label) for moment, label in ticks(period.start, period.end)],
    )


def assign_lanes(windows: list[ValidityWindow]) -> list[int]:
    """Give each window (sorted by start) the first lane free at its start; the last lane takes the rest."""
    lane_ends: list[datetime] = []
    lanes = []
    for window in windows:
        lane = next((i for i, end in enumerate(lane_ends) if end <= window.start), len(lane_ends))
        lane = min(lane, MAX_LANES - 1)
        if lane == len(lane_ends):
            lane_ends.append(window.end)
        else:
            lane_ends[lane] = max(lane_ends[lane], window.end)
        lanes.append(lane)
    return lanes


def ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Return the axis labels inside the period: every 3 hours up to a day long, else every UTC midnight."""
    step = timedelta(hours=3) if end - start <= timedelta(days=1) else timedelta(days=1)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    moment = epoch + step * ((start - epoch) // step + 1)  # the first multiple of step after start
    found = []
    while moment < end:
        label = moment.strftime("%H:%M") if step < timedelta(days=1) else moment.strftime("%a %d %b")
        found.append((moment, label))
        moment += step
    return found


def human_duration(seconds: float) -> str:
    """Say a duration the way a person reads it: ``45 s``, ``52 min``, ``3 h 05 min``, ``2 d 4 h``."""
    seconds = max(round(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _mark(record: RefreshRecord, x: float) -> Mark:
    parts = [f"{_hm(record.attempted_at)} {OUTCOME_LABELS.get(record.outcome, record.outcome)}"]
    if record.outcome == FAILED:
        parts.append(error_label(record) + (f" (HTTP {record.http_status})" if record.http_status else ""))
    elif record.fingerprint:
        parts.append(f"token {record.fingerprint}")
    if record.latency_ms is not None:
        parts.append(f"{record.latency_ms} ms")
    if record.run_id:
        parts.append(f"run {record.run_id}" + (f", try {record.try_number}" if record.try_number else ""))
    return Mark(x=x, outcome=record.outcome, at=iso(record.attempted_at) or "", title="; ".join(parts))


def _hm(moment: datetime) -> str:
    """A time as ``Mon 30 Nov 16:30:00Z``, in UTC."""
    return moment.astimezone(UTC).strftime("%a %d %b %H:%M:%SZ")
