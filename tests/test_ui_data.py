"""The token page's reading of the two tables, against the real MariaDB/MySQL, and the app above it."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from parkmobile_token.clock import to_utc_naive, utcnow
from parkmobile_token.history import FAILED, STORED
from parkmobile_token.ui.data import TokenHealthReader
from parkmobile_token.ui.health import build_health
from tests.conftest import HISTORY_TABLE, SECRETS_IN_PLAY, insert_history

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi.testclient import TestClient

    from tests.conftest import ReaderAccount, TokenDatabase

MARGIN_S = 60


def new_token() -> str:
    token = f"pm-ui-{secrets.token_urlsafe(24)}"
    SECRETS_IN_PLAY.add(token)
    return token


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def fill_history(db: TokenDatabase) -> dict[str, Any]:
    """Six hours of refreshes every 30 minutes; the ones 3.5 to 2 hours ago failed; two tokens left."""
    now = utcnow()
    tokens = {}
    for step in range(12, 0, -1):
        attempted = now - timedelta(minutes=30 * step)
        if 4 <= step <= 7:
            insert_history(
                db,
                attempted_at=to_utc_naive(attempted),
                outcome=FAILED,
                http_status=503,
                error_class="http_503",
            )
            continue
        token = new_token()
        tokens[step] = token
        insert_history(
            db,
            attempted_at=to_utc_naive(attempted),
            outcome=STORED,
            latency_ms=100 + step,
            lifetime_s=3600,
            expires=to_utc_naive(attempted + timedelta(hours=1)).replace(microsecond=0),
            fingerprint=fingerprint(token),
            stored_at=to_utc_naive(attempted + timedelta(seconds=1)),
        )
    # The cleanup has left the two newest; one more row was stored by hand, with no history.
    db.insert(tokens[1], expires_in_s=1800, created_ago_s=1800)
    db.insert(tokens[2], expires_in_s=60, created_ago_s=3600)
    by_hand = new_token()
    db.insert(by_hand, expires_in_s=900, created_ago_s=60)
    return {"now": now, "tokens": tokens, "by_hand": by_hand}


@pytest.fixture
def reader_db(
    empty_history_table: TokenDatabase, token_reader_account: ReaderAccount, monkeypatch: pytest.MonkeyPatch
) -> TokenDatabase:
    """The test database, read through an account that may not select the token column."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARKMOBILE_DB", token_reader_account.connection_json(empty_history_table)
    )
    return empty_history_table


def test_the_reader_needs_no_access_to_the_token_column(reader_db: TokenDatabase) -> None:
    filled = fill_history(reader_db)

    snapshot = TokenHealthReader().read(utcnow())

    assert snapshot.history_available
    assert {row.fingerprint for row in snapshot.tokens} == {
        fingerprint(filled["tokens"][1]),
        fingerprint(filled["tokens"][2]),
        fingerprint(filled["by_hand"]),
    }
    assert len(snapshot.records) == 12
    assert [r.outcome for r in snapshot.last_failures] == [FAILED] * 4
    health = build_health(snapshot, margin_s=MARGIN_S)
    assert health.current is not None
    assert health.current.fingerprint == fingerprint(filled["tokens"][1])
    assert 1800 - MARGIN_S - 10 < health.current.seconds_left <= 1800 - MARGIN_S
    # The newest token before the failures (4 h ago) was valid until 3 h ago less the margin; the first
    # one after them came 1.5 h ago.
    [(gap_start, gap_end)] = [
        gap for gap in health.periods[0].gaps if gap[1] > filled["now"] - timedelta(hours=5)
    ]
    assert abs(gap_start - (filled["now"] - timedelta(hours=3, seconds=MARGIN_S))) < timedelta(seconds=2)
    assert abs(gap_end - (filled["now"] - timedelta(hours=1.5, seconds=-1))) < timedelta(seconds=2)


def test_the_account_really_may_not_read_a_token(reader_db: TokenDatabase) -> None:
    import MySQLdb

    reader = TokenHealthReader()
    with reader.tokens.connection() as conn, pytest.raises(MySQLdb.OperationalError) as refused:
        conn.cursor().execute(f"SELECT token FROM {reader.tokens.table}")
    assert refused.value.args[0] == 1143  # SELECT command denied ... for column 'token'


def test_without_a_history_table_the_page_shows_the_token_table_alone(
    empty_history_table: TokenDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", empty_history_table.connection_json())
    empty_history_table.insert(new_token(), expires_in_s=600, created_ago_s=60)

    snapshot = TokenHealthReader(history_table="pm_no_such_history").read(utcnow())

    assert not snapshot.history_available
    health = build_health(snapshot, margin_s=MARGIN_S)
    assert health.current is not None
    [note] = health.notes
    assert "history table does not exist" in note


# -- the app, its user given ----------------------------------------------------------------------


def app_client(reader_factory: Callable[[], TokenHealthReader]) -> TestClient:
    """The app with the auth check replaced by a fixed user: the api-server tests check the real one."""
    from fastapi.testclient import TestClient

    from parkmobile_token.ui.app import create_app
    from parkmobile_token.ui.auth import dag_reader

    app = create_app(reader_factory=reader_factory)
    app.dependency_overrides[dag_reader] = lambda: SimpleNamespace(get_name=lambda: "tester")
    return TestClient(app)


def test_the_page_and_the_json_name_tokens_by_fingerprint_only(reader_db: TokenDatabase) -> None:
    filled = fill_history(reader_db)
    client = app_client(TokenHealthReader)

    page = client.get("/")
    status = client.get("/api/status")

    assert page.status_code == 200, page.text
    assert status.status_code == 200, status.text
    assert page.headers["cache-control"] == "no-store"
    document = status.json()
    assert document["current"]["fingerprint"] == fingerprint(filled["tokens"][1])
    assert f'data-fingerprint="{fingerprint(filled["tokens"][1])}"' in page.text
    everything = page.text + json.dumps(document)
    assert [token for token in [*filled["tokens"].values(), filled["by_hand"]] if token in everything] == []


def test_an_unreachable_database_answers_503_naming_the_connection_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = secrets.token_hex(8)
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARKMOBILE_DB",
        json.dumps(
            {"conn_type": "mysql", "host": "127.0.0.1", "port": 9, "login": "u", "password": password}
        ),
    )
    client = app_client(TokenHealthReader)

    status = client.get("/api/status")
    page = client.get("/", headers={"Accept": "text/html"})

    assert status.status_code == 503
    assert status.json() == {
        "detail": "the token tables on connection 'parkmobile_db' could not be read: OperationalError (2002)"
    }
    assert page.status_code == 503
    assert 'id="pm-unavailable"' in page.text
    assert password not in page.text + status.text


def test_the_static_files_are_served_from_the_package() -> None:
    client = app_client(TokenHealthReader)
    for name, kind in [("page.css", "text/css"), ("page.js", "javascript"), ("theme.js", "javascript")]:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    assert client.get("/static/../data.py").status_code == 404


def test_the_tables_and_the_connection_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = TokenHealthReader.from_config()
    assert (defaults.tokens.mysql_conn_id, defaults.tokens.table, defaults.history.table) == (
        "parkmobile_db",
        "pm_api_tokens",
        HISTORY_TABLE,
    )
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__TABLE", "other_tokens")
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__HISTORY_TABLE", "other_history")
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__PAGE_CONN_ID", "parkmobile_page")
    reader = TokenHealthReader.from_config()
    assert (reader.tokens.mysql_conn_id, reader.tokens.table, reader.history.table) == (
        "parkmobile_page",
        "other_tokens",
        "other_history",
    )
