"""
### Call the ParkMobile API with the stored access token

An example of the pattern every task that calls ParkMobile can follow: take a valid token from
`ParkMobileTokenHook`, send it as `Authorization: Bearer ...`, and return only what is not secret.

* `ping_parkmobile_api` gets the token with `ParkMobileTokenHook().get_token()`: the newest token in
  `pm_api_tokens` that stays valid for another minute, or, when there is none, a new one fetched and
  stored inline, once for all the processes that need one at that moment. It then calls
  `GET v1/ping` on connection `parkmobile_api` and returns the HTTP status code.
* The token is never logged, returned, or put in a templated field: the task returns
  `{"status_code": 200}`, and its return value is not logged.

**Configure**

* `parkmobile_api` (type `http`): the ParkMobile API's host, schema `https`, no login (a login would
  make the HTTP hook send Basic auth in place of the token). Extras: `verify` (a CA bundle path),
  `timeout`, `proxies`.
* `parkmobile_db` and `parkmobile_auth`, as for the DAG `update_parkmobile_token`.

The DAG has no schedule: trigger it by hand.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

log = logging.getLogger(__name__)

API_CONN_ID = "parkmobile_api"
PING_ENDPOINT = "v1/ping"


@dag(
    dag_id="example_parkmobile_api_call",
    description="Call the ParkMobile API with the stored OAuth2 access token",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["parkmobile", "example"],
    doc_md=__doc__,
    default_args={"owner": "platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
)
def example_parkmobile_api_call() -> None:
    """Call ``GET v1/ping`` on the ParkMobile API with a valid access token."""

    @task(show_return_value_in_logs=False)
    def ping_parkmobile_api() -> dict[str, Any]:
        """Send one authenticated request and return its status code, never the token."""
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk.exceptions import AirflowException

        from parkmobile_token.token_hook import ParkMobileTokenHook

        with ParkMobileTokenHook() as tokens:
            token = tokens.get_token()
        api = HttpHook(method="GET", http_conn_id=API_CONN_ID)
        response = api.run(
            PING_ENDPOINT,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            # The status is checked below, without logging the body; a bearer token follows no redirect.
            extra_options={"check_response": False, "allow_redirects": False, "timeout": 30},
        )
        if response.status_code != 200:
            raise AirflowException(
                f"GET {PING_ENDPOINT} on connection {API_CONN_ID!r} answered HTTP {response.status_code}"
            )
        log.info("GET %s on connection %r answered HTTP %d", PING_ENDPOINT, API_CONN_ID, response.status_code)
        return {"status_code": response.status_code}

    ping_parkmobile_api()


example_parkmobile_api_call()
