"""
Operators of the token refresh: fetch a token, store it, delete expiring ones.

The token travels from ``fetch_token`` to ``store_token`` through XCom encrypted with Airflow's
Fernet key, so neither XCom, nor the UI, nor a task log ever holds it readable. Providers are imported
when a task runs, not when a DAG file is parsed.

Each fetch is recorded in the refresh history table: the fetch task inserts the row (``fetched`` or
``failed``) and hands its id on through XCom, the store task marks it ``stored``, and the cleanup
task purges rows past their retention. Recording is best effort: when the history cannot be written
the task logs a warning and goes on, so the history never fails a refresh nor hides its error.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from parkmobile_token.clock import utcnow
from parkmobile_token.config import (
    DEFAULT_AUTH_CONN_ID,
    DEFAULT_CLEANUP_WINDOW_S,
    DEFAULT_DB_CONN_ID,
    DEFAULT_ENDPOINT,
    DEFAULT_HISTORY_TABLE,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_TABLE,
)
from parkmobile_token.exceptions import ParkMobileTokenError, TokenEndpointError, TokenNotFetchedError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from parkmobile_token.config import FetchRetryPolicy
    from parkmobile_token.history import RefreshHistory
    from parkmobile_token.response import TokenResponse

#: Keys of the XCom ``fetch_token`` returns. The token itself is only ever in ``sealed_token``;
#: ``history_id`` is the refresh history row of the fetch, None when it could not be written.
FETCHED_KEYS = (
    "sealed_token",
    "token_sha256",
    "fingerprint",
    "expires_at",
    "lifetime_s",
    "scope",
    "history_id",
)


def _fail_permanently(err: ParkMobileTokenError) -> AirflowFailException:
    """Turn an error that no retry can mend into one that also skips Airflow's task retries."""
    return AirflowFailException(str(err))


class ParkMobileTokenOperator(BaseOperator):
    """
    Fetch a ParkMobile access token with the client-credentials grant.

    Transient failures (5xx, 408, 429, timeouts, refused connections) are retried inside the task;
    when they persist the task fails and Airflow's own retries follow. Permanent failures (an OAuth
    error answer, a body that is not a token response, a failed TLS check, an unsafe connection) fail
    the task at once, with no retry of any kind.

    Returns, as XCom, the token encrypted with Airflow's Fernet key plus its fingerprint and expiry.

    :param http_conn_id: the auth server's connection; login is the client id, password the secret.
        (templated)
    :param endpoint: path of the token endpoint. (templated)
    :param scope: scope to ask for; the connection's ``scope`` extra when None. (templated)
    :param auth_method: ``client_secret_post`` or ``client_secret_basic``; the connection's
        ``auth_method`` extra when None.
    :param timeout: seconds to connect and to wait for the answer.
    :param cleanup_window: seconds a token must outlive; a shorter lifetime is refused.
    :param fetch_retry_policy: in-task retries of transient failures; the ``[parkmobile_token]``
        settings when None.
    :param mysql_conn_id: the MySQL connection of the refresh history.
    :param history_table: the refresh history table; None records nothing.
    :param refresh_interval: seconds between two scheduled refreshes, to warn of a token that lives too
        short for them; when None, read from the DAG's timetable, else ``[parkmobile_token]
        refresh_interval_s``.
    """

    template_fields: Sequence[str] = ("http_conn_id", "endpoint", "scope")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        http_conn_id: str = DEFAULT_AUTH_CONN_ID,
        endpoint: str = DEFAULT_ENDPOINT,
        scope: str | None = None,
        auth_method: str | None = None,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        cleanup_window: int = DEFAULT_CLEANUP_WINDOW_S,
        fetch_retry_policy: FetchRetryPolicy | None = None,
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        history_table: str | None = DEFAULT_HISTORY_TABLE,
        refresh_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint
        self.scope = scope
        self.auth_method = auth_method
        self.timeout = timeout
        self.cleanup_window = cleanup_window
        self.fetch_retry_policy = fetch_retry_policy
        self.mysql_conn_id = mysql_conn_id
        self.history_table = history_table
        self.refresh_interval = refresh_interval

    def execute(self, context: Context) -> dict[str, Any]:
        from parkmobile_token import metrics
        from parkmobile_token.history import FETCHED
        from parkmobile_token.hooks import ParkMobileAuthHook
        from parkmobile_token.sealing import seal_token

        hook = ParkMobileAuthHook(
            self.http_conn_id,
            auth_method=self.auth_method,
            timeout=self.timeout,
            retry_policy=self.fetch_retry_policy,
        )
        attempted_at = utcnow()
        started = time.monotonic()
        latency_ms: int | None = None
        try:
            token = hook.fetch_token(self.endpoint, scope=self.scope, min_lifetime=self.cleanup_window)
            latency_ms = _elapsed_ms(started)
            sealed = seal_token(token.access_token)
        except Exception as err:
            elapsed = latency_ms if latency_ms is not None else _elapsed_ms(started)
            self._record_failure(context, err, attempted_at, elapsed)
            if isinstance(err, ParkMobileTokenError) and not err.retryable:
                raise _fail_permanently(err) from err
            raise

        short_lifetime = self._warn_of_short_lifetime(context, token)
        history_id = self._record(
            context,
            outcome=FETCHED,
            attempted_at=attempted_at,
            latency_ms=latency_ms,
            lifetime_s=token.expires_in,
            expires=token.expires_at,
            fingerprint=token.fingerprint,
            short_lifetime=short_lifetime,
        )
        metrics.fetch_succeeded(latency_ms=latency_ms, lifetime_s=token.expires_in)
        expires_at = token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.log.info(
            "Fetched token on connection %r: fingerprint %s, lifetime %d s, expires %s; fetch took %d ms",
            self.http_conn_id,
            token.fingerprint,
            token.expires_in,
            expires_at,
            latency_ms,
        )
        return {
            "sealed_token": sealed,
            "token_sha256": token.sha256,
            "fingerprint": token.fingerprint,
            "expires_at": token.expires_at.isoformat(),
            "lifetime_s": token.expires_in,
            "scope": token.scope,
            "history_id": history_id,
        }

    def refresh_interval_s(self, context: Context) -> float:
        """Return the seconds between two scheduled refreshes: the argument, the timetable or the setting."""
        from parkmobile_token.history import HistorySettings, schedule_interval_s

        if self.refresh_interval is not None:
            return float(self.refresh_interval)
        dag = context.get("dag")
        interval = schedule_interval_s(getattr(dag, "timetable", None), now=utcnow())
        if interval is not None:
            return interval
        return HistorySettings.from_config().refresh_interval_s

    def _warn_of_short_lifetime(self, context: Context, token: TokenResponse) -> bool:
        from parkmobile_token.history import SHORT_LIFETIME_SHARE, is_short_lifetime

        interval = self.refresh_interval_s(context)
        if not is_short_lifetime(token.expires_in, interval):
            return False
        self.log.warning(
            "Token %s lives %d s, but the next scheduled refresh comes %d s after this one, later than "
            "%d%% of that lifetime: one failed refresh leaves the clients with an expired token. Refresh "
            "more often, or ask ParkMobile for a longer lifetime",
            token.fingerprint,
            token.expires_in,
            interval,
            round(SHORT_LIFETIME_SHARE * 100),
        )
        return True

    def _record_failure(
        self, context: Context, err: Exception, attempted_at: datetime, latency_ms: int
    ) -> None:
        from parkmobile_token import metrics
        from parkmobile_token.history import FAILED

        status = err.status if isinstance(err, TokenEndpointError) else None
        error_class = (err.error_class if isinstance(err, TokenEndpointError) else None) or type(err).__name__
        metrics.fetch_failed(latency_ms=latency_ms, error_class=error_class)
        self._record(
            context,
            outcome=FAILED,
            attempted_at=attempted_at,
            latency_ms=latency_ms,
            http_status=status,
            error_class=error_class,
        )

    def _record(self, context: Context, **fields: Any) -> int | None:
        """Insert this attempt's history row and return its id; None, with a warning, when it fails."""
        from parkmobile_token.history import RefreshRecord

        history = _history_or_none(self, self.mysql_conn_id, self.history_table)
        if history is None:
            return None
        ti = context.get("ti")
        dag = context.get("dag")
        try:
            record = RefreshRecord(
                dag_id=getattr(dag, "dag_id", None),
                run_id=context.get("run_id"),
                try_number=getattr(ti, "try_number", None),
                **fields,
            )
            return history.record(record)
        except Exception as err:  # the history never fails a refresh nor hides its error
            _warn_history(self, "This fetch was not recorded", history.table, err)
            return None


class _FetchedTokenMixin:
    """Read what ``fetch_token`` returned in the same DAG run."""

    fetch_task_id: str

    def fetched_token(self, context: Context, *, required: bool) -> dict[str, Any] | None:
        fetched = context["ti"].xcom_pull(task_ids=self.fetch_task_id)
        if isinstance(fetched, dict) and set(FETCHED_KEYS) <= fetched.keys():
            return fetched
        if not required:
            return None
        dag_id = context["dag"].dag_id
        raise AirflowFailException(
            str(
                TokenNotFetchedError(
                    f"No token was fetched by task {self.fetch_task_id!r} in this DAG run, so there is "
                    "nothing to store. `airflow tasks test` runs a task alone, without its upstream "
                    f"results; run the whole DAG instead: airflow dags test {dag_id}"
                )
            )
        )


class ParkMobileTokenStoreOperator(_FetchedTokenMixin, BaseOperator):
    """
    Store the token fetched earlier in this DAG run in the token table.

    Storing is idempotent: a retry after a commit finds the token already there and stores nothing.

    :param fetch_task_id: the task whose XCom holds the sealed token.
    :param mysql_conn_id: the MySQL connection. (templated)
    :param table: the token table. (templated)
    :param cleanup_window: a token expiring within this many seconds is not stored.
    :param history_table: the refresh history table, whose row of the fetch is marked ``stored``;
        None records nothing. (templated)
    """

    template_fields: Sequence[str] = ("mysql_conn_id", "table", "history_table")
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        fetch_task_id: str = "fetch_token",
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_TABLE,
        cleanup_window: int = DEFAULT_CLEANUP_WINDOW_S,
        history_table: str | None = DEFAULT_HISTORY_TABLE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fetch_task_id = fetch_task_id
        self.mysql_conn_id = mysql_conn_id
        self.table = table
        self.cleanup_window = cleanup_window
        self.history_table = history_table

    def execute(self, context: Context) -> dict[str, Any]:
        from parkmobile_token.sealing import unseal_token
        from parkmobile_token.store import TokenStore

        fetched = self.fetched_token(context, required=True)
        assert fetched is not None  # required=True raises instead
        try:
            store = TokenStore(self.mysql_conn_id, self.table, cleanup_window=self.cleanup_window)
            inserted = store.store(
                unseal_token(fetched["sealed_token"]),
                expires_at=datetime.fromisoformat(fetched["expires_at"]),
                scope=fetched["scope"],
            )
        except ParkMobileTokenError as err:
            raise _fail_permanently(err) from err

        if inserted:
            self.log.info(
                "Stored token in %s: fingerprint %s, expires %s",
                self.table,
                fetched["fingerprint"],
                fetched["expires_at"],
            )
        else:
            self.log.info(
                "Token %s is already stored in %s (an earlier attempt committed it); nothing to do",
                fetched["fingerprint"],
                self.table,
            )
        self._mark_stored(fetched.get("history_id"))
        return {
            "fingerprint": fetched["fingerprint"],
            "expires_at": fetched["expires_at"],
            "inserted": inserted,
        }

    def _mark_stored(self, history_id: Any) -> None:
        if not isinstance(history_id, int):
            return
        history = _history_or_none(self, self.mysql_conn_id, self.history_table)
        if history is None:
            return
        try:
            if not history.mark_stored(history_id, stored_at=utcnow()):
                self.log.warning(
                    "Refresh history row %d is gone from %s; not marked stored", history_id, history.table
                )
        except Exception as err:  # the history never fails a refresh nor hides its error
            _warn_history(self, "The stored token was not recorded", history.table, err)


class ParkMobileTokenCleanupOperator(_FetchedTokenMixin, BaseOperator):
    """
    Delete tokens that expire within the cleanup window, never the one this DAG run stored.

    :param fetch_task_id: the task whose XCom names this run's token; run alone, nothing is spared
        but what the window and the row age spare.
    :param mysql_conn_id: the MySQL connection. (templated)
    :param table: the token table. (templated)
    :param cleanup_window: rows whose ``expires`` is within this many seconds from now are deleted.
    :param batch_size: rows deleted per statement, in the token table and in the history.
    :param history_table: the refresh history table to purge; None purges nothing. (templated)
    :param history_retention_days: history rows attempted longer ago are purged; when None,
        ``[parkmobile_token] history_retention_days``.
    """

    template_fields: Sequence[str] = ("mysql_conn_id", "table", "history_table")
    ui_color = "#f0f0f0"

    def __init__(
        self,
        *,
        fetch_task_id: str = "fetch_token",
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_TABLE,
        cleanup_window: int = DEFAULT_CLEANUP_WINDOW_S,
        batch_size: int = 1000,
        history_table: str | None = DEFAULT_HISTORY_TABLE,
        history_retention_days: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fetch_task_id = fetch_task_id
        self.mysql_conn_id = mysql_conn_id
        self.table = table
        self.cleanup_window = cleanup_window
        self.batch_size = batch_size
        self.history_table = history_table
        self.history_retention_days = history_retention_days

    def execute(self, context: Context) -> int:
        from parkmobile_token.store import TokenStore

        fetched = self.fetched_token(context, required=False)
        keep = fetched["token_sha256"] if fetched else None
        try:
            store = TokenStore(
                self.mysql_conn_id,
                self.table,
                cleanup_window=self.cleanup_window,
                delete_batch_size=self.batch_size,
            )
        except ParkMobileTokenError as err:
            raise _fail_permanently(err) from err
        deleted = store.delete_expiring(keep_sha256=keep)
        self.log.info(
            "Deleted %d token(s) from %s expiring within %d s", deleted, self.table, self.cleanup_window
        )
        self._purge_history()
        self._report_time_left(store)
        return deleted

    def _purge_history(self) -> None:
        from parkmobile_token.history import HistorySettings

        history = _history_or_none(self, self.mysql_conn_id, self.history_table, batch_size=self.batch_size)
        if history is None:
            return
        try:
            days = self.history_retention_days or HistorySettings.from_config().retention_days
            purged = history.purge(retention_days=days)
        except Exception as err:  # the history never fails a refresh nor hides its error
            _warn_history(self, "Old refresh history was not purged", history.table, err)
            return
        self.log.info(
            "Purged %d refresh history row(s) older than %d day(s) from %s", purged, days, history.table
        )

    def _report_time_left(self, store: Any) -> None:
        from parkmobile_token import metrics

        try:
            newest = store.newest()
        except Exception as err:  # the metric is a report; the cleanup itself is done
            self.log.warning("Time left on the newest token was not reported: %s", type(err).__name__)
            return
        if newest is None:
            self.log.warning("No token is left in %s", self.table)
            metrics.token_time_left(0)
            return
        self.log.info(
            "Newest token in %s: fingerprint %s, %d s left",
            self.table,
            newest.fingerprint,
            newest.seconds_left,
        )
        metrics.token_time_left(newest.seconds_left)


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _history_or_none(
    operator: BaseOperator, mysql_conn_id: str, table: str | None, *, batch_size: int = 1000
) -> RefreshHistory | None:
    """Return the refresh history of ``table``, or None when it is off or misnamed (with a warning)."""
    from parkmobile_token.history import RefreshHistory

    if table is None:
        return None
    try:
        return RefreshHistory(mysql_conn_id, table, purge_batch_size=batch_size)
    except ParkMobileTokenError as err:
        operator.log.warning("The refresh history is off: %s", err)
        return None


def _warn_history(operator: BaseOperator, what: str, table: str, err: Exception) -> None:
    # MySQL's messages name tables and columns, never a value of this package: no token, no secret.
    operator.log.warning(
        "%s in the refresh history %s: %s: %s; the refresh goes on. Create the table with "
        "`python -m parkmobile_token init-db` if it is missing",
        what,
        table,
        type(err).__name__,
        err,
    )
