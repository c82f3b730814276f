"""``TokenStore`` against the real local MariaDB/MySQL, through an Airflow connection from the environment."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import MySQLdb
import pytest

from parkmobile_token import store as store_module
from parkmobile_token.clock import fingerprint
from parkmobile_token.exceptions import InvalidTableNameError, TokenExpiredError
from parkmobile_token.store import TokenStore, render_ddl, validate_table_name

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import TokenDatabase

TOKEN = "pmTOKEN-store-5d2e81-SEKRIT"
WINDOW = 60
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
OTHER_TABLE = "other_tokens"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def tokens_in(db: TokenDatabase) -> set[str]:
    return {row["token"] for row in db.rows()}


def insert_many(db: TokenDatabase, prefix: str, count: int, *, expires_in_s: int) -> None:
    """Insert ``count`` rows created an hour ago in one statement."""
    if count == 0:
        return
    values = ", ".join(
        ["(%s, %s, UTC_TIMESTAMP() + INTERVAL %s SECOND, UTC_TIMESTAMP() - INTERVAL 3600 SECOND)"] * count
    )
    params: list[Any] = []
    for index in range(count):
        token = f"{prefix}-{index}"
        params += [token, sha256(token), expires_in_s]
    db.query(
        f"INSERT INTO {db.table} (token, token_sha256, expires, created_at) VALUES {values}", tuple(params)
    )


def table_exists(db: TokenDatabase, table: str) -> bool:
    return bool(db.query("SHOW TABLES LIKE %s", (table,)))


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, empty_token_table: TokenDatabase) -> TokenDatabase:
    """The empty token table, reachable through the default ``parkmobile_db`` connection."""
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", empty_token_table.connection_json())
    return empty_token_table


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Freeze the store's clock (only its expiry check reads it) at the current second and a half."""
    now = datetime.now(UTC).replace(microsecond=500_000)
    monkeypatch.setattr(store_module, "utcnow", lambda: now)
    return now


@pytest.fixture
def other_table(db: TokenDatabase) -> Iterator[str]:
    """Room for a second token table in the test database, dropped afterwards."""
    db.query(f"DROP TABLE IF EXISTS {OTHER_TABLE}")
    yield OTHER_TABLE
    db.query(f"DROP TABLE IF EXISTS {OTHER_TABLE}")


@pytest.fixture
def kolkata_local_time() -> Iterator[None]:
    """Run the process in Asia/Kolkata local time, for Python and for Airflow."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "Asia/Kolkata")
        patch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", "Asia/Kolkata")
        time.tzset()
        yield
    time.tzset()


# -- store ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone",
    [pytest.param(UTC, id="utc"), pytest.param(IST, id="plus-05-30"), pytest.param(PST, id="minus-08-00")],
)
def test_store_inserts_one_row_with_token_hash_and_utc_expiry_floored_to_the_second(
    db: TokenDatabase, frozen_now: datetime, zone: timezone
) -> None:
    expires_at = (frozen_now + timedelta(hours=2)).replace(microsecond=999_999).astimezone(zone)

    stored = TokenStore().store(TOKEN, expires_at=expires_at, scope="parking.read")

    assert stored is True
    [row] = db.rows()
    assert row["token"] == TOKEN
    assert row["token_sha256"] == sha256(TOKEN)
    assert row["expires"] == utc_naive(expires_at).replace(microsecond=0)
    [(server_now,)] = db.query("SELECT UTC_TIMESTAMP()")
    assert timedelta(0) <= server_now - row["created_at"] <= timedelta(seconds=5)
    assert db.query(f"SELECT token_type, scope FROM {db.table}") == [("Bearer", "parking.read")]


def test_storing_the_same_token_again_returns_false_and_keeps_one_row(
    db: TokenDatabase, frozen_now: datetime
) -> None:
    first_expiry = frozen_now + timedelta(hours=1)
    store = TokenStore()

    assert store.store(TOKEN, expires_at=first_expiry) is True
    assert store.store(TOKEN, expires_at=first_expiry) is False
    assert store.store(TOKEN, expires_at=first_expiry + timedelta(minutes=5)) is False

    [row] = db.rows()
    assert row["expires"] == utc_naive(first_expiry).replace(microsecond=0)
    # The refused duplicate leaves the store usable for the next token.
    assert store.store(TOKEN + "-next", expires_at=first_expiry) is True
    assert tokens_in(db) == {TOKEN, TOKEN + "-next"}


@pytest.mark.parametrize(
    "seconds_left",
    [
        pytest.param(-3600, id="expired-an-hour-ago"),
        pytest.param(-1, id="expired-a-second-ago"),
        pytest.param(0, id="expiring-now"),
        pytest.param(30, id="expiring-within-the-window"),
        pytest.param(WINDOW, id="expiring-at-the-window-edge"),
    ],
)
def test_token_expiring_within_the_window_is_refused_and_not_stored(
    db: TokenDatabase, frozen_now: datetime, seconds_left: int
) -> None:
    db.insert("earlier-token", expires_in_s=3600)

    with pytest.raises(TokenExpiredError) as excinfo:
        TokenStore().store(TOKEN, expires_at=frozen_now + timedelta(seconds=seconds_left))

    message = str(excinfo.value)
    assert TOKEN not in message
    assert "SEKRIT" not in message
    assert fingerprint(TOKEN) in message
    assert f"{WINDOW} s" in message
    assert tokens_in(db) == {"earlier-token"}


def test_token_outliving_the_window_by_a_second_is_stored(db: TokenDatabase, frozen_now: datetime) -> None:
    assert TokenStore().store(TOKEN, expires_at=frozen_now + timedelta(seconds=WINDOW + 1)) is True
    assert tokens_in(db) == {TOKEN}


def test_refusal_message_gives_the_expiry_in_utc(db: TokenDatabase, frozen_now: datetime) -> None:
    expired_at = (frozen_now - timedelta(hours=1)).astimezone(IST)

    with pytest.raises(TokenExpiredError) as excinfo:
        TokenStore().store(TOKEN, expires_at=expired_at)

    assert f"{utc_naive(expired_at):%Y-%m-%dT%H:%M:%S}Z" in str(excinfo.value)


def test_store_pins_utc_even_when_the_connection_extra_asks_for_another_zone(
    db: TokenDatabase, monkeypatch: pytest.MonkeyPatch, frozen_now: datetime
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARKMOBILE_DB", db.connection_json(extra={"init_command": "SET time_zone = '+05:30'"})
    )
    store = TokenStore()
    expires_at = datetime(2099, 6, 30, 23, 45, 10, tzinfo=IST)

    with store.connection() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT @@session.time_zone, TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")
        assert cursor.fetchall() == (("+00:00", 0),)
    assert store.store(TOKEN, expires_at=expires_at) is True

    # Read back on a separate session pinned to UTC.
    assert db.query(f"SELECT expires FROM {db.table}") == [(datetime(2099, 6, 30, 18, 15, 10),)]


# -- delete_expiring -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in_s", "created_ago_s", "keep", "deleted"),
    [
        pytest.param(30, 3600, False, True, id="expiring-within-the-window-deleted"),
        pytest.param(59, 3600, False, True, id="expiring-in-59s-deleted"),
        pytest.param(-600, 3600, False, True, id="expired-deleted"),
        pytest.param(-30 * 86_400, 60 * 86_400, False, True, id="expired-a-month-ago-deleted"),
        pytest.param(120, 3600, False, False, id="expiring-in-2min-kept"),
        pytest.param(3600, 3600, False, False, id="valid-for-an-hour-kept"),
        pytest.param(30, 3600, True, False, id="expiring-but-keep_sha256-kept"),
        pytest.param(-600, 3600, True, False, id="expired-but-keep_sha256-kept"),
        pytest.param(30, 10, False, False, id="expiring-but-created-10s-ago-kept"),
        pytest.param(-5, 0, False, False, id="expired-but-created-just-now-kept"),
        pytest.param(30, 120, False, True, id="expiring-created-2min-ago-deleted"),
    ],
)
def test_delete_expiring_decides_per_row(
    db: TokenDatabase, expires_in_s: int, created_ago_s: int, keep: bool, deleted: bool
) -> None:
    db.insert(TOKEN, expires_in_s=expires_in_s, created_ago_s=created_ago_s)
    db.insert("bystander-expiring", expires_in_s=30)
    db.insert("bystander-valid", expires_in_s=3600)

    count = TokenStore().delete_expiring(keep_sha256=sha256(TOKEN) if keep else None)

    assert count == 1 + deleted
    expected = {"bystander-valid"} | ({TOKEN} if not deleted else set())
    assert tokens_in(db) == expected


def test_keep_sha256_of_an_unknown_token_protects_nothing(db: TokenDatabase) -> None:
    db.insert("expiring-a", expires_in_s=10)
    db.insert("expired-b", expires_in_s=-10)
    db.insert("valid-c", expires_in_s=900)

    assert TokenStore().delete_expiring(keep_sha256=sha256("not-stored")) == 2
    assert tokens_in(db) == {"valid-c"}


def test_delete_expiring_on_an_empty_table_returns_zero(db: TokenDatabase) -> None:
    assert TokenStore().delete_expiring() == 0


@pytest.mark.parametrize(
    ("expiring", "batch_size"),
    [
        pytest.param(50, 7, id="50-in-batches-of-7"),
        pytest.param(49, 7, id="49-exact-multiple-of-7"),
        pytest.param(7, 7, id="one-full-batch"),
        pytest.param(6, 7, id="less-than-a-batch"),
        pytest.param(0, 7, id="nothing-to-delete"),
        pytest.param(5, 1, id="one-row-per-batch"),
    ],
)
def test_delete_expiring_in_batches_deletes_every_expiring_row(
    db: TokenDatabase, expiring: int, batch_size: int
) -> None:
    insert_many(db, "expiring", expiring, expires_in_s=20)
    insert_many(db, "valid", 3, expires_in_s=3600)

    count = TokenStore(delete_batch_size=batch_size).delete_expiring()

    assert count == expiring
    assert tokens_in(db) == {"valid-0", "valid-1", "valid-2"}


@pytest.mark.usefixtures("kolkata_local_time")
def test_delete_expiring_counts_in_utc_under_a_non_utc_local_zone(db: TokenDatabase) -> None:
    assert time.localtime().tm_gmtoff == 5 * 3600 + 30 * 60  # the zone really is in effect
    for seconds in (-10, 30, 59, 120, 3600):
        db.insert(f"expires-in-{seconds}", expires_in_s=seconds, created_ago_s=3600)

    count = TokenStore().delete_expiring()

    assert count == 3
    assert tokens_in(db) == {"expires-in-120", "expires-in-3600"}


# -- table names and DDL ---------------------------------------------------------------------------------

REFUSED_NAMES = [
    pytest.param("pm_api_tokens; DROP TABLE pm_api_tokens", id="statement-injection"),
    pytest.param("a-b", id="hyphen"),
    pytest.param("", id="empty"),
    pytest.param("db.table", id="schema-prefix"),
    pytest.param("a" * 49, id="49-chars"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("`pm_api_tokens`", id="backticks"),
    pytest.param("pm_api_tokens`; DROP TABLE pm_api_tokens; --", id="backtick-breakout"),
    pytest.param("pm_api_tokens\n", id="trailing-newline"),
    pytest.param("pm api tokens", id="spaces"),
    pytest.param("1tokens", id="leading-digit"),
    pytest.param("t\u00f6kens", id="non-ascii-letter"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_table_name_is_refused_before_any_sql_runs(
    db: TokenDatabase, frozen_now: datetime, name: Any
) -> None:
    db.insert("survivor", expires_in_s=30)

    with pytest.raises(InvalidTableNameError):
        validate_table_name(name)
    with pytest.raises(InvalidTableNameError):
        render_ddl(name)
    with pytest.raises(InvalidTableNameError):
        TokenStore(table=name).store(TOKEN, expires_at=frozen_now + timedelta(hours=1))
    with pytest.raises(InvalidTableNameError):
        TokenStore(table=name).delete_expiring()

    assert table_exists(db, db.table)
    assert tokens_in(db) == {"survivor"}


def test_schema_qualified_name_is_refused_although_the_table_exists(db: TokenDatabase) -> None:
    qualified = f"{db.name}.{db.table}"
    assert db.query(f"SELECT COUNT(*) FROM {qualified}") == [(0,)]  # valid SQL, so only the check refuses it

    with pytest.raises(InvalidTableNameError):
        TokenStore(table=qualified)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("pm_api_tokens", id="default"),
        pytest.param("_x1", id="underscore-start"),
        pytest.param("PM_Tokens_2", id="mixed-case"),
        pytest.param("a" * 48, id="48-chars"),
    ],
)
def test_plain_identifier_is_accepted(name: str) -> None:
    assert validate_table_name(name) == name
    assert TokenStore(table=name).table == name


def test_render_ddl_creates_a_working_table_of_another_name(
    db: TokenDatabase, other_table: str, frozen_now: datetime
) -> None:
    ddl = render_ddl(other_table)
    assert "pm_api_tokens" not in ddl
    db.query(ddl)
    store = TokenStore(table=other_table)

    assert store.store(TOKEN, expires_at=frozen_now + timedelta(hours=1)) is True
    assert store.store(TOKEN, expires_at=frozen_now + timedelta(hours=1)) is False
    db.query(
        f"INSERT INTO {other_table} (token, token_sha256, expires, created_at) "
        "VALUES ('old', %s, UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 1 HOUR)",
        (sha256("old"),),
    )
    assert store.delete_expiring() == 1

    assert db.query(f"SELECT token, token_sha256 FROM {other_table}") == [(TOKEN, sha256(TOKEN))]
    assert db.rows() == []


def test_apply_schema_creates_the_table_once(db: TokenDatabase, other_table: str) -> None:
    store = TokenStore(table=other_table)

    store.apply_schema()
    db.query(
        f"INSERT INTO {other_table} (token, token_sha256, expires, created_at) "
        "VALUES ('kept', %s, UTC_TIMESTAMP(), UTC_TIMESTAMP())",
        (sha256("kept"),),
    )
    store.apply_schema()

    assert db.query(f"SELECT token FROM {other_table}") == [("kept",)]


@pytest.mark.parametrize(
    "table", [pytest.param("pm_api_tokens", id="default"), pytest.param(OTHER_TABLE, id="other")]
)
def test_ddl_indexes_expires_and_keys_token_sha256_uniquely(
    db: TokenDatabase, other_table: str, table: str
) -> None:
    if table == other_table:
        db.query(render_ddl(other_table))

    # SHOW INDEX columns: Table, Non_unique, Key_name, Seq_in_index, Column_name, ...
    indexes: dict[str, tuple[int, list[str]]] = {}
    for row in db.query(f"SHOW INDEX FROM {table}"):
        non_unique, key_name, column = int(row[1]), row[2], row[4]
        indexes.setdefault(key_name, (non_unique, []))[1].append(column)

    by_columns = {tuple(columns): non_unique for non_unique, columns in indexes.values()}
    assert by_columns[("id",)] == 0
    assert by_columns[("token_sha256",)] == 0
    assert ("expires",) in by_columns


@pytest.mark.parametrize(
    "length",
    [
        pytest.param(1, id="1-char"),
        pytest.param(48, id="48-chars"),
    ],
)
def test_render_ddl_creates_a_table_for_every_accepted_name(db: TokenDatabase, length: int) -> None:
    name = "t" * length
    assert validate_table_name(name) == name
    try:
        db.query(render_ddl(name))
        assert table_exists(db, name)
    finally:
        db.query(f"DROP TABLE IF EXISTS {name}")


# -- connection failure ----------------------------------------------------------------------------------


def test_unreachable_database_raises_operational_error_and_touches_nothing(
    db: TokenDatabase, monkeypatch: pytest.MonkeyPatch, frozen_now: datetime
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB_CLOSED_PORT", db.connection_json(port=1))
    db.insert("expiring", expires_in_s=30)
    db.insert("valid", expires_in_s=3600)
    before = db.rows()
    store = TokenStore("parkmobile_db_closed_port")

    with pytest.raises(MySQLdb.OperationalError) as stored:
        store.store(TOKEN, expires_at=frozen_now + timedelta(hours=1))
    with pytest.raises(MySQLdb.OperationalError):
        store.delete_expiring()

    assert TOKEN not in str(stored.value)
    assert db.rows() == before
    # The same store code against the real port does write, so the failure above was the port.
    assert TokenStore().store(TOKEN, expires_at=frozen_now + timedelta(hours=1)) is True


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_refused_rather_than_looping_forever(batch_size: int) -> None:
    with pytest.raises(ValueError, match="delete_batch_size"):
        TokenStore(delete_batch_size=batch_size)
