"""
Settings of the token job, read from Airflow's configuration section ``[parkmobile_token]``.

Each setting can also be given as an environment variable, for example
``AIRFLOW__PARKMOBILE_TOKEN__FETCH_MAX_ATTEMPTS=5``. Reading them never touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "parkmobile_token"

DEFAULT_AUTH_CONN_ID = "parkmobile_auth"
DEFAULT_DB_CONN_ID = "parkmobile_db"
DEFAULT_TABLE = "pm_api_tokens"
DEFAULT_HISTORY_TABLE = "pm_api_token_refreshes"
DEFAULT_ENDPOINT = "connect/token"
#: Rows whose ``expires`` falls within this many seconds from now are deleted by the cleanup.
DEFAULT_CLEANUP_WINDOW_S = 60
#: Seconds the token request may take to connect and to answer.
DEFAULT_REQUEST_TIMEOUT_S = 10.0
#: Largest token response body read, in bytes; a larger one is refused unread.
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class FetchRetryPolicy:
    """
    How ``fetch_token`` retries transient failures inside one task attempt.

    :param max_attempts: requests sent at most, the first included.
    :param backoff_initial: seconds before the first retry; doubled for each later one.
    :param backoff_max: longest wait between two attempts, before jitter.
    :param jitter: up to this many random seconds added to each wait.
    :param max_elapsed: no new attempt starts once this many seconds have passed.
    :param retry_after_cap: a server's ``Retry-After`` is honoured up to this many seconds.
    """

    max_attempts: int = 4
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 1.0
    max_elapsed: float = 120.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("backoff_initial", "backoff_max", "jitter", "max_elapsed", "retry_after_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @classmethod
    def from_config(cls) -> FetchRetryPolicy:
        """Read the policy from ``[parkmobile_token] fetch_*`` settings, defaults where unset."""
        from airflow.sdk.configuration import conf

        default = cls()
        return cls(
            max_attempts=conf.getint(SECTION, "fetch_max_attempts", fallback=default.max_attempts),
            backoff_initial=conf.getfloat(SECTION, "fetch_backoff_initial", fallback=default.backoff_initial),
            backoff_max=conf.getfloat(SECTION, "fetch_backoff_max", fallback=default.backoff_max),
            jitter=conf.getfloat(SECTION, "fetch_backoff_jitter", fallback=default.jitter),
            max_elapsed=conf.getfloat(SECTION, "fetch_max_elapsed", fallback=default.max_elapsed),
            retry_after_cap=conf.getfloat(SECTION, "fetch_retry_after_cap", fallback=default.retry_after_cap),
        )
