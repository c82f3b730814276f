"""
### Keep a valid ParkMobile access token in MySQL

Every 30 minutes this DAG asks ParkMobile's OAuth2 token endpoint for a new access token
(client-credentials grant), stores it with its UTC expiry in the token table, and then deletes the
tokens that expire within one minute. Services that call the ParkMobile API read the newest token
from that table.

* `fetch_token` posts the grant to `connect/token` on connection `parkmobile_auth`. It retries 5xx,
  408, 429 and network errors with backoff, and fails at once, without retries, on an OAuth error or
  a body that is not a token response.
* `store_token` inserts the token on connection `parkmobile_db`; a retry never stores it twice.
* `delete_expiring_tokens` deletes the rows expiring within one minute, never this run's token. It
  does not run when the fetch or the store failed, so a failed refresh never removes a valid token.
  It also purges refresh history older than `history_retention_days` and reports the time left on
  the newest token as a metric.

Every token request is recorded in the refresh history table `pm_api_token_refreshes` (outcome,
HTTP status or error class, latency, lifetime, expiry, fingerprint; never the token), which
`python -m parkmobile_token status` summarises. A failed run escalates only when
`alert_after_failed_runs` runs in a row stored no token, or the newest token has less than
`alert_when_token_left_s` left; the notifier is `alert_notifier` (default: one ERROR log line).

**Configure**

* `parkmobile_auth` (type `http`): host `auth.parkmobile.io`, schema `https`, login the client id,
  password the client secret. Extras: `auth_method` (`client_secret_post`, the default, or
  `client_secret_basic`), `scope`, `verify` (a CA bundle path), `proxies`, `timeout`.
* `parkmobile_db` (type `mysql`): the database that holds the tables `pm_api_tokens` and
  `pm_api_token_refreshes` (create both with `python -m parkmobile_token init-db`).
* A Fernet key (`[core] fernet_key`): the token crosses from one task to the next encrypted with it,
  so no token is ever readable in XCom or the UI. Without a key the fetch refuses to run.
* Optional `[parkmobile_token]` settings (or `AIRFLOW__PARKMOBILE_TOKEN__*` variables): `table`,
  `task_retries`, `task_retry_delay`, `fetch_max_attempts`, `fetch_backoff_initial`,
  `fetch_backoff_max`, `fetch_max_elapsed`, `fetch_retry_after_cap`, `history_table`,
  `history_retention_days`, `refresh_interval_s`, `alert_after_failed_runs`,
  `alert_when_token_left_s`, `alert_notifier`, `alert_notifier_kwargs`.

Triggering the DAG by hand does the same as a scheduled run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG
from airflow.sdk.configuration import conf

from parkmobile_token.config import DEFAULT_HISTORY_TABLE, DEFAULT_TABLE, SECTION
from parkmobile_token.notifications import FailureEscalation
from parkmobile_token.operators import (
    ParkMobileTokenCleanupOperator,
    ParkMobileTokenOperator,
    ParkMobileTokenStoreOperator,
)

TABLE = conf.get(SECTION, "table", fallback=DEFAULT_TABLE)
HISTORY_TABLE = conf.get(SECTION, "history_table", fallback=DEFAULT_HISTORY_TABLE)

with DAG(
    dag_id="update_parkmobile_token",
    description="Refresh the ParkMobile OAuth2 access token in MySQL every 30 minutes",
    schedule="*/30 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=25),
    default_args={
        "owner": "platform",
        "retries": conf.getint(SECTION, "task_retries", fallback=3),
        "retry_delay": timedelta(seconds=conf.getfloat(SECTION, "task_retry_delay", fallback=60)),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=5),
    },
    tags=["parkmobile", "oauth2", "tokens"],
    doc_md=__doc__,
    on_failure_callback=FailureEscalation(table=TABLE, history_table=HISTORY_TABLE),
) as dag:
    fetch_token = ParkMobileTokenOperator(task_id="fetch_token", history_table=HISTORY_TABLE)
    store_token = ParkMobileTokenStoreOperator(
        task_id="store_token", table=TABLE, history_table=HISTORY_TABLE
    )
    delete_expiring_tokens = ParkMobileTokenCleanupOperator(
        task_id="delete_expiring_tokens", table=TABLE, history_table=HISTORY_TABLE
    )

    fetch_token >> store_token >> delete_expiring_tokens
