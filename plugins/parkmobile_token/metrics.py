"""
Metrics of the token refresh, sent through Airflow's own stats client.

They go wherever Airflow's ``[metrics]`` section sends its own: StatsD (``statsd_on``, which needs the
``statsd`` package), Datadog's DogStatsD, or OpenTelemetry; nowhere when none is on. The configured
``statsd_prefix`` (``airflow`` by default) comes first, so a StatsD server sees, for example,
``airflow.parkmobile_token.fetch.latency``.

No metric name or tag ever holds a token: the error class is an OAuth error code (``invalid_client``),
``http_503``, ``tls_error`` or an exception's class name. Sending a metric never fails a task.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Timing, in milliseconds: the whole fetch, in-task retries and their waits included.
FETCH_LATENCY = "parkmobile_token.fetch.latency"
#: Counter: fetches that returned a token.
FETCH_SUCCESS = "parkmobile_token.fetch.success"
#: Counter: failed fetches, tagged ``error_class``; ``parkmobile_token.fetch.failure.<error_class>``
#: counts the same for backends without tags (plain StatsD).
FETCH_FAILURE = "parkmobile_token.fetch.failure"
#: Gauge, in seconds: the lifetime (``expires_in``) of the token just fetched.
TOKEN_LIFETIME = "parkmobile_token.token.lifetime"
#: Gauge, in seconds: the time left on the newest token in the table, after the cleanup; 0 when none.
TOKEN_TIME_LEFT = "parkmobile_token.token.time_left"


def fetch_succeeded(*, latency_ms: float, lifetime_s: int) -> None:
    """Count a fetch that returned a token, with its latency and the token's lifetime."""
    try:
        from airflow.sdk.observability import stats

        stats.timing(FETCH_LATENCY, latency_ms, tags={"outcome": "success"})
        stats.incr(FETCH_SUCCESS)
        stats.gauge(TOKEN_LIFETIME, lifetime_s)
    except Exception as err:  # a metrics backend never decides whether a token is refreshed
        _warn(FETCH_SUCCESS, err)


def fetch_failed(*, latency_ms: float, error_class: str) -> None:
    """Count a failed fetch by its error class, with its latency."""
    try:
        from airflow.sdk.observability import stats

        name = stats.normalize_name_for_stats(error_class, log_warning=False)
        stats.timing(FETCH_LATENCY, latency_ms, tags={"outcome": "failure"})
        stats.incr(FETCH_FAILURE, tags={"error_class": name})
        stats.incr(f"{FETCH_FAILURE}.{name}")
    except Exception as err:  # a metrics backend never decides whether a token is refreshed
        _warn(FETCH_FAILURE, err)


def token_time_left(seconds: float) -> None:
    """Report the time left on the newest stored token; a negative value is sent as 0."""
    try:
        from airflow.sdk.observability import stats

        stats.gauge(TOKEN_TIME_LEFT, max(seconds, 0))
    except Exception as err:  # a metrics backend never decides whether a token is refreshed
        _warn(TOKEN_TIME_LEFT, err)


def _warn(metric: str, err: Exception) -> None:
    log.warning("Metric %s was not sent: %s", metric, type(err).__name__)
