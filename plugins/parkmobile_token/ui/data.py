"""
Read the token table and the refresh history for the page, through ``MySqlHook``.

Every session runs in UTC and no statement is logged with its parameters (``MySqlTable.connection``).
The token column is never selected: a token is named by the first 12 hex digits of ``token_sha256``.
"""

from __future__ import annotations

import logging
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

from parkmobile_token.clock import to_utc_naive
from parkmobile_token.config import (
    DEFAULT_CLEANUP_WINDOW_S,
    DEFAULT_DB_CONN_ID,
    DEFAULT_HISTORY_TABLE,
    DEFAULT_TABLE,
    SECTION,
)
from parkmobile_token.history import FAILED, HistorySettings, RefreshHistory
from parkmobile_token.store import TokenStore
from parkmobile_token.ui.health import LAST_ERRORS, PERIODS, Snapshot, TokenRow

log = logging.getLogger(__name__)

_NO_SUCH_TABLE = 1146


class TokenHealthReader:
    """
    Read what the page shows from the token table and the refresh history.

    :param mysql_conn_id: the Airflow connection of the MySQL database.
    :param table: the token table.
    :param history_table: the refresh history table.
    :param margin_s: seconds before its expiry that a token stops counting as valid: the cleanup window,
        which is also the margin of the clients' query.
    """

    def __init__(
        self,
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_TABLE,
        history_table: str = DEFAULT_HISTORY_TABLE,
        margin_s: int = DEFAULT_CLEANUP_WINDOW_S,
    ) -> None:
        self.tokens = TokenStore(mysql_conn_id, table, cleanup_window=margin_s)
        self.history = RefreshHistory(mysql_conn_id, history_table)
        self.margin_s = margin_s

    @classmethod
    def from_config(cls) -> TokenHealthReader:
        """
        Return a reader of the tables the DAG uses (``[parkmobile_token] table``, ``history_table``).

        It reads through ``[parkmobile_token] page_conn_id``, by default the DAG's own connection. The
        page needs no more than ``SELECT`` on the history and on the token table's columns other than
        ``token``, so the api-server can be given an account that cannot read a token.
        """
        from airflow.configuration import conf

        return cls(
            mysql_conn_id=conf.get(SECTION, "page_conn_id", fallback=DEFAULT_DB_CONN_ID),
            table=conf.get(SECTION, "table", fallback=DEFAULT_TABLE),
            history_table=HistorySettings.from_config().table,
        )

    def read(self, now: datetime) -> Snapshot:
        """Read both tables for the periods that end at ``now`` (aware)."""
        start = now - max(length for _, length, _ in PERIODS)
        tokens = self._read_tokens(since=start)
        try:
            records = self.history.window(start=start, margin_s=self.margin_s)
            last_failures = self.history.latest((FAILED,), limit=LAST_ERRORS)
        except Exception as err:
            if _error_code(err) != _NO_SUCH_TABLE:
                raise
            log.warning(
                "The refresh history table %s does not exist; showing tokens only", self.history.table
            )
            return Snapshot(now, tokens, history_available=False)
        log.debug("Read %s token rows and %s history rows", len(tokens), len(records))
        return Snapshot(now, tokens, records, last_failures)

    def _read_tokens(self, *, since: datetime) -> list[TokenRow]:
        statement = (
            f"SELECT token_sha256, created_at, expires FROM {self.tokens.table} "  # noqa: S608
            "WHERE expires >= %s ORDER BY expires"
        )
        with self.tokens.connection() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(statement, (to_utc_naive(since),))
            rows: list[tuple[Any, ...]] = list(cursor.fetchall())
        return [
            TokenRow(str(sha256)[:12], created_at.replace(tzinfo=UTC), expires.replace(tzinfo=UTC))
            for sha256, created_at, expires in rows
        ]


def _error_code(err: BaseException) -> int | None:
    code = getattr(err, "errno", None)
    if code is None and err.args and isinstance(err.args[0], int):
        code = err.args[0]
    return code
