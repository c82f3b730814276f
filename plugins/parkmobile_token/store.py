"""The MySQL table that holds ParkMobile tokens: store, clean up, create, read the newest."""

from __future__ import annotations

import logging
import re
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

from parkmobile_token.clock import fingerprint, isoformat_z, to_utc_naive, token_sha256, utcnow
from parkmobile_token.config import DEFAULT_CLEANUP_WINDOW_S, DEFAULT_DB_CONN_ID, DEFAULT_TABLE
from parkmobile_token.exceptions import InvalidTableNameError, TokenExpiredError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.providers.mysql.hooks.mysql import MySqlHook

log = logging.getLogger(__name__)

#: A table name is used in SQL text, so it must be a plain identifier: no quoting, no schema prefix.
#: At most 48 characters, so that the key names derived from it stay within MySQL's 64.
TABLE_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
#: Pins the session to UTC, so nothing the server computes depends on its time_zone setting.
UTC_SESSION = "SET time_zone = '+00:00'"
DDL_RESOURCE = "pm_api_tokens.sql"
_DUPLICATE_KEY = 1062


def validate_table_name(name: str) -> str:
    """Return ``name`` when it is a plain SQL identifier; raise otherwise, before any SQL is built."""
    if not isinstance(name, str) or not TABLE_NAME_PATTERN.fullmatch(name):
        raise InvalidTableNameError(
            f"Table name {name!r} is not allowed: use letters, digits and underscores, "
            "starting with a letter or underscore, at most 48 characters"
        )
    return name


class MySqlTable:
    """
    One table of the token job, reached through ``MySqlHook`` on a session pinned to UTC.

    :param mysql_conn_id: the Airflow connection of the MySQL database.
    :param table: the table; checked against :data:`TABLE_NAME_PATTERN`.
    """

    def __init__(self, mysql_conn_id: str, table: str) -> None:
        self.mysql_conn_id = mysql_conn_id
        self.table = validate_table_name(table)

    def get_hook(self) -> MySqlHook:
        """Return a ``MySqlHook`` whose sessions run in UTC and never log statement parameters."""
        from airflow.providers.mysql.hooks.mysql import MySqlHook

        return MySqlHook(mysql_conn_id=self.mysql_conn_id, init_command=UTC_SESSION, log_sql=False)

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[Any]:
        """
        Open a DB-API connection, rolled back unless committed, and always closed.

        :param autocommit: commit each statement by itself, so that no ``COMMIT`` is ever sent.
        """
        hook = self.get_hook()
        with closing(hook.get_conn()) as conn:
            if autocommit:
                hook.set_autocommit(conn, True)
            try:
                yield conn
            except BaseException:
                _rollback_quietly(conn)
                raise


@dataclass(frozen=True)
class StoredToken:
    """
    What the token table says of one token, without the token.

    :param fingerprint: the first 12 hex digits of the token's SHA-256.
    :param expires: when it expires, aware UTC.
    :param seconds_left: seconds from the database server's clock to ``expires``; negative once expired.
    """

    fingerprint: str
    expires: datetime
    seconds_left: int


class TokenStore(MySqlTable):
    """
    Read and write the token table through ``MySqlHook``.

    Every statement takes its values as parameters and runs on a session pinned to UTC; no statement
    is logged with its parameters.

    :param mysql_conn_id: the Airflow connection of the MySQL database.
    :param table: the token table; checked against :data:`TABLE_NAME_PATTERN`.
    :param cleanup_window: rows expiring within this many seconds are removed by the cleanup.
    :param delete_batch_size: rows deleted per statement, so the cleanup never holds long locks.
    """

    def __init__(
        self,
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_TABLE,
        *,
        cleanup_window: int = DEFAULT_CLEANUP_WINDOW_S,
        delete_batch_size: int = 1000,
    ) -> None:
        if delete_batch_size < 1:
            raise ValueError(f"delete_batch_size must be at least 1, got {delete_batch_size}")
        if cleanup_window < 0:
            raise ValueError(f"cleanup_window must not be negative, got {cleanup_window}")
        super().__init__(mysql_conn_id, table)
        self.cleanup_window = cleanup_window
        self.delete_batch_size = delete_batch_size

    def store(
        self, token: str, *, expires_at: datetime, token_type: str = "Bearer", scope: str | None = None
    ) -> bool:
        """
        Insert a token once; return False when the same token was stored before.

        :param token: the access token.
        :param expires_at: when it expires, aware.
        :param token_type: the token type, normally ``Bearer``.
        :param scope: the scope the token was issued for.
        :raises TokenExpiredError: the token expires within the cleanup window, so storing it would
            only hand an expiring token to the clients.
        """
        now = utcnow()
        if expires_at <= now + timedelta(seconds=self.cleanup_window):
            raise TokenExpiredError(
                f"The fetched token (fingerprint {fingerprint(token)}) expires at "
                f"{isoformat_z(expires_at)}, within the {self.cleanup_window} s cleanup window; "
                "it is not stored. The next run fetches a new one"
            )
        # The expiry is floored to the second: a DATETIME never claims more lifetime than was issued.
        expires = to_utc_naive(expires_at).replace(microsecond=0)
        statement = (
            f"INSERT INTO {self.table} (token, token_sha256, token_type, scope, expires, created_at) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP())"
        )
        with self.connection() as conn:
            try:
                with closing(conn.cursor()) as cursor:
                    cursor.execute(statement, (token, token_sha256(token), token_type, scope, expires))
                conn.commit()
            except Exception as err:
                if _error_code(err) != _DUPLICATE_KEY:
                    raise
                _rollback_quietly(conn)
                return False
        return True

    def delete_expiring(self, *, keep_sha256: str | None = None) -> int:
        """
        Delete the rows that expire within the cleanup window, in batches; return how many went.

        A row stored less than a cleanup window ago is kept, so that no run deletes a token another
        run has just stored.

        :param keep_sha256: the SHA-256 of a token that must stay whatever its expiry.
        """
        statement = (
            f"DELETE FROM {self.table} "  # noqa: S608
            "WHERE expires <= UTC_TIMESTAMP() + INTERVAL %s SECOND "
            "AND created_at < UTC_TIMESTAMP() - INTERVAL %s SECOND "
            "AND token_sha256 <> %s ORDER BY expires LIMIT %s"
        )
        params = (self.cleanup_window, self.cleanup_window, keep_sha256 or "", self.delete_batch_size)
        deleted = 0
        with self.connection() as conn:
            while True:
                with closing(conn.cursor()) as cursor:
                    cursor.execute(statement, params)
                    batch = int(cursor.rowcount)
                conn.commit()
                deleted += batch
                if batch < self.delete_batch_size:
                    return deleted

    def newest(self, *, min_seconds_left: int | None = None) -> StoredToken | None:
        """
        Return the token that expires last, or None when the table holds none; one query.

        :param min_seconds_left: only a token with at least this many seconds left counts; any token
            when None.
        """
        statement = (
            "SELECT token_sha256, expires, TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), expires) "  # noqa: S608
            f"FROM {self.table} "
        )
        params: tuple[Any, ...] = ()
        if min_seconds_left is not None:
            statement += "WHERE expires > UTC_TIMESTAMP() + INTERVAL %s SECOND "
            params = (min_seconds_left,)
        statement += "ORDER BY expires DESC LIMIT 1"
        with self.connection() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(statement, params)
            row = cursor.fetchone()
        if row is None:
            return None
        sha256, expires, seconds_left = row
        return StoredToken(sha256[:12], expires.replace(tzinfo=UTC), int(seconds_left))

    def apply_schema(self) -> None:
        """Create the token table (and its index) when it does not exist yet."""
        with self.connection() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(render_ddl(self.table))
            conn.commit()


def render_ddl(
    table: str = DEFAULT_TABLE, *, resource: str = DDL_RESOURCE, default: str = DEFAULT_TABLE
) -> str:
    """
    Return a shipped DDL statement under the given (checked) table name.

    :param table: the name to create the table under.
    :param resource: the DDL file in the package's ``sql`` folder.
    :param default: the table name the file uses, replaced by ``table``.
    """
    ddl = resources.files("parkmobile_token").joinpath("sql", resource).read_text("utf-8")
    statement = "\n".join(line for line in ddl.splitlines() if not line.lstrip().startswith("--"))
    return statement.replace(default, validate_table_name(table)).strip().rstrip(";")


def _error_code(err: BaseException) -> int | None:
    code = getattr(err, "errno", None)
    if code is None and err.args and isinstance(err.args[0], int):
        code = err.args[0]
    return code


def _rollback_quietly(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection is often already gone; the original error matters more
        log.debug("Rollback failed after an error", exc_info=True)
