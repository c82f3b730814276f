"""
Faults of the token endpoint, driven through the real hook against the HTTPS stand-in.

Each transient fault is retried inside the task and ends with a token once it clears; each permanent
fault fails at once after a single request, with a message that names the problem and the connection.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest

from parkmobile_token.clock import utcnow
from parkmobile_token.config import MAX_RESPONSE_BYTES, FetchRetryPolicy
from parkmobile_token.exceptions import ConnectionConfigError, OAuthErrorResponse, TokenEndpointError
from parkmobile_token.hooks import ParkMobileAuthHook
from parkmobile_token.store import TokenStore
from tests.conftest import CLIENT_ID, CLIENT_SECRET, TokenDatabase, auth_connection_json

if TYPE_CHECKING:
    from parkmobile_token.response import TokenResponse

FAST = FetchRetryPolicy(max_attempts=4, backoff_initial=0.05, backoff_max=0.2, jitter=0.0, retry_after_cap=2)
OK = {"issue": True}
ATTEMPT_LINE = re.compile(
    r"Token request attempt (\d+) on connection 'parkmobile_auth': (.+?) after ([\d.]+) s"
)


def fetch(policy: FetchRetryPolicy = FAST, timeout: float = 2.0, **kwargs: Any) -> TokenResponse:
    return ParkMobileAuthHook(retry_policy=policy, timeout=timeout, **kwargs).fetch_token()


def attempt_lines(capfd: pytest.CaptureFixture[str]) -> list[tuple[int, str]]:
    out, err = capfd.readouterr()
    return [(int(number), outcome) for number, outcome, _ in ATTEMPT_LINE.findall(out + err)]


@pytest.fixture
def auth_env(monkeypatch: pytest.MonkeyPatch, standin: Any) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_AUTH", auth_connection_json(standin))
    return monkeypatch


@pytest.fixture
def token_table(monkeypatch: pytest.MonkeyPatch, empty_token_table: TokenDatabase) -> TokenDatabase:
    """The token table, reachable through ``parkmobile_db``: each transient case ends with a stored token."""
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", empty_token_table.connection_json())
    return empty_token_table


def store(token: TokenResponse, table: TokenDatabase) -> None:
    """Store the token as the DAG's store task does, and check it is the one row in the table."""
    assert TokenStore().store(token.access_token, expires_at=token.expires_at) is True
    assert [row["token"] for row in table.rows()] == [token.access_token]


def set_connection(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    conn = {"conn_type": "http", "login": CLIENT_ID, "password": CLIENT_SECRET, **fields}
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_AUTH", json.dumps(conn))


# -- both client authentication styles ---------------------------------------------------------


@pytest.mark.parametrize("auth_method", ["client_secret_post", "client_secret_basic"])
def test_both_authentication_styles_work_with_a_secret_full_of_special_characters(
    auth_method: str, auth_env: pytest.MonkeyPatch, standin: Any
) -> None:
    assert set("+:%&=/ ") <= set(CLIENT_SECRET)

    token = fetch(auth_method=auth_method)

    [request] = standin.token_requests()
    assert request.auth_method == auth_method
    assert request.client_id == CLIENT_ID
    assert token.access_token == standin.issued_tokens[0]


def test_client_secret_post_sends_no_basic_header(auth_env: pytest.MonkeyPatch, standin: Any) -> None:
    fetch()

    [request] = standin.token_requests()
    assert "Authorization" not in request.header_names
    assert request.content_type == "application/x-www-form-urlencoded"


def test_own_extras_are_not_sent_as_headers(monkeypatch: pytest.MonkeyPatch, standin: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARKMOBILE_AUTH",
        auth_connection_json(standin, auth_method="client_secret_basic", scope="api", timeout=5),
    )

    fetch()

    [request] = standin.token_requests()
    names = {name.lower() for name in request.header_names}
    assert not names & {"auth_method", "scope", "insecure_skip_tls_verify", "timeout", "verify"}
    assert request.scope == "api"


# -- transient faults: retried inside the task, then a token -------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_transient_status_is_retried_until_a_token_is_stored(
    status: int,
    auth_env: pytest.MonkeyPatch,
    standin: Any,
    token_table: TokenDatabase,
    capfd: pytest.CaptureFixture[str],
) -> None:
    standin.script([{"status": status, "text": "busy"}, {"status": status, "text": "busy"}, OK])

    token = fetch()
    store(token, token_table)

    assert token.access_token == standin.issued_tokens[-1]
    assert [r.status for r in standin.token_requests()] == [status, status, 200]
    assert attempt_lines(capfd) == [(1, f"HTTP {status}"), (2, f"HTTP {status}"), (3, "HTTP 200")]


def test_dropped_connection_is_retried_until_a_token_is_stored(
    auth_env: pytest.MonkeyPatch, standin: Any, token_table: TokenDatabase, capfd: pytest.CaptureFixture[str]
) -> None:
    standin.script([{"drop": True}, OK])

    token = fetch()
    store(token, token_table)

    assert token.access_token == standin.issued_tokens[-1]
    assert len(standin.token_requests()) == 2
    assert attempt_lines(capfd) == [(1, "ConnectionError"), (2, "HTTP 200")]


def test_read_timeout_is_retried_until_a_token_is_stored(
    auth_env: pytest.MonkeyPatch, standin: Any, token_table: TokenDatabase, capfd: pytest.CaptureFixture[str]
) -> None:
    standin.script([{"delay": 1.5, "issue": True}, OK])

    token = fetch(timeout=0.5)
    store(token, token_table)

    assert token.access_token == standin.issued_tokens[-1]
    assert attempt_lines(capfd)[0] == (1, "ReadTimeout")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_refused_connection_is_retried_until_a_token_is_stored(
    monkeypatch: pytest.MonkeyPatch, token_table: TokenDatabase, capfd: pytest.CaptureFixture[str]
) -> None:
    from parkmobile_token.standin import StandInServer

    port = _free_port()
    # Plain http is accepted for the loopback, which spares this test a CA that exists only once the
    # server starts.
    set_connection(monkeypatch, host="127.0.0.1", port=port, schema="http")
    server = StandInServer(CLIENT_ID, CLIENT_SECRET, port=port, tls=False)
    starter = threading.Timer(0.6, server.start)
    starter.start()
    try:
        token = fetch(FetchRetryPolicy(max_attempts=20, backoff_initial=0.1, backoff_max=0.2, jitter=0))
    finally:
        starter.join()
        server.stop()

    outcomes = [outcome for _, outcome in attempt_lines(capfd)]
    assert outcomes[0] == "ConnectionError"
    assert outcomes[-1] == "HTTP 200"
    assert token.access_token in server.issued_tokens
    store(token, token_table)


def test_connect_timeout_is_retried_until_a_token_is_stored(
    monkeypatch: pytest.MonkeyPatch, token_table: TokenDatabase, capfd: pytest.CaptureFixture[str]
) -> None:
    from parkmobile_token.standin import StandInServer

    # A listener whose backlog is full: the kernel drops further SYNs, so connecting times out.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    port = listener.getsockname()[1]
    set_connection(monkeypatch, host="127.0.0.1", port=port, schema="http")
    server = StandInServer(CLIENT_ID, CLIENT_SECRET, port=port, tls=False)

    def clear_the_fault() -> None:
        for sock in [*fillers, listener]:
            sock.close()
        server.start()

    clearing = threading.Timer(1.0, clear_the_fault)
    clearing.start()
    try:
        token = fetch(
            FetchRetryPolicy(max_attempts=20, backoff_initial=0.1, backoff_max=0.2, jitter=0), timeout=0.3
        )
    finally:
        clearing.join()
        server.stop()

    outcomes = [outcome for _, outcome in attempt_lines(capfd)]
    assert outcomes[0] == "ConnectTimeout"
    assert outcomes[-1] == "HTTP 200"
    assert token.access_token in server.issued_tokens
    store(token, token_table)


def test_retry_after_seconds_is_honoured(
    auth_env: pytest.MonkeyPatch, standin: Any, token_table: TokenDatabase
) -> None:
    standin.script([{"status": 503, "headers": {"Retry-After": "1"}}, OK])

    token = fetch()

    first, second = standin.token_requests()
    assert (second.received_at - first.received_at).total_seconds() >= 0.95
    store(token, token_table)


def test_retry_after_http_date_is_honoured(
    auth_env: pytest.MonkeyPatch, standin: Any, token_table: TokenDatabase
) -> None:

    retry_at = format_datetime(
        utcnow().replace(microsecond=0) + __import__("datetime").timedelta(seconds=2), True
    )
    standin.script([{"status": 429, "headers": {"Retry-After": retry_at}}, OK])

    token = fetch()

    first, second = standin.token_requests()
    assert (second.received_at - first.received_at).total_seconds() >= 0.5
    store(token, token_table)


def test_retry_after_is_capped(
    auth_env: pytest.MonkeyPatch, standin: Any, token_table: TokenDatabase
) -> None:
    standin.script([{"status": 503, "headers": {"Retry-After": "3600"}}, OK])
    started = time.monotonic()

    token = fetch(FetchRetryPolicy(max_attempts=3, backoff_initial=0.05, jitter=0, retry_after_cap=0.3))

    assert time.monotonic() - started < 5
    assert len(standin.token_requests()) == 2
    store(token, token_table)


def test_attempts_are_bounded_in_number(
    auth_env: pytest.MonkeyPatch, standin: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    standin.script([{"status": 503}] * 10)

    with pytest.raises(TokenEndpointError, match=r"HTTP 503") as raised:
        fetch()

    assert raised.value.retryable, "Airflow's own retries must take over"
    assert len(standin.token_requests()) == FAST.max_attempts
    assert [n for n, _ in attempt_lines(capfd)] == [1, 2, 3, 4]


def test_attempts_are_bounded_in_time(auth_env: pytest.MonkeyPatch, standin: Any) -> None:
    standin.script([{"status": 503}] * 50)
    started = time.monotonic()

    with pytest.raises(TokenEndpointError):
        fetch(
            FetchRetryPolicy(max_attempts=50, backoff_initial=0.2, backoff_max=0.2, jitter=0, max_elapsed=1)
        )

    assert time.monotonic() - started < 2.5
    assert 2 <= len(standin.token_requests()) <= 7


# -- permanent faults: one request, no retry ---------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        "invalid_client",
        "unauthorized_client",
        "invalid_grant",
        "invalid_scope",
        "unsupported_grant_type",
        "invalid_request",
    ],
)
def test_oauth_error_fails_at_once(error: str, auth_env: pytest.MonkeyPatch, standin: Any) -> None:
    standin.script([{"status": 400, "json": {"error": error, "error_description": "secret-ish detail"}}])

    with pytest.raises(OAuthErrorResponse) as raised:
        fetch()

    assert not raised.value.retryable
    assert len(standin.token_requests()) == 1
    message = str(raised.value)
    assert f"OAuth error {error!r}" in message
    assert "HTTP 400" in message
    assert "'parkmobile_auth'" in message
    assert "secret-ish" not in message


@pytest.mark.parametrize(
    "response",
    [
        pytest.param({"status": 200, "text": "<html>sign in</html>"}, id="html"),
        pytest.param({"status": 200, "json": {"token_type": "Bearer", "expires_in": 3600}}, id="no-token"),
        pytest.param({"status": 200, "json": ["not", "an", "object"]}, id="json-array"),
        pytest.param({"status": 404, "text": "not found"}, id="not-found"),
    ],
)
def test_body_that_is_not_a_token_response_fails_at_once(
    response: dict[str, Any], auth_env: pytest.MonkeyPatch, standin: Any
) -> None:
    standin.script([response])

    with pytest.raises(TokenEndpointError, match="'parkmobile_auth'") as raised:
        fetch()

    assert not raised.value.retryable
    assert len(standin.token_requests()) == 1


def test_failed_tls_check_fails_at_once(monkeypatch: pytest.MonkeyPatch, standin: Any) -> None:
    # No verify extra: the system trust store does not know the stand-in's run-time CA.
    set_connection(monkeypatch, host="127.0.0.1", port=standin.port, schema="https")

    with pytest.raises(TokenEndpointError, match="TLS check") as raised:
        fetch()

    assert not raised.value.retryable
    assert raised.value.error_class == "tls_error"
    assert standin.token_requests() == []


def test_redirect_is_not_followed_with_credentials(auth_env: pytest.MonkeyPatch, standin: Any) -> None:
    standin.script([{"status": 302, "headers": {"Location": f"{standin.base_url}/connect/token"}}])

    with pytest.raises(TokenEndpointError, match="redirect") as raised:
        fetch()

    assert not raised.value.retryable
    assert len(standin.token_requests()) == 1


def test_oversized_body_is_refused_without_reading_it_whole(
    auth_env: pytest.MonkeyPatch, standin: Any
) -> None:
    standin.script([{"body_bytes": 8 * MAX_RESPONSE_BYTES}])

    with pytest.raises(TokenEndpointError, match=f"over {MAX_RESPONSE_BYTES} bytes") as raised:
        fetch()

    assert not raised.value.retryable
    assert len(standin.token_requests()) == 1


# -- transport safety ----------------------------------------------------------------------------


def test_plain_http_to_a_remote_host_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_connection(monkeypatch, host="auth.parkmobile.io", schema="http")

    with pytest.raises(ConnectionConfigError, match="https only"):
        fetch()


def test_plain_http_to_the_loopback_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from parkmobile_token.standin import StandInServer

    with StandInServer(CLIENT_ID, CLIENT_SECRET, tls=False) as server:
        set_connection(monkeypatch, host="127.0.0.1", port=server.port, schema="http")
        token = fetch()

    assert token.access_token == server.issued_tokens[0]


@pytest.mark.parametrize("verify", [False, "false", "False", "0"])
def test_verify_false_alone_is_refused(verify: Any, monkeypatch: pytest.MonkeyPatch, standin: Any) -> None:
    set_connection(monkeypatch, host="127.0.0.1", port=standin.port, schema="https", extra={"verify": verify})

    with pytest.raises(ConnectionConfigError, match="insecure_skip_tls_verify"):
        fetch()

    assert standin.token_requests() == []


def test_explicit_insecure_extra_turns_verification_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, standin: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    set_connection(
        monkeypatch,
        host="127.0.0.1",
        port=standin.port,
        schema="https",
        extra={"insecure_skip_tls_verify": True},
    )

    for _ in range(2):
        fetch()

    out, err = capfd.readouterr()
    assert (out + err).count("TLS verification is OFF for connection 'parkmobile_auth'") == 2
    assert len(standin.token_requests()) == 2


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        pytest.param({"login": None}, "no login", id="no-client-id"),
        pytest.param({"password": None}, "no password", id="no-client-secret"),
        pytest.param({"extra": {"auth_method": "private_key_jwt"}}, "auth_method", id="unknown-auth-method"),
    ],
)
def test_unusable_connection_is_refused_clearly(
    fields: dict[str, Any], says: str, monkeypatch: pytest.MonkeyPatch, standin: Any
) -> None:
    conn = json.loads(auth_connection_json(standin))
    extra = {**conn.pop("extra"), **fields.pop("extra", {})}
    conn.update(fields)
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_AUTH", json.dumps({**conn, "extra": extra}))

    with pytest.raises(ConnectionConfigError, match=says):
        fetch()

    assert standin.token_requests() == []


# -- proxy -----------------------------------------------------------------------------------------


@pytest.fixture
def http_proxy(tmp_path: Any) -> Any:
    """A real forward proxy (proxy.py) on the loopback, whose log shows the tunnels it opened."""
    import subprocess
    import sys
    from pathlib import Path

    port = _free_port()
    log_file = tmp_path / "proxy.log"
    proxy_bin = Path(sys.executable).parent / "proxy"
    with log_file.open("w") as sink:
        process = subprocess.Popen(
            [str(proxy_bin), "--hostname", "127.0.0.1", "--port", str(port), "--num-workers", "1"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(f"proxy.py did not start: {log_file.read_text()[-2000:]}")
    yield f"http://127.0.0.1:{port}", log_file
    process.terminate()
    process.wait(timeout=10)


def test_proxy_from_the_connection_extra_carries_the_request(
    monkeypatch: pytest.MonkeyPatch, standin: Any, http_proxy: Any
) -> None:
    proxy_url, proxy_log = http_proxy
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARKMOBILE_AUTH", auth_connection_json(standin, proxies={"https": proxy_url})
    )

    token = fetch()

    assert token.access_token == standin.issued_tokens[0]
    deadline = time.monotonic() + 5
    while f"CONNECT 127.0.0.1:{standin.port}" not in proxy_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"CONNECT 127.0.0.1:{standin.port}" in proxy_log.read_text()
    assert CLIENT_SECRET not in proxy_log.read_text()


def test_unreachable_proxy_is_a_transient_failure(monkeypatch: pytest.MonkeyPatch, standin: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARKMOBILE_AUTH",
        auth_connection_json(standin, proxies={"https": f"http://127.0.0.1:{_free_port()}"}),
    )

    with pytest.raises(TokenEndpointError, match="ProxyError") as raised:
        fetch(FetchRetryPolicy(max_attempts=2, backoff_initial=0.05, jitter=0))

    assert raised.value.retryable
    assert standin.token_requests() == []
