"""
Operators of the token refresh: fetch a token, store it, delete expiring ones.

The token travels from ``fetch_token`` to ``store_token`` through XCom encrypted with Airflow's
Fernet key, so neither XCom, nor the UI, nor a task log ever holds it readable. Providers are imported
when a task runs, not when a DAG file is parsed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from parkmobile_token.config import (
    DEFAULT_AUTH_CONN_ID,
    DEFAULT_CLEANUP_WINDOW_S,
    DEFAULT_DB_CONN_ID,
    DEFAULT_ENDPOINT,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_TABLE,
)
from parkmobile_token.exceptions import ParkMobileTokenError, TokenNotFetchedError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from parkmobile_token.config import FetchRetryPolicy

#: Keys of the XCom ``fetch_token`` returns. The token itself is only ever in ``sealed_token``.
FETCHED_KEYS = ("sealed_token", "token_sha256", "fingerprint", "expires_at", "lifetime_s", "scope")


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

    def execute(self, context: Context) -> dict[str, Any]:
        from parkmobile_token.hooks import ParkMobileAuthHook
        from parkmobile_token.sealing import seal_token

        hook = ParkMobileAuthHook(
            self.http_conn_id,
            auth_method=self.auth_method,
            timeout=self.timeout,
            retry_policy=self.fetch_retry_policy,
        )
        try:
            token = hook.fetch_token(self.endpoint, scope=self.scope, min_lifetime=self.cleanup_window)
            sealed = seal_token(token.access_token)
        except ParkMobileTokenError as err:
            if err.retryable:
                raise
            raise _fail_permanently(err) from err

        expires_at = token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.log.info(
            "Fetched token on connection %r: fingerprint %s, lifetime %d s, expires %s",
            self.http_conn_id,
            token.fingerprint,
            token.expires_in,
            expires_at,
        )
        return {
            "sealed_token": sealed,
            "token_sha256": token.sha256,
            "fingerprint": token.fingerprint,
            "expires_at": token.expires_at.isoformat(),
            "lifetime_s": token.expires_in,
            "scope": token.scope,
        }


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
    """

    template_fields: Sequence[str] = ("mysql_conn_id", "table")
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        fetch_task_id: str = "fetch_token",
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_TABLE,
        cleanup_window: int = DEFAULT_CLEANUP_WINDOW_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fetch_task_id = fetch_task_id
        self.mysql_conn_id = mysql_conn_id
        self.table = table
        self.cleanup_window = cleanup_window

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
        return {
            "fingerprint": fetched["fingerprint"],
            "expires_at": fetched["expires_at"],
            "inserted": inserted,
        }


class ParkMobileTokenCleanupOperator(_FetchedTokenMixin, BaseOperator):
    """
    Delete tokens that expire within the cleanup window, never the one this DAG run stored.

    :param fetch_task_id: the task whose XCom names this run's token; run alone, nothing is spared
        but what the window and the row age spare.
    :param mysql_conn_id: the MySQL connection. (templated)
    :param table: the token table. (templated)
    :param cleanup_window: rows whose ``expires`` is within this many seconds from now are deleted.
    :param batch_size: rows deleted per statement.
    """

    template_fields: Sequence[str] = ("mysql_conn_id", "table")
    ui_color = "#f0f0f0"

    def __init__(
        self,
        *,
        fetch_task_id: str = "fetch_token",
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_TABLE,
        cleanup_window: int = DEFAULT_CLEANUP_WINDOW_S,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fetch_task_id = fetch_task_id
        self.mysql_conn_id = mysql_conn_id
        self.table = table
        self.cleanup_window = cleanup_window
        self.batch_size = batch_size

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
        return deleted
