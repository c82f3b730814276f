"""
Pure helpers that turn a token endpoint's HTTP answer into a token or a precise error.

Nothing here talks to the network or to Airflow, so every rule of RFC 6749 sections 5.1 and 5.2
that the job relies on is tested on its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from parkmobile_token.clock import fingerprint, token_sha256
from parkmobile_token.exceptions import InvalidTokenResponse, OAuthErrorResponse, TokenEndpointError

#: Answers worth asking again: the server or something in between was briefly unable to answer.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: The error codes RFC 6749 section 5.2 defines for the token endpoint.
OAUTH_ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)

# An error code outside the RFC's list is named only when it looks like one; anything else from the
# body is never repeated.
_ERROR_CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DIGITS = re.compile(r"[0-9]{1,10}")
#: The longest lifetime accepted: ten digits of seconds, about 317 years, which any date can still hold.
MAX_EXPIRES_IN = 9_999_999_999


@dataclass(frozen=True)
class TokenResponse:
    """
    A validated access token and when it expires.

    The token itself is left out of ``repr`` so that a stray log call or traceback cannot show it.
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    requested_at: datetime
    scope: str | None = None

    @property
    def expires_at(self) -> datetime:
        """When the token stops being valid, counted from just before the request was sent."""
        return self.requested_at + timedelta(seconds=self.expires_in)

    @property
    def fingerprint(self) -> str:
        """A short hash that names the token in logs and XCom."""
        return fingerprint(self.access_token)

    @property
    def sha256(self) -> str:
        """The full hex SHA-256 of the token, as the token table stores it."""
        return token_sha256(self.access_token)


def parse_token_response(
    body: bytes, *, requested_at: datetime, conn_id: str, min_lifetime: int, status: int = 200
) -> TokenResponse:
    """
    Validate a successful answer of the token endpoint as RFC 6749 section 5.1 describes it.

    :param body: the raw response body.
    :param requested_at: the moment just before the request was sent, aware and in UTC.
    :param conn_id: the Airflow connection the request used, named in errors.
    :param min_lifetime: seconds the token must outlive; shorter lifetimes are refused.
    :param status: the HTTP status, named in errors.
    :raises InvalidTokenResponse: the body is not a usable token response.
    """
    payload = _decode_json_object(body)
    if payload is None:
        raise _invalid(conn_id, status, "the body is not a JSON object")

    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token.strip():
        raise _invalid(conn_id, status, "access_token is missing or not a non-empty string")

    token_type = payload.get("token_type")
    if not isinstance(token_type, str) or token_type.casefold() != "bearer":
        raise _invalid(conn_id, status, "token_type is missing or not Bearer")

    if "expires_in" not in payload:
        raise _invalid(
            conn_id, status, "expires_in is missing, and the job needs the lifetime to store the expiry"
        )
    expires_in = parse_expires_in(payload["expires_in"])
    if expires_in is None:
        raise _invalid(conn_id, status, "expires_in is not a positive whole number of seconds")
    if expires_in <= min_lifetime:
        raise _invalid(
            conn_id,
            status,
            f"expires_in of {expires_in} s does not outlive the {min_lifetime} s cleanup window, "
            "so the token would be deleted as soon as it is stored",
        )

    scope = payload.get("scope")
    return TokenResponse(
        access_token=access_token,
        token_type="Bearer",
        expires_in=expires_in,
        requested_at=requested_at,
        scope=scope if isinstance(scope, str) else None,
    )


def parse_expires_in(value: Any) -> int | None:
    """
    Return ``expires_in`` as whole seconds, or None when it is not a positive whole number.

    Numbers that arrive as strings of digits are accepted, as many servers send them that way.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        seconds = int(value.strip())
    else:
        return None
    return seconds if 0 < seconds <= MAX_EXPIRES_IN else None


def error_for_status(
    status: int, body: bytes, *, conn_id: str, retry_after: float | None = None
) -> TokenEndpointError:
    """
    Build the error for a non-200 answer; the body is read for the OAuth ``error`` code only.

    :param status: the HTTP status of the answer.
    :param body: the raw response body.
    :param conn_id: the Airflow connection the request used.
    :param retry_after: seconds the server asked to wait, from ``Retry-After``.
    """
    if status in TRANSIENT_STATUSES:
        return TokenEndpointError(
            f"Token endpoint on connection {conn_id!r} answered HTTP {status}, a transient error",
            conn_id=conn_id,
            status=status,
            error_class=f"http_{status}",
            retryable=True,
            retry_after=retry_after,
        )
    if 300 <= status < 400:
        return TokenEndpointError(
            f"Token endpoint on connection {conn_id!r} answered HTTP {status}, a redirect; redirects are "
            "not followed with client credentials, so point the connection at the final token URL",
            conn_id=conn_id,
            status=status,
            error_class="redirect",
        )
    error_code = oauth_error_code(body)
    if error_code is not None:
        return OAuthErrorResponse(
            f"Token endpoint on connection {conn_id!r} refused the request: HTTP {status}, "
            f"OAuth error {error_code!r}",
            conn_id=conn_id,
            status=status,
            error_class=error_code,
        )
    return TokenEndpointError(
        f"Token endpoint on connection {conn_id!r} answered HTTP {status} without an OAuth error code",
        conn_id=conn_id,
        status=status,
        error_class=f"http_{status}",
    )


def oauth_error_code(body: bytes) -> str | None:
    """Return the ``error`` code of an RFC 6749 section 5.2 answer, ``"unrecognised"`` or None."""
    payload = _decode_json_object(body)
    if payload is None or "error" not in payload:
        return None
    code = payload["error"]
    if isinstance(code, str) and (code in OAUTH_ERROR_CODES or _ERROR_CODE_PATTERN.fullmatch(code)):
        return code
    return "unrecognised"


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """
    Return the seconds a ``Retry-After`` header asks to wait, or None when absent or unreadable.

    :param value: the header value: a number of seconds or an HTTP date.
    :param now: the current time, aware, to measure an HTTP date against.
    """
    if value is None:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())


def _decode_json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _invalid(conn_id: str, status: int, reason: str) -> InvalidTokenResponse:
    return InvalidTokenResponse(
        f"Token endpoint on connection {conn_id!r} answered HTTP {status} with a body that is not a "
        f"usable token response: {reason}",
        conn_id=conn_id,
        status=status,
        error_class="invalid_token_response",
    )
