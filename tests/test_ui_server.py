"""
The token page served by a real ``airflow api-server``: login, Airflow's access rules, a real browser.

The api-server runs on the loopback with the simple auth manager and three users: ``admin`` (role
ADMIN), ``viewer`` (role VIEWER, which may read every DAG) and ``outsider``, who has no role, so the
simple auth manager lets them read nothing. The page reads the token tables through its own connection
(``[parkmobile_token] page_conn_id``), an account that may not select the token column. Headless
Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) opens the page alone and inside
Airflow's own UI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.conftest import (
    AIRFLOW_BIN,
    ARTIFACTS,
    HISTORY_TABLE,
    REPO,
    SECRETS_IN_PLAY,
    _airflow_base_env,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page

    from tests.conftest import ReaderAccount, TokenDatabase

pytestmark = pytest.mark.airflow

USERS = "admin:admin,viewer:viewer,outsider:"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
PAGE = "/parkmobile-token/"
STATUS = "/parkmobile-token/api/status"
MARGIN = timedelta(seconds=60)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Set to 1 to write the screenshot to docs/token-page.png as well (it is written there when missing).
UPDATE_DOCS = os.environ.get("PARKMOBILE_UPDATE_SCREENSHOT") == "1"


@dataclass
class ApiServer:
    """A running api-server and how to log in to it."""

    base_url: str
    passwords: dict[str, str]
    jwt_secret: str
    log_path: Path
    jwts: dict[str, str] = field(default_factory=dict)

    def jwt(self, user: str) -> str:
        """Log in as ``user`` through the simple auth manager's token endpoint."""
        if user not in self.jwts:
            response = requests.post(
                f"{self.base_url}/auth/token",
                json={"username": user, "password": self.passwords[user]},
                timeout=30,
            )
            assert response.status_code == 201, response.text
            self.jwts[user] = response.json()["access_token"]
        return self.jwts[user]

    def get(
        self, path: str, *, bearer: str | None = None, cookie: str | None = None, html: bool = False
    ) -> requests.Response:
        headers = {"Accept": "text/html" if html else "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        cookies = {"_token": cookie} if cookie is not None else None
        return requests.get(f"{self.base_url}{path}", headers=headers, cookies=cookies, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(
    airflow_home: Path,
    fernet_key: str,
    token_db: TokenDatabase,
    token_reader_account: ReaderAccount,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiServer]:
    port = free_port()
    passwords = {user: secrets.token_urlsafe(12) for user in ("admin", "viewer", "outsider")}
    passwords_file = tmp_path_factory.mktemp("simple-auth") / "passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    jwt_secret = secrets.token_urlsafe(64)  # HS512 wants a key of 64 bytes or more
    env = _airflow_base_env(airflow_home, fernet_key)
    env.update(
        {
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            # The DAG's connection may write; the page reads through one that cannot select a token.
            "AIRFLOW_CONN_PARKMOBILE_DB": token_db.connection_json(),
            "AIRFLOW__PARKMOBILE_TOKEN__PAGE_CONN_ID": "parkmobile_page",
            "AIRFLOW_CONN_PARKMOBILE_PAGE": token_reader_account.connection_json(token_db),
        }
    )
    log_path = ARTIFACTS / "api-server" / "api-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}"
    args = [str(AIRFLOW_BIN), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_healthy(base_url, process, log_path)
        yield ApiServer(base_url, passwords, jwt_secret, log_path)
    finally:
        stop(process)


def wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"airflow api-server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}"
            )
        try:
            if requests.get(f"{base_url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"airflow api-server did not answer within 180 s:\n{log_path.read_text()[-4000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the api-server and the workers it started: its own process group."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


# -- a week of history with two outages -----------------------------------------------------------


@dataclass
class Week:
    """What :func:`week_with_outages` wrote, and where the last day's gap must be."""

    now: datetime
    current_fingerprint: str
    tokens: list[str]
    gap_start: datetime
    gap_end: datetime
    failures_24h: dict[str, int]
    failures_7d: dict[str, int]
    attempts_24h: int


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def week_with_outages(db: TokenDatabase) -> Week:
    """
    Write 7 days and 2 hours of refreshes every 30 minutes, as the DAG records them.

    Each token lives an hour. From 8 to 5 hours ago every request failed (HTTP 503 and timeouts, each
    retried once): the last day's gap. Three days ago, 2 hours of ``invalid_client``: a second gap.
    Every 37th run fails once and its retry succeeds, which leaves no gap.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    rows: list[dict[str, Any]] = []
    stored: list[dict[str, Any]] = []
    for step in range(7 * 48 + 4, -1, -1):
        attempted = now - timedelta(minutes=10 + 30 * step)
        run_id = f"scheduled__{naive(attempted):%Y-%m-%dT%H:%M:%S}"
        hours_ago = (now - attempted).total_seconds() / 3600
        if 5 <= hours_ago <= 8:
            for try_number, error in ((1, ("http_503", 503)), (2, ("ConnectTimeout", None))):
                rows.append(
                    failure(attempted + timedelta(minutes=try_number - 1), run_id, try_number, *error)
                )
            continue
        if 72 <= hours_ago <= 74:
            rows.append(failure(attempted, run_id, 1, "invalid_client", 401))
            continue
        try_number = 1
        if step % 37 == 0 and step > 0:
            rows.append(failure(attempted, run_id, 1, "http_502", 502))
            attempted, try_number = attempted + timedelta(minutes=1), 2
        latency = 180 + (step * 53) % 240
        token = f"pm-ui-e2e-{secrets.token_urlsafe(24)}"
        row = {
            "attempted_at": naive(attempted),
            "dag_id": "update_parkmobile_token",
            "run_id": run_id,
            "try_number": try_number,
            "outcome": "stored",
            "latency_ms": latency,
            "lifetime_s": 3600,
            "expires": naive(attempted + timedelta(hours=1)),
            "fingerprint": hashlib.sha256(token.encode()).hexdigest()[:12],
            "stored_at": naive(attempted + timedelta(milliseconds=latency + 900)),
        }
        rows.append(row)
        stored.append({**row, "token": token})
    insert_rows(db, HISTORY_TABLE, rows)
    # The cleanup has left the tokens that have not expired: the two newest.
    tokens = [
        {"token": row["token"], "token_sha256": hashlib.sha256(row["token"].encode()).hexdigest(),
         "expires": row["expires"], "created_at": row["stored_at"].replace(microsecond=0)}
        for row in stored[-2:]
    ]  # fmt: skip
    insert_rows(db, db.table, tokens)
    SECRETS_IN_PLAY.update(row["token"] for row in stored)

    def aware(moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC)

    before = [row for row in stored if aware(row["attempted_at"]) < now - timedelta(hours=8)]
    after = [row for row in stored if now - timedelta(hours=8) < aware(row["attempted_at"])]
    in_day = [row for row in rows if aware(row["attempted_at"]) >= now - timedelta(hours=24)]
    in_week = [row for row in rows if aware(row["attempted_at"]) >= now - timedelta(days=7)]
    return Week(
        now=now,
        current_fingerprint=stored[-1]["fingerprint"],
        tokens=[row["token"] for row in stored],
        gap_start=aware(max(row["expires"] for row in before)) - MARGIN,
        gap_end=aware(min(row["stored_at"] for row in after)),
        failures_24h=Counter(row["error_class"] for row in in_day if row["outcome"] == "failed"),
        failures_7d=Counter(row["error_class"] for row in in_week if row["outcome"] == "failed"),
        attempts_24h=len(in_day),
    )


def failure(
    at: datetime, run_id: str, try_number: int, error_class: str, status: int | None
) -> dict[str, Any]:
    return {
        "attempted_at": naive(at),
        "dag_id": "update_parkmobile_token",
        "run_id": run_id,
        "try_number": try_number,
        "outcome": "failed",
        "http_status": status,
        "error_class": error_class,
        "latency_ms": 10_000 if status is None else 350,
    }


def insert_rows(db: TokenDatabase, table: str, rows: list[dict[str, Any]]) -> None:
    conn = db.server.connect(db.name)
    try:
        cursor = conn.cursor()
        for row in rows:
            names = ", ".join(row)
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(row))})", tuple(row.values())
            )
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def week(empty_history_table: TokenDatabase) -> Week:
    return week_with_outages(empty_history_table)


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


# -- who may see it -------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["admin", "viewer"])
@pytest.mark.parametrize("via", ["bearer", "cookie"])
def test_a_user_who_may_read_the_dag_gets_the_page_and_the_json(
    api_server: ApiServer, week: Week, user: str, via: str
) -> None:
    jwt = api_server.jwt(user)
    credentials = {"bearer": jwt} if via == "bearer" else {"cookie": jwt}

    page = api_server.get(PAGE, html=True, bearer=credentials.get("bearer"), cookie=credentials.get("cookie"))
    status = api_server.get(STATUS, bearer=credentials.get("bearer"), cookie=credentials.get("cookie"))

    assert page.status_code == 200, page.text[-2000:]
    assert status.status_code == 200, status.text[-2000:]
    assert f"Signed in as {user}." in page.text
    document = status.json()
    assert document["valid"] is True
    assert document["current"]["fingerprint"] == week.current_fingerprint
    assert [token for token in week.tokens if token in page.text or token in status.text] == []


def expired_jwt(api_server: ApiServer) -> str:
    """The admin's own JWT, signed with the api-server's key, but expired a minute ago."""
    import jwt

    claims = jwt.decode(api_server.jwt("admin"), options={"verify_signature": False})
    past = int(time.time()) - 3600
    claims.update(iat=past, nbf=past, exp=past + 3540)
    return jwt.encode(claims, api_server.jwt_secret, algorithm="HS512")


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"bearer": "not-a-jwt"}, id="garbage-bearer"),
        pytest.param({"cookie": "not-a-jwt"}, id="garbage-cookie"),
        pytest.param({"bearer": "FORGED"}, id="admin-jwt-with-a-forged-signature"),
        pytest.param({"cookie": "EXPIRED"}, id="expired-jwt"),
    ],
)
def test_without_a_valid_jwt_the_answer_is_401(api_server: ApiServer, presented: dict[str, str]) -> None:
    admin = api_server.jwt("admin")
    made = {"FORGED": admin.rsplit(".", 1)[0] + ".c2lnbmF0dXJl", "EXPIRED": expired_jwt(api_server)}
    bearer, cookie = (presented.get(kind) for kind in ("bearer", "cookie"))
    bearer, cookie = made.get(bearer or "", bearer), made.get(cookie or "", cookie)

    status = api_server.get(STATUS, bearer=bearer, cookie=cookie)
    page = api_server.get(PAGE, html=True, bearer=bearer, cookie=cookie)

    assert status.status_code == 401, status.text
    assert status.headers["www-authenticate"] == "Bearer"
    if "EXPIRED" in presented.values():
        assert status.json() == {"detail": "Token Expired"}
    assert page.status_code == 401
    assert 'data-status="401"' in page.text
    assert 'href="/auth/login?next=' in page.text


def test_a_user_who_may_not_read_the_dag_gets_403(api_server: ApiServer) -> None:
    jwt = api_server.jwt("outsider")

    status = api_server.get(STATUS, bearer=jwt)
    page = api_server.get(PAGE, cookie=jwt, html=True)

    assert status.status_code == 403, status.text
    assert status.json() == {"detail": "Forbidden: you may not read the DAG update_parkmobile_token"}
    assert page.status_code == 403
    assert 'data-status="403"' in page.text


def test_the_plugin_is_registered_with_its_navigation_entry(api_server: ApiServer) -> None:
    response = api_server.get("/api/v2/plugins", bearer=api_server.jwt("admin"))
    assert response.status_code == 200, response.text
    [plugin] = [p for p in response.json()["plugins"] if p["name"] == "parkmobile_token_ui"]

    assert plugin["fastapi_apps"] == [
        {
            "app": "parkmobile_token.ui.asgi.LazyApp",
            "url_prefix": "/parkmobile-token",
            "name": "ParkMobile token",
        }
    ]
    [view] = plugin["external_views"]
    assert (view["href"], view["url_route"], view["destination"]) == (PAGE, "parkmobile-token", "nav")
    errors = api_server.get("/api/v2/plugins/importErrors", bearer=api_server.jwt("admin")).json()
    assert errors["import_errors"] == []


def test_the_json_has_the_days_gap_and_figures(api_server: ApiServer, week: Week) -> None:
    document = api_server.get(STATUS, bearer=api_server.jwt("viewer")).json()
    day = document["periods"]["24h"]

    [gap] = day["gaps"]
    assert abs(parse(gap["start"]) - week.gap_start) < timedelta(seconds=2)
    assert abs(parse(gap["end"]) - week.gap_end) < timedelta(seconds=2)
    assert day["coverage"] == pytest.approx(1 - gap["seconds"] / 86400, abs=1e-4)
    assert day["failed"] == sum(week.failures_24h.values())
    assert day["attempts"] == week.attempts_24h
    assert len(document["periods"]["7d"]["gaps"]) == 2
    classes = {entry["error_class"]: entry for entry in document["errors_by_class"]}
    assert {name: entry["count_24h"] for name, entry in classes.items() if entry["count_24h"]} == dict(
        week.failures_24h
    )
    assert {name: entry["count_7d"] for name, entry in classes.items()} == dict(week.failures_7d)


# -- in a browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: install the dev extra (scripts/setup.sh does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, api_server: ApiServer, path: str, *, color_scheme: str = "light") -> Page:
    """A new browser context, logged in as ``viewer`` the way Airflow's UI is: the ``_token`` cookie."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        color_scheme=color_scheme,  # type: ignore[arg-type]
        timezone_id="America/Denver",  # the page says UTC whatever the browser's zone
    )
    context.add_cookies([{"name": "_token", "value": api_server.jwt("viewer"), "url": api_server.base_url}])
    page = context.new_page()
    page.goto(f"{api_server.base_url}{path}")
    return page


def test_the_browser_draws_the_gap_and_a_live_countdown(
    browser: Browser, api_server: ApiServer, week: Week
) -> None:
    page = open_page(browser, api_server, PAGE)
    page.wait_for_selector('#pm-countdown[data-ticking="true"]', timeout=20_000)

    gaps = page.eval_on_selector_all(
        "#timeline-24h rect.gap",
        """rects => rects.map(r => ({start: r.dataset.gapStart, end: r.dataset.gapEnd,
            width: r.getBoundingClientRect().width, fill: getComputedStyle(r).fill}))""",
    )
    [gap] = gaps
    assert abs(parse(gap["start"]) - week.gap_start) < timedelta(seconds=2)
    assert abs(parse(gap["end"]) - week.gap_end) < timedelta(seconds=2)
    assert gap["width"] > 50  # three hours of a day, on a page 1280 pixels wide
    red, green, blue = (int(c) for c in re.findall(r"\d+", gap["fill"])[:3])
    assert red > 150 > green, gap["fill"]
    assert red > blue, gap["fill"]
    assert page.locator("#timeline-7d rect.gap").count() == 2
    failed_marks = page.locator('#timeline-24h [data-outcome="failed"]').count()
    assert failed_marks == sum(week.failures_24h.values())
    assert page.locator("#timeline-24h rect.window").count() >= 40

    status = page.locator("#pm-status")
    assert status.get_attribute("data-valid") == "true"
    assert status.get_attribute("data-fingerprint") == week.current_fingerprint
    countdown = page.locator("#pm-countdown")
    first = int(countdown.get_attribute("data-seconds-left") or "0")
    assert re.fullmatch(r"\d+:\d\d", countdown.inner_text().strip()), countdown.inner_text()
    page.wait_for_timeout(2200)
    second = int(countdown.get_attribute("data-seconds-left") or "0")
    assert 1 <= first - second <= 4, (first, second)
    # The newest token was stored 10 minutes ago and lives an hour, less the one-minute margin.
    assert 48 * 60 <= second <= 49 * 60

    html = page.content()
    assert [token for token in week.tokens if token in html] == []
    screenshot = ARTIFACTS / "token-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    docs = REPO / "docs" / "token-page.png"
    if UPDATE_DOCS or not docs.exists():
        docs.parent.mkdir(exist_ok=True)
        docs.write_bytes(screenshot.read_bytes())
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(ARTIFACTS / "token-page-dark.png"), full_page=True)
    page.context.close()


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(("light", "dark", "dark"), id="airflow-dark-on-a-light-system"),
        pytest.param(("dark", "light", "light"), id="airflow-light-on-a-dark-system"),
        pytest.param(("dark", None, "dark"), id="airflow-follows-a-dark-system"),
        pytest.param(("light", "system", "light"), id="airflow-set-to-system"),
    ],
)
def test_inside_airflows_ui_the_page_takes_airflows_colour_mode(
    browser: Browser, api_server: ApiServer, week: Week, case: tuple[str, str | None, str]
) -> None:
    system, airflow_choice, expected = case
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=system)  # type: ignore[arg-type]
    context.add_cookies([{"name": "_token", "value": api_server.jwt("viewer"), "url": api_server.base_url}])
    if airflow_choice is not None:
        # Airflow's UI keeps the user's colour mode under this key.
        context.add_init_script(f"window.localStorage.setItem('theme', '{airflow_choice}')")
    page = context.new_page()
    page.goto(f"{api_server.base_url}/plugin/parkmobile-token")
    frame_element = page.wait_for_selector('iframe[title="ParkMobile token"]', timeout=60_000)
    frame = frame_element.content_frame() if frame_element else None
    assert frame is not None
    frame.wait_for_selector('#pm-countdown[data-ticking="true"]', timeout=30_000)

    assert frame.evaluate("document.documentElement.dataset.theme") == expected
    assert expected in (page.evaluate("document.documentElement.className") or "")
    background = frame.evaluate("getComputedStyle(document.body).backgroundColor")
    brightness = sum(int(c) for c in re.findall(r"\d+", background)[:3])
    assert (brightness < 200) == (expected == "dark"), background
    if expected == "dark":
        page.screenshot(path=str(ARTIFACTS / "token-page-in-airflow.png"))
    context.close()
