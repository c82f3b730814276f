"""Exceptions raised by the ParkMobile token package; none of them ever carries a token or secret."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException


class ParkMobileTokenError(AirflowException):
    """Base class of every error this package raises."""

    #: Whether trying again later can succeed. Permanent errors fail the task with no retry.
    retryable: bool = False


class ConnectionConfigError(ParkMobileTokenError):
    """An Airflow connection is set up in a way the job refuses to use."""


class TokenEndpointError(ParkMobileTokenError):
    """The token endpoint could not be reached or answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        conn_id: str,
        status: int | None = None,
        error_class: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.conn_id = conn_id
        self.status = status
        self.error_class = error_class
        self.retryable = retryable
        self.retry_after = retry_after


class OAuthErrorResponse(TokenEndpointError):
    """The token endpoint refused the request with an OAuth 2.0 error answer (RFC 6749 section 5.2)."""


class InvalidTokenResponse(TokenEndpointError):
    """The token endpoint answered with a body that is not a usable token response."""


class TokenSealError(ParkMobileTokenError):
    """A token could not be encrypted or decrypted for its hand-over between tasks."""


class TokenNotFetchedError(ParkMobileTokenError):
    """A task needs the token fetched earlier in the same DAG run, and there is none."""


class TokenExpiredError(ParkMobileTokenError):
    """A fetched token expired, or is about to, before it could be stored."""


class InvalidTableNameError(ParkMobileTokenError):
    """A configured table name is not a plain SQL identifier."""
