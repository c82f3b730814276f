"""
A valid ParkMobile access token for any task: read it from the token table, refresh it when needed.

``ParkMobileTokenHook.get_token()`` returns the newest stored token that stays valid for the margin,
with one indexed query. When there is none it refreshes the token inline, through the same fetch and
store code as the DAG ``update_parkmobile_token``. A MySQL advisory lock makes the refresh single
flight: when many processes miss at once, one asks the token endpoint and the others wait, then read
the token it stored.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from parkmobile_token.clock import fingerprint, isoformat_z, utcnow
from parkmobile_token.config import (
    DEFAULT_AUTH_CONN_ID,
    DEFAULT_DB_CONN_ID,
    DEFAULT_ENDPOINT,
    DEFAULT_HISTORY_TABLE,
    DEFAULT_TABLE,
)
from parkmobile_token.exceptions import ParkMobileTokenError
from parkmobile_token.store import TokenStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime
    from types import TracebackType

    from airflow.providers.mysql.hooks.mysql import MySqlHook

    from parkmobile_token.config import FetchRetryPolicy
    from parkmobile_token.response import TokenResponse

#: Seconds a token returned by default stays valid at least.
DEFAULT_MARGIN_S = 60
#: Seconds to wait by default for another process that is refreshing the token.
DEFAULT_LOCK_TIMEOUT_S = 30.0
#: Prefix of the advisory lock's name; the database and the table follow it.
LOCK_PREFIX = "parkmobile_token:"
#: MySQL refuses user lock names longer than this (error 3057); longer names are hashed to fit.
MAX_LOCK_NAME_LENGTH = 64
#: Client errors that mean the server connection is gone: 2006 "server has gone away", 2013 "lost
#: connection during query". An idle connection the server timed out fails with one of them.
CONNECTION_LOST_ERRORS = frozenset({2006, 2013})

#: The read of the valid-token path: one statement, a range scan of the ``expires`` index read
#: backwards, one row. ``{table}`` is a checked identifier, ``%s`` the margin in seconds.
NEWEST_VALID_SQL = (
    "SELECT token, expires FROM {table} "
    "WHERE expires > UTC_TIMESTAMP() + INTERVAL %s SECOND ORDER BY expires DESC LIMIT 1"
)


class TokenUnavailableError(ParkMobileTokenError):
    """No stored token is valid any more, and no new one could be fetched and stored."""


class RefreshLockTimeoutError(ParkMobileTokenError):
    """Another process held the refresh lock for longer than the hook would wait."""

    retryable = True


@dataclass(frozen=True)
class _StoredToken:
    """One row of the token table; the token is left out of ``repr``."""

    token: str = field(repr=False)
    expires: datetime
    seconds_left: int | None = None


class ParkMobileTokenHook(BaseHook):
    """
    Give any task a valid ParkMobile access token from the token table, refreshing it when needed.

    The hook keeps one MySQL connection, opened on first use, for all its calls; close it with
    :meth:`close` or use the hook as a context manager. A connection the server dropped is reopened
    once. Like that connection, a hook belongs to one thread at a time.

    :param mysql_conn_id: the MySQL connection of the token table.
    :param http_conn_id: the ParkMobile auth connection, used when the token must be refreshed.
    :param table: the token table.
    :param margin: seconds a returned token must stay valid; a token expiring sooner is refreshed.
    :param lock_timeout: seconds to wait for another process that is refreshing the token.
    :param scope: the scope to ask for on a refresh; the auth connection's ``scope`` extra when None.
    :param endpoint: path of the token endpoint on the auth connection.
    :param retry_policy: in-call retries of a failing token request; the ``[parkmobile_token]``
        settings when None.
    """

    conn_name_attr = "mysql_conn_id"
    default_conn_name = DEFAULT_DB_CONN_ID
    hook_name = "ParkMobile token"

    def __init__(
        self,
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        http_conn_id: str = DEFAULT_AUTH_CONN_ID,
        table: str = DEFAULT_TABLE,
        *,
        margin: int = DEFAULT_MARGIN_S,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        scope: str | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        retry_policy: FetchRetryPolicy | None = None,
        history_table: str = DEFAULT_HISTORY_TABLE,
    ) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must not be negative, got {margin}")
        if lock_timeout < 0:
            raise ValueError(f"lock_timeout must not be negative, got {lock_timeout}")
        self.mysql_conn_id = mysql_conn_id
        self.http_conn_id = http_conn_id
        self.store = TokenStore(mysql_conn_id, table)
        self.table = self.store.table
        self.margin = margin
        self.lock_timeout = lock_timeout
        self.scope = scope
        self.endpoint = endpoint
        self.retry_policy = retry_policy
        self.history_table = history_table
        self._mysql_hook: MySqlHook | None = None
        self._conn: Any = None

    # -- the token --------------------------------------------------------------------------------

    def get_token(self) -> str:
        """
        Return the newest stored token that stays valid for at least ``margin`` seconds.

        When no stored token is valid for that long, fetch a new one, store it, and return it; when
        another process is already doing so, wait for it and return the token it stored. When the
        refresh fails, return a token that has not expired yet, with a warning.

        :raises TokenUnavailableError: no token is valid and none could be fetched.
        """
        stored = self._newest_valid()
        if stored is not None:
            self.log.debug("Using stored token %s, expires %s", fingerprint(stored.token), _z(stored))
            return stored.token
        return self._refresh_single_flight()

    @property
    def lock_name(self) -> str:
        """The advisory lock that makes the refresh single flight: one per database and table."""
        database = self._get_mysql_hook().schema or self._get_mysql_hook().connection.schema or ""
        name = f"{LOCK_PREFIX}{database}.{self.table}"
        if len(name) <= MAX_LOCK_NAME_LENGTH:
            return name
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        return LOCK_PREFIX + digest[: MAX_LOCK_NAME_LENGTH - len(LOCK_PREFIX)]

    def _refresh_single_flight(self) -> str:
        failure: BaseException | None = None
        with self._refresh_lock() as waited:
            if waited is None:
                failure = RefreshLockTimeoutError(
                    f"another process held the refresh lock {self.lock_name!r} for longer than "
                    f"{self.lock_timeout:g} s"
                )
            else:
                stored = self._newest_valid(reconnect=False)
                if stored is not None:
                    self.log.info(
                        "Token %s (expires %s) was stored by another process while this one waited "
                        "%.3f s for lock %r",
                        fingerprint(stored.token),
                        _z(stored),
                        waited,
                        self.lock_name,
                    )
                    return stored.token
                try:
                    return self._refresh()
                except ParkMobileTokenError as err:
                    failure = err
        return self._still_valid_after(failure)

    def _refresh(self) -> str:
        """Fetch a token and store it, the way the DAG does; return it."""
        from parkmobile_token.hooks import ParkMobileAuthHook

        self.log.info(
            "No token in %s stays valid for %d s; fetching one on connection %r",
            self.table,
            self.margin,
            self.http_conn_id,
        )
        auth = ParkMobileAuthHook(self.http_conn_id, retry_policy=self.retry_policy)
        # The token must outlive both the margin and the cleanup window, or it is of no use.
        min_lifetime = max(self.margin, self.store.cleanup_window)
        attempted_at, started = utcnow(), time.monotonic()
        try:
            token = auth.fetch_token(self.endpoint, scope=self.scope, min_lifetime=min_lifetime)
        except ParkMobileTokenError as err:
            self._record_attempt(
                attempted_at,
                started,
                outcome="failed",
                http_status=getattr(err, "status", None),
                error_class=getattr(err, "error_class", None) or type(err).__name__,
            )
            raise
        stored = self._store(token)
        self._record_attempt(attempted_at, started, outcome="stored" if stored else "fetched", token=token)
        return token.access_token

    def _record_attempt(
        self,
        attempted_at: datetime,
        started: float,
        *,
        outcome: str,
        token: TokenResponse | None = None,
        http_status: int | None = None,
        error_class: str | None = None,
    ) -> None:
        """Record an inline refresh in the history, as the DAG's runs are; never fail because of it."""
        from parkmobile_token.history import RefreshHistory, RefreshRecord

        record = RefreshRecord(
            attempted_at=attempted_at,
            outcome=outcome,
            run_id="inline",
            http_status=http_status,
            error_class=error_class,
            latency_ms=round((time.monotonic() - started) * 1000),
            lifetime_s=token.expires_in if token else None,
            expires=token.expires_at if token else None,
            fingerprint=token.fingerprint if token else None,
            stored_at=utcnow() if outcome == "stored" else None,
        )
        try:
            RefreshHistory(self.mysql_conn_id, self.history_table).record(record)
        # Best effort, like the DAG's own history writes: the refresh matters more than its record.
        except Exception as err:
            self.log.warning(
                "Could not record the inline refresh in %s (%s, error %s)",
                self.history_table,
                type(err).__name__,
                _error_code(err),
            )

    def _store(self, token: TokenResponse) -> bool:
        try:
            inserted = self.store.store(
                token.access_token,
                expires_at=token.expires_at,
                token_type=token.token_type,
                scope=token.scope,
            )
        # The driver's errors have no common base the package could name; none is swallowed silently.
        except Exception as err:
            self.log.warning(
                "Fetched token %s (expires %s) but could not store it in %s on connection %r (%s, "
                "error %s); returning it unstored, so other processes will fetch their own",
                token.fingerprint,
                isoformat_z(token.expires_at),
                self.table,
                self.mysql_conn_id,
                type(err).__name__,
                _error_code(err),
            )
            return False
        self.log.info(
            "Refreshed token inline on connection %r: fingerprint %s, expires %s, %s in %s",
            self.http_conn_id,
            token.fingerprint,
            isoformat_z(token.expires_at),
            "stored" if inserted else "already stored",
            self.table,
        )
        return True

    def _still_valid_after(self, failure: BaseException | None) -> str:
        """Return a token that has not expired yet, with a warning; raise when there is none."""
        stored = self._newest_unexpired()
        reason = f"{type(failure).__name__}: {failure}"
        if stored is None:
            unavailable = TokenUnavailableError(
                f"No valid ParkMobile token is left in {self.table} on connection {self.mysql_conn_id!r}, "
                f"and refreshing it on connection {self.http_conn_id!r} failed ({reason})"
            )
            unavailable.retryable = bool(getattr(failure, "retryable", False))
            raise unavailable from failure
        if stored.seconds_left is not None and stored.seconds_left > self.margin:
            # Another process stored a token just after this one stopped waiting for the lock.
            self.log.info(
                "Token %s (expires %s) was stored by another process meanwhile (%s)",
                fingerprint(stored.token),
                _z(stored),
                reason,
            )
            return stored.token
        self.log.warning(
            "Could not refresh the token on connection %r (%s); returning stored token %s, which "
            "expires %s, %s s from now, within the %d s margin",
            self.http_conn_id,
            reason,
            fingerprint(stored.token),
            _z(stored),
            stored.seconds_left,
            self.margin,
        )
        return stored.token

    # -- queries ------------------------------------------------------------------------------------

    def _newest_valid(self, *, reconnect: bool = True) -> _StoredToken | None:
        """Read the newest token valid for the margin: one query on the ``expires`` index."""
        statement = NEWEST_VALID_SQL.format(table=self.table)
        row = self._fetch_one(statement, (self.margin,), reconnect=reconnect)
        return _StoredToken(row[0], row[1]) if row else None

    def _newest_unexpired(self) -> _StoredToken | None:
        """Read the newest token that has not expired yet, however soon it will."""
        statement = (
            f"SELECT token, expires, TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), expires) FROM {self.table} "  # noqa: S608
            "WHERE expires > UTC_TIMESTAMP() ORDER BY expires DESC LIMIT 1"
        )
        row = self._fetch_one(statement, (), reconnect=True)
        return _StoredToken(row[0], row[1], int(row[2])) if row else None

    @contextmanager
    def _refresh_lock(self) -> Iterator[float | None]:
        """
        Hold the advisory lock on the hook's connection; yield the seconds waited, None on timeout.

        The lock belongs to the MySQL session, so nothing inside reconnects: a new session would not
        hold it. The server frees it when the session ends, whatever happens to this process.
        """
        name = self.lock_name
        started = time.monotonic()
        row = self._fetch_one("SELECT GET_LOCK(%s, %s)", (name, self.lock_timeout), reconnect=True)
        waited = time.monotonic() - started
        if not row or row[0] != 1:
            # 0 is a timeout; NULL an error such as the wait being killed.
            self.log.warning("Waited %.3f s for lock %r without getting it", waited, name)
            yield None
            return
        self.log.debug("Took lock %r after %.3f s", name, waited)
        holder = self._conn
        try:
            yield waited
        finally:
            self._release_lock(name, holder)

    def _release_lock(self, name: str, holder: Any) -> None:
        if self._conn is not holder:
            self.log.debug("The session that held lock %r is gone, and the lock with it", name)
            return
        try:
            self._fetch_one("SELECT RELEASE_LOCK(%s)", (name,), reconnect=False)
        # Whatever failed, the lock goes with the session, so closing the connection releases it.
        except Exception as err:
            self.log.warning(
                "Could not release lock %r (%s); closing the connection frees it", name, type(err).__name__
            )
            self.close()

    def _fetch_one(
        self, statement: str, params: tuple[Any, ...], *, reconnect: bool
    ) -> tuple[Any, ...] | None:
        """Run one statement on the hook's connection and return its first row; reconnect once if lost."""
        for attempt in (1, 2):
            conn = self.get_conn()
            try:
                with closing(conn.cursor()) as cursor:
                    cursor.execute(statement, params)
                    row = cursor.fetchone()
                    return tuple(row) if row is not None else None
            # Only a lost connection is handled here; every other error goes to the caller.
            except Exception as err:
                lost = _error_code(err) in CONNECTION_LOST_ERRORS
                if lost:
                    self.close()
                if not (lost and reconnect and attempt == 1):
                    raise
                self.log.info(
                    "MySQL connection %r was lost (error %s); reconnecting once",
                    self.mysql_conn_id,
                    _error_code(err),
                )
        raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover

    # -- connection ---------------------------------------------------------------------------------

    def get_conn(self) -> Any:
        """
        Return the hook's MySQL connection, opened on first use and kept for later calls.

        Its session runs in UTC, with autocommit on: each read sees the rows committed before it,
        not a snapshot from an earlier call.
        """
        if self._conn is None:
            mysql_hook = self._get_mysql_hook()
            conn = mysql_hook.get_conn()
            mysql_hook.set_autocommit(conn, True)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the hook's MySQL connection, if open; the next call opens a new one."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        # A connection the server already dropped may refuse even to close; it is gone either way.
        except Exception:
            self.log.debug("Closing the MySQL connection failed", exc_info=True)

    def __enter__(self) -> ParkMobileTokenHook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _get_mysql_hook(self) -> MySqlHook:
        if self._mysql_hook is None:
            self._mysql_hook = self.store.get_hook()
        return self._mysql_hook


def _z(stored: _StoredToken) -> str:
    return stored.expires.strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_code(err: BaseException) -> int | None:
    code = getattr(err, "errno", None)
    if code is None and err.args and isinstance(err.args[0], int):
        code = err.args[0]
    return code if isinstance(code, int) else None


__all__ = [
    "DEFAULT_LOCK_TIMEOUT_S",
    "DEFAULT_MARGIN_S",
    "ParkMobileTokenHook",
    "RefreshLockTimeoutError",
    "TokenUnavailableError",
]
