"""The token page's model and drawing, computed from plain rows: no database, no browser."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from parkmobile_token.history import FAILED, FETCHED, STORED, RefreshRecord
from parkmobile_token.ui.asgi import LazyApp
from parkmobile_token.ui.health import (
    Snapshot,
    TokenRow,
    build_health,
    current_token,
    error_classes,
    gaps,
    to_json,
    validity_windows,
)
from parkmobile_token.ui.timeline import MIN_GAP_WIDTH, WIDTH, build_timeline, human_duration, ticks
from tests.conftest import REPO

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MARGIN_S = 60


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def stored(hours_ago: float, fingerprint: str, lifetime_h: float = 1.0, **extra: Any) -> RefreshRecord:
    """A history row of a token fetched ``hours_ago`` and stored two seconds later."""
    return RefreshRecord(
        attempted_at=at(hours_ago),
        outcome=STORED,
        latency_ms=extra.pop("latency_ms", 200),
        lifetime_s=int(lifetime_h * 3600),
        expires=at(hours_ago - lifetime_h),
        fingerprint=fingerprint,
        stored_at=at(hours_ago) + timedelta(seconds=2),
        **extra,
    )


def failed(hours_ago: float, error_class: str | None = "http_503", status: int | None = 503) -> RefreshRecord:
    return RefreshRecord(
        attempted_at=at(hours_ago),
        outcome=FAILED,
        http_status=status,
        error_class=error_class,
        latency_ms=900,
    )


# -- validity windows -----------------------------------------------------------------------------


def test_a_token_known_to_both_tables_has_one_window_from_its_earliest_start() -> None:
    tokens = [TokenRow("aaaaaaaaaaaa", at(2), at(1))]
    records = [stored(2.0, "aaaaaaaaaaaa"), stored(1.5, "bbbbbbbbbbbb")]

    windows = validity_windows(tokens, records, margin_s=MARGIN_S)

    assert [(w.fingerprint, w.sources) for w in windows] == [
        ("aaaaaaaaaaaa", ("history", "tokens")),
        ("bbbbbbbbbbbb", ("history",)),
    ]
    assert windows[0].start == at(2)
    assert windows[0].end == at(1) - timedelta(seconds=MARGIN_S)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(
            RefreshRecord(attempted_at=at(1), outcome=FETCHED, expires=at(0)), id="fetched-never-stored"
        ),
        pytest.param(failed(1), id="failed"),
        pytest.param(stored(1, "cccccccccccc", lifetime_h=50 / 3600), id="stored-within-the-margin"),
    ],
)
def test_an_attempt_without_a_stored_token_that_outlives_the_margin_has_no_window(
    record: RefreshRecord,
) -> None:
    assert validity_windows([], [record], margin_s=MARGIN_S) == []


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        pytest.param([], [(at(24), at(0))], id="nothing-covered"),
        pytest.param([(at(30), at(-1))], [], id="all-covered"),
        pytest.param([(at(24), at(12)), (at(12), at(0))], [], id="back-to-back"),
        pytest.param([(at(24), at(12.5)), (at(12), at(0))], [(at(12.5), at(12))], id="one-gap"),
        pytest.param([(at(20), at(10))], [(at(24), at(20)), (at(10), at(0))], id="gaps-at-both-ends"),
        pytest.param([(at(20), at(10)), (at(15), at(5))], [(at(24), at(20)), (at(5), at(0))], id="overlap"),
    ],
)
def test_gaps_are_the_stretches_no_window_covers(
    intervals: list[tuple[datetime, datetime]], expected: list[tuple[datetime, datetime]]
) -> None:
    assert gaps(intervals, start=at(24), end=at(0)) == expected


def test_the_current_token_is_the_valid_one_that_expires_last() -> None:
    tokens = [
        TokenRow("old000000000", at(1), at(-0.25)),
        TokenRow("new000000000", at(0.5), at(-0.5)),
        TokenRow("dying0000000", at(1), NOW + timedelta(seconds=MARGIN_S - 1)),
    ]
    current = current_token(tokens, now=NOW, margin_s=MARGIN_S)
    assert current is not None
    assert current.fingerprint == "new000000000"
    assert current.valid_until == at(-0.5) - timedelta(seconds=MARGIN_S)
    assert current.seconds_left == 1800 - MARGIN_S


def test_a_token_within_the_margin_of_its_expiry_is_not_current() -> None:
    tokens = [TokenRow("dying0000000", at(1), NOW + timedelta(seconds=MARGIN_S))]
    assert current_token(tokens, now=NOW, margin_s=MARGIN_S) is None


def test_errors_are_counted_by_class_latest_class_first() -> None:
    records = [
        failed(200),  # more than 7 days ago: not counted
        failed(30),
        failed(3, "invalid_client", 401),
        failed(2),
        failed(1, error_class=None, status=502),
        failed(0.5, error_class=None, status=None),
        stored(0.2, "aaaaaaaaaaaa"),
    ]
    summaries = error_classes(records, now=NOW)
    assert [(s.error_class, s.count_24h, s.count_7d, s.last_http_status) for s in summaries] == [
        ("unknown", 1, 1, None),
        ("http_502", 1, 1, 502),
        ("http_503", 1, 2, 503),
        ("invalid_client", 1, 1, 401),
    ]


# -- the whole model and its JSON -----------------------------------------------------------------


def day_with_a_gap() -> Snapshot:
    """A refresh every 30 minutes for a day; from 8 to 5 hours ago every request failed."""
    records = []
    for step in range(52, 0, -1):
        hours_ago = step / 2
        if 5 <= hours_ago <= 8:
            records.append(failed(hours_ago))
        else:
            records.append(stored(hours_ago, f"{step:012x}", latency_ms=100 + step))
    tokens = [TokenRow(f"{1:012x}", at(0.5) + timedelta(seconds=2), at(-0.5))]
    return Snapshot(NOW, tokens, records, last_failures=[r for r in reversed(records) if r.outcome == FAILED])


def test_the_model_of_a_day_with_a_gap() -> None:
    health = build_health(day_with_a_gap(), margin_s=MARGIN_S)
    day = health.periods[0]

    assert health.current is not None
    assert health.current.fingerprint == f"{1:012x}"
    # The last token before the failures (8.5 h ago) is valid until 7.5 h ago less the margin; the
    # first one after them is stored 4.5 h ago (plus two seconds).
    gap_start = at(7.5) - timedelta(seconds=MARGIN_S)
    gap_end = at(4.5) + timedelta(seconds=2)
    assert day.gaps == [(gap_start, gap_end)]
    assert day.coverage == pytest.approx(1 - (gap_end - gap_start).total_seconds() / 86400)
    assert day.summary.attempts == 48
    assert day.summary.failed == 7
    assert day.summary.success_rate == pytest.approx(41 / 48)
    assert [(e.error_class, e.count_24h) for e in health.error_classes] == [("http_503", 7)]


def test_the_json_says_the_same_without_a_token() -> None:
    document = to_json(build_health(day_with_a_gap(), margin_s=MARGIN_S))
    day = document["periods"]["24h"]

    assert document["valid"] is True
    assert document["current"]["valid_until"] == "2026-12-03T12:29:00Z"
    assert document["current"]["seconds_left"] == 1740
    assert day["gaps"] == [
        {"start": "2026-12-03T04:29:00Z", "end": "2026-12-03T07:30:02Z", "seconds": 10862.0}
    ]
    # 41 stored requests took 101 to 148 ms, the 7 failed ones 900 ms.
    assert day["latency_ms"] == {"p50": 131.0, "p95": 900.0, "p99": 900.0}
    assert {r["outcome"] for r in day["refreshes"]} == {STORED, FAILED}
    assert json.loads(json.dumps(document)) == document
    assert "token" not in {key for record in day["refreshes"] for key in record}


# -- the drawing ----------------------------------------------------------------------------------


def test_the_timeline_draws_the_gap_where_it_was() -> None:
    health = build_health(day_with_a_gap(), margin_s=MARGIN_S)
    timeline = build_timeline(health.periods[0])

    [gap] = timeline.gaps
    assert gap.x == pytest.approx((24 - 7.5 - MARGIN_S / 3600) / 24 * WIDTH, abs=0.01)
    assert gap.width == pytest.approx(10862 / 86400 * WIDTH, abs=0.02)
    assert gap.start == "2026-12-03T04:29:00Z"
    assert "3 h 01 min" in gap.title
    assert len(timeline.marks) == 48
    assert {mark.outcome for mark in timeline.marks} == {STORED, FAILED}
    # Tokens live an hour and come every 30 minutes: two lanes hold them.
    assert {bar.y for bar in timeline.bars} == {6.0, 24.0}


def test_a_gap_of_seconds_in_a_week_is_still_drawn() -> None:
    records = [
        stored(30, "aaaaaaaaaaaa", lifetime_h=20),
        stored(10.0 - 5 / 3600, "bbbbbbbbbbbb", lifetime_h=11),
    ]
    week = build_health(Snapshot(NOW, [], records), margin_s=MARGIN_S).periods[1]
    short = [gap for gap in build_timeline(week).gaps if gap.seconds < 600]
    assert len(short) == 1
    assert short[0].width == MIN_GAP_WIDTH


@pytest.mark.parametrize(
    ("start", "end", "labels"),
    [
        pytest.param(
            at(24), at(0), ["15:00", "18:00", "21:00", "00:00", "03:00", "06:00", "09:00"], id="day"
        ),
        pytest.param(
            NOW - timedelta(days=7),
            NOW,
            [
                "Fri 27 Nov",
                "Sat 28 Nov",
                "Sun 29 Nov",
                "Mon 30 Nov",
                "Tue 01 Dec",
                "Wed 02 Dec",
                "Thu 03 Dec",
            ],
            id="week",
        ),
    ],
)
def test_axis_labels_fall_on_whole_hours_or_midnights_inside_the_period(
    start: datetime, end: datetime, labels: list[str]
) -> None:
    assert [label for _, label in ticks(start, end)] == labels


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0 s"), (59.6, "60 s"), (119, "119 s"), (120, "2 min"), (7199, "119 min"), (7200, "2 h 00 min"),
     (10862, "3 h 01 min"), (172_800, "2 d 0 h"), (200_000, "2 d 7 h")],
)  # fmt: skip
def test_durations_read_like_a_person_says_them(seconds: float, said: str) -> None:
    assert human_duration(seconds) == said


# -- the plugin and its lazy app ------------------------------------------------------------------


def test_importing_the_plugin_module_loads_no_web_framework_and_no_database_driver(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import airflow.configuration, airflow.plugins_manager
        before = set(sys.modules)
        import parkmobile_token_ui
        plugin = parkmobile_token_ui.ParkMobileTokenUIPlugin
        apps = [{**app, "app": type(app["app"]).__name__} for app in plugin.fastapi_apps]
        new = sorted(set(sys.modules) - before)
        print(json.dumps({"new": new, "views": plugin.external_views, "apps": apps}))
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path),
        "PYTHONPATH": str(REPO / "plugins"),
        # Nothing answers here: an import that reached for a database would fail or hang.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing/airflow.db",
        "AIRFLOW_CONN_PARKMOBILE_DB": '{"conn_type": "mysql", "host": "127.0.0.1", "port": 9}',
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])

    assert found["new"] == [
        "parkmobile_token",
        "parkmobile_token.ui",
        "parkmobile_token.ui.asgi",
        "parkmobile_token.ui.plugin",
        "parkmobile_token_ui",
    ]
    assert found["apps"] == [
        {"app": "LazyApp", "url_prefix": "/parkmobile-token", "name": "ParkMobile token"}
    ]
    assert found["views"] == [
        {
            "name": "ParkMobile token",
            "href": "/parkmobile-token/",
            "url_route": "parkmobile-token",
            "destination": "nav",
            "category": "browse",
            "icon": "/parkmobile-token/static/icon.svg",
        }
    ]


def test_the_lazy_app_builds_the_app_once_on_its_first_request() -> None:
    calls: list[str] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])

    built: list[int] = []

    def factory() -> Any:
        built.append(1)
        return endpoint

    sys.modules[__name__].factory_for_test = factory  # type: ignore[attr-defined]
    app = LazyApp(f"{__name__}:factory_for_test")
    assert built == []

    async def two_requests() -> None:
        await app({"type": "http", "path": "/a"}, None, None)
        await app({"type": "http", "path": "/b"}, None, None)

    asyncio.run(two_requests())
    assert built == [1]
    assert calls == ["/a", "/b"]


def test_the_lazy_app_refuses_a_factory_without_a_function() -> None:
    with pytest.raises(ValueError, match="module:function"):
        LazyApp("parkmobile_token.ui.app")
