"""Pure tests of the token endpoint answer parsing, the error mapping and the clock helpers; no network."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest

from parkmobile_token.clock import fingerprint, to_utc_naive
from parkmobile_token.exceptions import InvalidTokenResponse, OAuthErrorResponse, TokenEndpointError
from parkmobile_token.response import (
    TokenResponse,
    error_for_status,
    parse_retry_after,
    parse_token_response,
)

CONN_ID = "parkmobile_auth"
REQUESTED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN_LIFETIME = 60
# Values no message may ever repeat: easy to spot, and unlike any word a message would use.
TOKEN = "pmTOKEN-7f3a9c21-SEKRIT"
REFRESH_TOKEN = "pmREFRESH-0b5e44-SEKRIT"
DESCRIPTION_SECRET = "client_secret=Zq9-DESCR-SEKRIT"
MISSING = object()
# "3600" in Arabic-Indic digits: int() reads it, a strict digit check must not.
ARABIC_3600 = "\u0663\u0666\u0660\u0660"
UNICODE_TOKEN = "t\u00f6k\u20acn"


def token_body(**fields: Any) -> bytes:
    """A token response with a known token; a field set to MISSING is left out."""
    payload: dict[str, Any] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": REFRESH_TOKEN,
    }
    payload.update(fields)
    return json.dumps({key: value for key, value in payload.items() if value is not MISSING}).encode()


def parse(body: bytes, *, min_lifetime: int = MIN_LIFETIME) -> TokenResponse:
    return parse_token_response(body, requested_at=REQUESTED_AT, conn_id=CONN_ID, min_lifetime=min_lifetime)


def assert_names_no_secret(message: str) -> None:
    for secret in (TOKEN, REFRESH_TOKEN, DESCRIPTION_SECRET, "SEKRIT"):
        assert secret not in message, message


# -- parse_token_response: accepted answers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        pytest.param(3600, 3600, id="int"),
        pytest.param("3600", 3600, id="digit-string"),
        pytest.param(" 3600 ", 3600, id="digit-string-with-spaces"),
        pytest.param(3600.0, 3600, id="integral-float"),
        pytest.param(61, 61, id="one-second-above-the-window"),
        pytest.param("9999999999", 9999999999, id="ten-digit-string"),
    ],
)
def test_accepts_expires_in_as_whole_seconds(expires_in: Any, seconds: int) -> None:
    token = parse(token_body(expires_in=expires_in))

    assert token.expires_in == seconds
    assert type(token.expires_in) is int
    assert token.access_token == TOKEN


@pytest.mark.parametrize(
    "token_type",
    [
        pytest.param("Bearer", id="canonical"),
        pytest.param("bearer", id="lower"),
        pytest.param("BEARER", id="upper"),
        pytest.param("bEaReR", id="mixed"),
    ],
)
def test_accepts_bearer_in_any_case_and_normalises_it(token_type: str) -> None:
    assert parse(token_body(token_type=token_type)).token_type == "Bearer"


def test_ignores_unknown_fields() -> None:
    body = token_body(
        id_token="x.y.z", ext_expires_in="not a number", nested={"a": [1, 2]}, issued_at=None, error=None
    )

    token = parse(body)

    assert (token.access_token, token.token_type, token.expires_in) == (TOKEN, "Bearer", 3600)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        pytest.param("parking.read parking.write", "parking.read parking.write", id="string-kept"),
        pytest.param(MISSING, None, id="absent"),
        pytest.param(["parking.read"], None, id="non-string-dropped"),
    ],
)
def test_keeps_a_string_scope_only(scope: Any, expected: str | None) -> None:
    assert parse(token_body(scope=scope)).scope == expected


@pytest.mark.parametrize(
    ("requested_at", "expires_in", "expires_at"),
    [
        pytest.param(REQUESTED_AT, 3600, datetime(2026, 3, 1, 13, 0, tzinfo=UTC), id="one-hour"),
        pytest.param(REQUESTED_AT, 86_400, datetime(2026, 3, 2, 12, 0, tzinfo=UTC), id="one-day"),
        pytest.param(
            datetime(2026, 12, 31, 23, 59, 30, 250_000, tzinfo=UTC),
            61,
            datetime(2027, 1, 1, 0, 0, 31, 250_000, tzinfo=UTC),
            id="across-new-year-keeps-microseconds",
        ),
    ],
)
def test_expires_at_is_requested_at_plus_expires_in(
    requested_at: datetime, expires_in: int, expires_at: datetime
) -> None:
    token = parse_token_response(
        token_body(expires_in=expires_in), requested_at=requested_at, conn_id=CONN_ID, min_lifetime=60
    )

    assert token.requested_at == requested_at
    assert token.expires_at == expires_at


def test_token_is_left_out_of_repr_but_named_by_its_hashes() -> None:
    token = parse(token_body())

    assert TOKEN not in repr(token)
    assert TOKEN not in str(token)
    assert "3600" in repr(token)
    assert token.sha256 == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert token.fingerprint == token.sha256[:12]


# -- parse_token_response: refused answers ----------------------------------------------------------

NOT_WHOLE = "expires_in is not a positive whole number"
REFUSED_BODIES = [
    # expires_in
    pytest.param(token_body(expires_in=MISSING), "expires_in is missing", id="expires_in-missing"),
    pytest.param(token_body(expires_in=0), NOT_WHOLE, id="expires_in-zero"),
    pytest.param(token_body(expires_in="0"), NOT_WHOLE, id="expires_in-zero-string"),
    pytest.param(token_body(expires_in=-3600), NOT_WHOLE, id="expires_in-negative"),
    pytest.param(token_body(expires_in="-3600"), NOT_WHOLE, id="expires_in-negative-string"),
    pytest.param(token_body(expires_in="soon"), NOT_WHOLE, id="expires_in-word"),
    pytest.param(token_body(expires_in=""), NOT_WHOLE, id="expires_in-empty-string"),
    pytest.param(token_body(expires_in="3,600"), NOT_WHOLE, id="expires_in-thousands-separator"),
    pytest.param(token_body(expires_in="36e2"), NOT_WHOLE, id="expires_in-exponent-string"),
    pytest.param(token_body(expires_in=ARABIC_3600), NOT_WHOLE, id="expires_in-arabic-indic-digits"),
    pytest.param(token_body(expires_in="12345678901"), NOT_WHOLE, id="expires_in-eleven-digit-string"),
    pytest.param(token_body(expires_in=None), NOT_WHOLE, id="expires_in-null"),
    pytest.param(token_body(expires_in=True), NOT_WHOLE, id="expires_in-true"),
    pytest.param(token_body(expires_in=False), NOT_WHOLE, id="expires_in-false"),
    pytest.param(token_body(expires_in=3600.5), NOT_WHOLE, id="expires_in-fractional"),
    pytest.param(token_body(expires_in="3600.5"), NOT_WHOLE, id="expires_in-fractional-string"),
    pytest.param(token_body(expires_in=float("nan")), NOT_WHOLE, id="expires_in-nan"),
    pytest.param(token_body(expires_in=float("inf")), NOT_WHOLE, id="expires_in-infinity"),
    pytest.param(token_body(expires_in=[3600]), NOT_WHOLE, id="expires_in-list"),
    pytest.param(token_body(expires_in={"seconds": 3600}), NOT_WHOLE, id="expires_in-object"),
    # access_token
    pytest.param(token_body(access_token=MISSING, note=TOKEN), "access_token", id="access_token-missing"),
    pytest.param(token_body(access_token="", note=TOKEN), "access_token", id="access_token-empty"),
    pytest.param(token_body(access_token="  \t", note=TOKEN), "access_token", id="access_token-blank"),
    pytest.param(token_body(access_token=None, note=TOKEN), "access_token", id="access_token-null"),
    pytest.param(token_body(access_token=12345, note=TOKEN), "access_token", id="access_token-number"),
    pytest.param(token_body(access_token=[TOKEN]), "access_token", id="access_token-list"),
    pytest.param(token_body(access_token={"value": TOKEN}), "access_token", id="access_token-object"),
    # token_type
    pytest.param(token_body(token_type=MISSING), "token_type", id="token_type-missing"),
    pytest.param(token_body(token_type="mac"), "token_type", id="token_type-mac"),
    pytest.param(token_body(token_type="DPoP"), "token_type", id="token_type-dpop"),
    pytest.param(token_body(token_type=""), "token_type", id="token_type-empty"),
    pytest.param(token_body(token_type=None), "token_type", id="token_type-null"),
    pytest.param(token_body(token_type=["Bearer"]), "token_type", id="token_type-list"),
    # the body as a whole
    pytest.param(json.dumps([TOKEN, "Bearer", 3600]).encode(), "JSON object", id="body-array"),
    pytest.param(json.dumps(TOKEN).encode(), "JSON object", id="body-string"),
    pytest.param(b"null", "JSON object", id="body-null"),
    pytest.param(b"3600", "JSON object", id="body-number"),
    pytest.param(b"", "JSON object", id="body-empty"),
    pytest.param(token_body()[:-5], "JSON object", id="body-truncated-json"),
    pytest.param(
        f"access_token={TOKEN}&token_type=bearer&expires_in=3600".encode(),
        "JSON object",
        id="body-form-encoded",
    ),
    pytest.param(
        f"<html><body><h1>Welcome</h1><p>access_token: {TOKEN}</p></body></html>".encode(),
        "JSON object",
        id="body-html",
    ),
    pytest.param(b"\xff\xfe\xfa\x00{", "JSON object", id="body-not-utf8"),
]


@pytest.mark.parametrize(("body", "named_field"), REFUSED_BODIES)
def test_refuses_unusable_answer_without_repeating_the_token(body: bytes, named_field: str) -> None:
    with pytest.raises(InvalidTokenResponse) as excinfo:
        parse(body)

    message = str(excinfo.value)
    assert_names_no_secret(message)
    assert named_field in message
    assert CONN_ID in message
    assert "HTTP 200" in message
    assert excinfo.value.retryable is False
    assert excinfo.value.error_class == "invalid_token_response"


@pytest.mark.parametrize(
    ("expires_in", "min_lifetime"),
    [
        pytest.param(45, 60, id="45s-with-60s-window"),
        pytest.param(60, 60, id="exactly-the-window"),
        pytest.param("60", 60, id="exactly-the-window-as-string"),
        pytest.param(1, 60, id="one-second"),
        pytest.param(300, 300, id="exactly-a-larger-window"),
    ],
)
def test_refuses_lifetime_not_above_the_cleanup_window(expires_in: Any, min_lifetime: int) -> None:
    with pytest.raises(InvalidTokenResponse) as excinfo:
        parse(token_body(expires_in=expires_in), min_lifetime=min_lifetime)

    message = str(excinfo.value)
    assert f"expires_in of {int(expires_in)} s" in message
    assert f"the {min_lifetime} s cleanup window" in message
    assert_names_no_secret(message)


@pytest.mark.parametrize(
    "expires_in",
    [
        pytest.param(10**20, id="int-beyond-timedelta"),
        pytest.param(1e20, id="float-beyond-timedelta"),
        pytest.param(10**13, id="int-beyond-year-9999"),
    ],
)
def test_refuses_expires_in_that_no_date_can_hold(expires_in: float) -> None:
    with pytest.raises(InvalidTokenResponse, match="expires_in"):
        parse(token_body(expires_in=expires_in))


# -- error_for_status --------------------------------------------------------------------------------

OAUTH_ERROR_BODY = json.dumps(
    {
        "error": "invalid_client",
        "error_description": f"Client authentication failed for {DESCRIPTION_SECRET}",
        "error_uri": "https://auth.example/errors?hint=SEKRIT",
    }
).encode()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
@pytest.mark.parametrize(
    "retry_after", [pytest.param(17.0, id="retry-after"), pytest.param(None, id="no-retry-after")]
)
def test_transient_status_is_retryable_and_keeps_retry_after(status: int, retry_after: float | None) -> None:
    error = error_for_status(status, OAUTH_ERROR_BODY, conn_id=CONN_ID, retry_after=retry_after)

    assert type(error) is TokenEndpointError
    assert error.retryable is True
    assert error.retry_after == retry_after
    assert error.status == status
    assert error.error_class == f"http_{status}"
    assert f"HTTP {status}" in str(error)
    assert CONN_ID in str(error)
    assert_names_no_secret(str(error))


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308, 399])
def test_redirect_is_permanent(status: int) -> None:
    body = f'<a href="https://evil.example/?t={TOKEN}">moved</a>'.encode()

    error = error_for_status(status, body, conn_id=CONN_ID, retry_after=5.0)

    assert type(error) is TokenEndpointError
    assert error.retryable is False
    assert error.error_class == "redirect"
    assert "redirect" in str(error)
    assert f"HTTP {status}" in str(error)
    assert "evil.example" not in str(error)
    assert_names_no_secret(str(error))


def test_redirect_with_oauth_error_body_is_still_a_redirect() -> None:
    error = error_for_status(302, OAUTH_ERROR_BODY, conn_id=CONN_ID)

    assert not isinstance(error, OAuthErrorResponse)
    assert error.error_class == "redirect"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        pytest.param(401, "invalid_client", id="401-invalid_client"),
        pytest.param(400, "invalid_client", id="400-invalid_client"),
        pytest.param(400, "invalid_request", id="400-invalid_request"),
        pytest.param(400, "invalid_grant", id="400-invalid_grant"),
        pytest.param(400, "unauthorized_client", id="400-unauthorized_client"),
        pytest.param(400, "unsupported_grant_type", id="400-unsupported_grant_type"),
        pytest.param(400, "invalid_scope", id="400-invalid_scope"),
        pytest.param(400, "temporarily_unavailable", id="400-extension-code"),
    ],
)
def test_oauth_error_names_status_code_and_connection_but_not_the_body(status: int, code: str) -> None:
    body = json.dumps(
        {
            "error": code,
            "error_description": f"Rejected because {DESCRIPTION_SECRET} was wrong",
            "error_uri": "https://auth.example/docs/SEKRIT",
            "trace_id": "trace-4711",
        }
    ).encode()

    error = error_for_status(status, body, conn_id=CONN_ID)

    assert isinstance(error, OAuthErrorResponse)
    assert error.retryable is False
    assert (error.status, error.error_class, error.conn_id) == (status, code, CONN_ID)
    message = str(error)
    assert f"HTTP {status}" in message
    assert repr(code) in message
    assert repr(CONN_ID) in message
    assert_names_no_secret(message)
    for body_text in ("Rejected", "wrong", "auth.example", "trace-4711"):
        assert body_text not in message


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("<script>alert(1)</script>", id="markup"),
        pytest.param("x" * 500, id="500-chars"),
        pytest.param("a" + "b" * 64, id="65-chars"),
        pytest.param("Invalid_Client", id="upper-case"),
        pytest.param("invalid client", id="space"),
        pytest.param(f"invalid_client {DESCRIPTION_SECRET}", id="code-with-secret-appended"),
        pytest.param("", id="empty"),
        pytest.param(401, id="number"),
        pytest.param(None, id="null"),
        pytest.param(["invalid_client"], id="list"),
    ],
)
def test_unrecognised_error_value_is_not_repeated(code: Any) -> None:
    body = json.dumps({"error": code, "error_description": DESCRIPTION_SECRET}).encode()

    error = error_for_status(400, body, conn_id=CONN_ID)

    assert isinstance(error, OAuthErrorResponse)
    assert error.error_class == "unrecognised"
    message = str(error)
    assert "'unrecognised'" in message
    assert_names_no_secret(message)
    for fragment in ("<script>", "xxxxxxxxxx", "bbbbbbbbbb", "Invalid_Client", "invalid client"):
        assert fragment not in message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(
            404,
            f"<html><head><title>Not Found</title></head><body>No route for {TOKEN}</body></html>".encode(),
            id="404-html",
        ),
        pytest.param(403, json.dumps({"message": f"forbidden {DESCRIPTION_SECRET}"}).encode(), id="403-json"),
        pytest.param(401, b"", id="401-empty"),
        pytest.param(400, json.dumps([{"error": "invalid_client"}]).encode(), id="400-json-array"),
        pytest.param(501, f"not implemented {TOKEN}".encode(), id="501-not-transient"),
    ],
)
def test_error_without_oauth_code_is_permanent_and_repeats_no_body_text(status: int, body: bytes) -> None:
    error = error_for_status(status, body, conn_id=CONN_ID, retry_after=30.0)

    assert type(error) is TokenEndpointError
    assert error.retryable is False
    assert error.error_class == f"http_{status}"
    message = str(error)
    assert f"HTTP {status}" in message
    assert CONN_ID in message
    assert_names_no_secret(message)
    for body_text in ("Not Found", "No route", "forbidden", "not implemented", "<html"):
        assert body_text not in message


# -- parse_retry_after -------------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 5 ", 5.0, id="seconds-with-spaces"),
        pytest.param("0", 0.0, id="zero-seconds"),
        pytest.param("Sun, 01 Mar 2026 12:01:30 GMT", 90.0, id="http-date-future"),
        pytest.param("Sun, 01 Mar 2026 13:01:30 +0100", 90.0, id="date-with-offset-future"),
        pytest.param("Sun, 01 Mar 2026 12:00:00 GMT", 0.0, id="http-date-now"),
        pytest.param("Sun, 01 Mar 2026 11:59:00 GMT", 0.0, id="http-date-past"),
        pytest.param("Thu, 01 Jan 2015 00:00:00 GMT", 0.0, id="http-date-long-past"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative-seconds"),
        pytest.param("1.5", None, id="fractional-seconds"),
        pytest.param("99999999999", None, id="eleven-digits"),
        pytest.param("Sun, 01 Mar 2026 12:01:30", None, id="date-without-zone"),
        pytest.param("Sun, 01 Mar 2026 12:01:30 -0000", None, id="date-with-unknown-zone"),
        pytest.param("Mon, 31 Feb 2026 00:00:00 GMT", None, id="impossible-date"),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


# -- clock helpers -----------------------------------------------------------------------------------


class _ZoneWithoutOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(datetime(2026, 3, 1, 12, 0), id="naive"),
        pytest.param(datetime(2026, 3, 1, 12, 0, tzinfo=_ZoneWithoutOffset()), id="zone-without-offset"),
    ],
)
def test_to_utc_naive_refuses_a_moment_without_known_offset(moment: datetime) -> None:
    with pytest.raises(ValueError, match="naive"):
        to_utc_naive(moment)


@pytest.mark.parametrize(
    ("moment", "utc_naive"),
    [
        pytest.param(
            datetime(2026, 3, 1, 17, 30, 15, 123, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            datetime(2026, 3, 1, 12, 0, 15, 123),
            id="plus-05-30",
        ),
        pytest.param(
            datetime(2026, 3, 1, 2, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            datetime(2026, 2, 28, 20, 30),
            id="plus-05-30-previous-day",
        ),
        pytest.param(
            datetime(2026, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-8))),
            datetime(2027, 1, 1, 4, 0),
            id="minus-08-00-next-year",
        ),
        pytest.param(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), datetime(2026, 3, 1, 12, 0), id="utc"),
    ],
)
def test_to_utc_naive_converts_to_utc(moment: datetime, utc_naive: datetime) -> None:
    converted = to_utc_naive(moment)

    assert converted == utc_naive
    assert converted.tzinfo is None


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param("abc", "ba7816bf8f01", id="known-vector"),
        pytest.param(TOKEN, hashlib.sha256(TOKEN.encode()).hexdigest()[:12], id="test-token"),
        pytest.param(UNICODE_TOKEN, hashlib.sha256(UNICODE_TOKEN.encode()).hexdigest()[:12], id="unicode"),
    ],
)
def test_fingerprint_is_a_stable_twelve_hex_char_prefix(token: str, expected: str) -> None:
    first = fingerprint(token)

    assert first == expected
    assert fingerprint(token) == first
    assert len(first) == 12
    assert set(first) <= set("0123456789abcdef")
    assert token not in first


def test_fingerprint_tells_tokens_apart() -> None:
    assert fingerprint(TOKEN) != fingerprint(TOKEN + "x")
