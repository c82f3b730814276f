"""Tests for the local ParkMobile token endpoint stand-in, over real HTTPS."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import pytest
import requests

from parkmobile_token import standin
from parkmobile_token.standin import StandInServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CLIENT_ID = "standin-client"
CLIENT_SECRET = "standin-secret-4f1c9e"
SPECIAL_SECRET = "p+a:s%s&w=o/r d"
PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
TIMEOUT = 10


# -- fixtures and helpers ---------------------------------------------------------------------------


class LogWatch:
    """Collects the secrets a test's stand-ins know, to check the logs never show them."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.servers: list[StandInServer] = []

    def watch(self, server: StandInServer, secret: str) -> StandInServer:
        self.servers.append(server)
        self.secrets.append(secret)
        return server

    def sensitive_values(self) -> list[str]:
        return self.secrets + [token for server in self.servers for token in server.issued_tokens]


@pytest.fixture(autouse=True)
def log_watch(caplog: pytest.LogCaptureFixture) -> Iterator[LogWatch]:
    """Capture the stand-in's logs at DEBUG and check, after each test, they hold no secret or token."""
    caplog.set_level(logging.DEBUG, logger="parkmobile_token.standin")
    watch = LogWatch()
    yield watch
    records = caplog.get_records("setup") + caplog.get_records("call")
    logged = "\n".join(record.getMessage() for record in records)
    for value in watch.sensitive_values():
        assert value not in logged


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInServer]:
    with StandInServer(CLIENT_ID, CLIENT_SECRET, cert_dir=tmp_path_factory.mktemp("certs")) as server:
        yield server


@pytest.fixture
def server(shared_server: StandInServer, log_watch: LogWatch) -> StandInServer:
    """The module's stand-in, with scripts and records cleared for this test."""
    shared_server.reset()
    return log_watch.watch(shared_server, CLIENT_SECRET)


@pytest.fixture
def make_standin(log_watch: LogWatch, tmp_path: Path) -> Iterator[Callable[..., StandInServer]]:
    """Start stand-ins with non-default settings; all are stopped after the test."""
    started: list[StandInServer] = []

    def make(client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET, **kwargs: Any) -> StandInServer:
        kwargs.setdefault("cert_dir", tmp_path / f"certs-{len(started)}")
        server = StandInServer(client_id, client_secret, **kwargs).start()
        started.append(server)
        return log_watch.watch(server, client_secret)

    yield make
    for server in started:
        server.stop()


def rfc6749_basic(client_id: str, client_secret: str) -> str:
    """Build ``Authorization: Basic`` as RFC 6749 section 2.3.1 says: form-urlencode each part first."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def post_token(
    server: StandInServer,
    style: str = "client_secret_post",
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    *,
    form: dict[str, str] | None = None,
    timeout: float | tuple[float, float] = TIMEOUT,
    **kwargs: Any,
) -> requests.Response:
    """POST a client-credentials token request, authenticating in ``style``."""
    data = {"grant_type": "client_credentials", **(form or {})}
    headers: dict[str, str] = {}
    if style in ("client_secret_post", "both"):
        data.update(client_id=client_id, client_secret=client_secret)
    if style in ("client_secret_basic", "both"):
        headers["Authorization"] = rfc6749_basic(client_id, client_secret)
    return requests.post(
        f"{server.base_url}/connect/token",
        data=data,
        headers=headers,
        verify=server.ca_path or True,
        timeout=timeout,
        **kwargs,
    )


def ping(server: StandInServer, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(f"{server.base_url}/v1/ping", headers=headers, verify=server.ca_path, timeout=TIMEOUT)


# -- client authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["client_secret_post", "client_secret_basic"])
def test_token_request_succeeds_in_each_client_auth_style(server: StandInServer, style: str) -> None:
    response = post_token(server, style)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "api"
    assert len(body["access_token"]) >= 43
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert server.issued_tokens == [body["access_token"]]
    (recorded,) = server.token_requests()
    assert recorded.auth_method == style
    assert recorded.client_id == CLIENT_ID
    assert recorded.grant_type == "client_credentials"
    assert recorded.status == 200
    assert CLIENT_SECRET not in repr(recorded)


@pytest.mark.parametrize("style", ["client_secret_post", "client_secret_basic"])
@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [
        pytest.param(CLIENT_ID, SPECIAL_SECRET, id="special-secret"),
        pytest.param("id:with space+plus", SPECIAL_SECRET, id="special-id-and-secret"),
        pytest.param("clïent", "sécret€", id="non-ascii"),
    ],
)
def test_special_characters_in_credentials_work_in_each_auth_style(
    make_standin: Callable[..., StandInServer], style: str, client_id: str, client_secret: str
) -> None:
    server = make_standin(client_id, client_secret)

    response = post_token(server, style, client_id, client_secret)

    assert response.status_code == 200, response.text
    assert server.token_requests()[0].client_id == client_id


def test_basic_auth_without_form_urlencoding_is_rejected(make_standin: Callable[..., StandInServer]) -> None:
    """requests' own HTTPBasicAuth skips the RFC 6749 encoding, so '+' turns into a space."""
    server = make_standin(CLIENT_ID, SPECIAL_SECRET)

    response = requests.post(
        f"{server.base_url}/connect/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, SPECIAL_SECRET),
        verify=server.ca_path,
        timeout=TIMEOUT,
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("style", "client_id", "client_secret"),
    [
        pytest.param("client_secret_post", CLIENT_ID, "wrong", id="post-wrong-secret"),
        pytest.param("client_secret_post", "someone-else", CLIENT_SECRET, id="post-wrong-id"),
        pytest.param("client_secret_post", CLIENT_ID, "", id="post-empty-secret"),
        pytest.param("client_secret_basic", CLIENT_ID, "wrong", id="basic-wrong-secret"),
        pytest.param("client_secret_basic", "someone-else", CLIENT_SECRET, id="basic-wrong-id"),
    ],
)
def test_wrong_credentials_are_rejected_as_invalid_client(
    server: StandInServer, style: str, client_id: str, client_secret: str
) -> None:
    response = post_token(server, style, client_id, client_secret)

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "client authentication failed"}
    expected_challenge = "Basic" if style == "client_secret_basic" else None
    assert response.headers.get("WWW-Authenticate") == expected_challenge
    assert server.issued_tokens == []


@pytest.mark.parametrize("header", ["Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode()])
def test_undecodable_basic_header_is_rejected_as_invalid_client(server: StandInServer, header: str) -> None:
    response = requests.post(
        f"{server.base_url}/connect/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": header},
        verify=server.ca_path,
        timeout=TIMEOUT,
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Basic"


@pytest.mark.parametrize("style", ["both", "none"])
def test_two_or_no_client_auth_methods_are_an_invalid_request(server: StandInServer, style: str) -> None:
    response = post_token(server, style)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert server.token_requests()[0].auth_method == style


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        pytest.param({"json": {"grant_type": "client_credentials"}}, "body must be", id="json-body"),
        pytest.param({"params": {"client_secret": CLIENT_SECRET}}, "URL", id="secret-in-query"),
    ],
)
def test_malformed_token_requests_are_an_invalid_request(
    server: StandInServer, kwargs: dict[str, Any], says: str
) -> None:
    if "json" in kwargs:  # no form at all: credentials go in the Basic header
        response = requests.post(
            f"{server.base_url}/connect/token",
            headers={"Authorization": rfc6749_basic(CLIENT_ID, CLIENT_SECRET)},
            verify=server.ca_path,
            timeout=TIMEOUT,
            **kwargs,
        )
    else:
        response = post_token(server, "client_secret_basic", **kwargs)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert says in body["error_description"]


def test_missing_grant_type_is_an_invalid_request(server: StandInServer) -> None:
    response = requests.post(
        f"{server.base_url}/connect/token",
        data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        verify=server.ca_path,
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token"])
def test_grant_types_other_than_client_credentials_are_unsupported(
    server: StandInServer, grant_type: str
) -> None:
    response = post_token(server, form={"grant_type": grant_type})

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


# -- scopes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "status", "granted"),
    [
        pytest.param(None, 200, "api", id="default-scope"),
        pytest.param("api", 200, "api", id="allowed-scope"),
        pytest.param("api  reports", 200, "api reports", id="two-allowed-scopes"),
        pytest.param("api admin", 400, None, id="one-scope-not-allowed"),
    ],
)
def test_requested_scopes_are_granted_only_from_the_allowed_set(
    make_standin: Callable[..., StandInServer], requested: str | None, status: int, granted: str | None
) -> None:
    server = make_standin(allowed_scopes={"api", "reports"})

    response = post_token(server, form={"scope": requested} if requested is not None else {})

    assert response.status_code == status
    if granted is None:
        assert response.json()["error"] == "invalid_scope"
    else:
        assert response.json()["scope"] == granted
    assert server.token_requests()[0].scope == requested


# -- scripted responses ------------------------------------------------------------------------------


def test_scripted_responses_are_served_in_order_then_normal_behaviour_resumes(server: StandInServer) -> None:
    server.script(
        [
            {"status": 503, "text": "upstream unavailable"},
            {"status": 200, "headers": {"Content-Type": "text/html"}, "text": "<html>Please sign in</html>"},
            {
                "status": 200,
                "json": {"access_token": "tok-after-503", "token_type": "Bearer", "expires_in": 45},
            },
        ]
    )

    first, second, third, normal = (post_token(server) for _ in range(4))

    assert (first.status_code, first.text) == (503, "upstream unavailable")
    assert second.headers["Content-Type"] == "text/html"
    assert second.text == "<html>Please sign in</html>"
    assert third.json() == {"access_token": "tok-after-503", "token_type": "Bearer", "expires_in": 45}
    assert normal.status_code == 200
    assert normal.json()["access_token"] != "tok-after-503"
    assert server.issued_tokens == ["tok-after-503", normal.json()["access_token"]]
    assert [(r.status, r.scripted) for r in server.token_requests()] == [
        (503, True),
        (200, True),
        (200, True),
        (200, False),
    ]


def test_scripted_responses_answer_whatever_the_credentials(server: StandInServer) -> None:
    server.script([{"status": 200, "json": {"access_token": "tok-anyway"}}])

    response = post_token(server, "client_secret_post", client_secret="wrong")

    assert response.json() == {"access_token": "tok-anyway"}


def test_scripted_delay_alone_answers_normally_after_the_delay(server: StandInServer) -> None:
    server.script([{"delay": 0.3, "headers": {"X-Scripted": "yes"}}])

    started = time.monotonic()
    response = post_token(server)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert response.headers["X-Scripted"] == "yes"
    assert server.issued_tokens == [response.json()["access_token"]]


def test_dropped_connection_raises_connection_error_and_the_server_keeps_serving(
    server: StandInServer,
) -> None:
    server.script([{"drop": True}])

    with pytest.raises(requests.exceptions.ConnectionError):
        post_token(server)

    assert post_token(server).status_code == 200
    dropped, answered = server.token_requests()
    assert (dropped.status, dropped.scripted) == (None, True)
    assert answered.status == 200


def test_delay_beyond_the_client_timeout_raises_read_timeout(server: StandInServer) -> None:
    server.script([{"delay": 2.0, "status": 200, "json": {"access_token": "tok-too-late"}}])

    with pytest.raises(requests.exceptions.ReadTimeout):
        post_token(server, timeout=(TIMEOUT, 0.3))

    assert server.token_requests()[0].status == 200
    assert post_token(server).status_code == 200


def test_stop_does_not_wait_for_a_delayed_response(make_standin: Callable[..., StandInServer]) -> None:
    server = make_standin()
    server.script([{"delay": 60}])
    outcome: list[object] = []
    client = threading.Thread(target=lambda: outcome.append(post_token(server, timeout=30)))
    client.start()
    while not server.token_requests():
        time.sleep(0.01)

    started = time.monotonic()
    server.stop()
    client.join(timeout=30)

    assert time.monotonic() - started < 5
    assert not client.is_alive()


@pytest.mark.parametrize("size", [0, 13, 14, 64 * 1024 + 7, 3 * 1024 * 1024], ids=lambda size: f"{size}B")
def test_body_bytes_serves_a_streamed_json_body_of_exactly_that_size(
    server: StandInServer, size: int
) -> None:
    server.script([{"body_bytes": size}])

    response = post_token(server)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert "Content-Length" not in response.headers  # streamed: the client must count bytes itself
    assert len(response.content) == size
    if size >= 14:
        assert response.json() == {"padding": "x" * (size - 14)}


def test_body_bytes_can_be_read_partially_and_abandoned(server: StandInServer) -> None:
    server.script([{"body_bytes": 8 * 1024 * 1024}])

    with post_token(server, stream=True) as response:
        first = next(response.iter_content(1024))

    assert first.startswith(b'{"padding":"')
    assert post_token(server).status_code == 200


def test_issue_merges_overrides_into_a_normal_token_response(server: StandInServer) -> None:
    server.script([{"issue": True, "json": {"expires_in": "3600", "refresh_token": "ignored"}}])

    response = post_token(server, form={"scope": "api"})

    body = response.json()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert body["expires_in"] == "3600"
    assert body["refresh_token"] == "ignored"
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "api"
    assert server.issued_tokens == [body["access_token"]]
    assert ping(server, body["access_token"]).status_code == 200


def test_issue_with_an_access_token_override_records_that_token(server: StandInServer) -> None:
    server.script(
        [{"issue": True, "status": 201, "json": {"access_token": "tok-fixed", "token_type": "bearer"}}]
    )

    response = post_token(server)

    assert response.status_code == 201
    assert response.json()["access_token"] == "tok-fixed"
    assert response.json()["token_type"] == "bearer"
    assert server.issued_tokens == ["tok-fixed"]


@pytest.mark.parametrize(
    ("item", "says"),
    [
        pytest.param({"stauts": 200}, "unknown keys", id="misspelt-key"),
        pytest.param({"status": "200"}, "status", id="status-as-string"),
        pytest.param({"status": 200, "json": {}, "text": "x"}, "at most one body", id="json-and-text"),
        pytest.param({"drop": True, "status": 500}, "drop", id="drop-with-status"),
        pytest.param({"issue": True, "json": ["not", "an", "object"]}, "object", id="issue-with-list"),
        pytest.param({"delay": -1}, "delay", id="negative-delay"),
        pytest.param({"body_bytes": 1.5}, "body_bytes", id="fractional-size"),
    ],
)
def test_malformed_scripted_responses_are_refused_up_front(
    server: StandInServer, item: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        server.script([{"status": 503}, item])

    assert post_token(server).status_code == 200  # nothing was queued


def test_reset_forgets_scripts_records_and_tokens(server: StandInServer) -> None:
    token = post_token(server).json()["access_token"]
    server.script([{"status": 500}])

    server.reset()

    assert (server.requests, server.issued_tokens) == ([], [])
    assert post_token(server).status_code == 200
    assert ping(server, token).status_code == 401


# -- the protected API ------------------------------------------------------------------------------


def test_ping_accepts_a_token_the_server_issued(server: StandInServer) -> None:
    token = post_token(server).json()["access_token"]

    response = ping(server, token)

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert server.requests[-1].auth_method == "bearer"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token-we-issued", id="unknown-token"),
        pytest.param(None, id="no-authorization"),
    ],
)
def test_ping_refuses_a_token_the_server_did_not_issue(server: StandInServer, token: str | None) -> None:
    post_token(server)

    response = ping(server, token)

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_ping_refuses_an_expired_token(server: StandInServer) -> None:
    server.script([{"issue": True, "json": {"expires_in": 0}}])
    token = post_token(server).json()["access_token"]

    assert ping(server, token).status_code == 401


# -- plain HTTP ----------------------------------------------------------------------------------------


def test_plain_http_works_without_tls(make_standin: Callable[..., StandInServer]) -> None:
    server = make_standin(tls=False, token_lifetime=120)

    response = post_token(server)

    assert server.base_url.startswith("http://")
    assert server.ca_path is None
    assert response.status_code == 200
    assert response.json()["expires_in"] == 120


def test_certificate_is_valid_for_localhost_and_written_to_cert_dir(
    make_standin: Callable[..., StandInServer], tmp_path: Path
) -> None:
    server = make_standin(cert_dir=tmp_path / "ca")

    response = requests.get(
        f"https://localhost:{server.port}/v1/ping", verify=server.ca_path, timeout=TIMEOUT
    )

    assert response.status_code == 401
    assert Path(server.ca_path or "").parent == tmp_path / "ca"


def test_clients_that_do_not_trust_the_test_ca_are_refused(server: StandInServer) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.base_url}/v1/ping", timeout=TIMEOUT)


# -- command line --------------------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PARKMOBILE_STANDIN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS_DIR), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("extra_args", "stop_signal"),
    [
        pytest.param([], signal.SIGTERM, id="https-sigterm"),
        pytest.param(["--no-tls", "--token-lifetime", "90"], signal.SIGINT, id="http-sigint"),
    ],
)
def test_cli_serves_until_signalled_then_exits_zero(
    tmp_path: Path, extra_args: list[str], stop_signal: signal.Signals
) -> None:
    ready_file = tmp_path / "ready.json"
    command = [sys.executable, "-m", "parkmobile_token.standin", "--port", "0"]
    command += ["--cert-dir", str(tmp_path / "certs"), "--ready-file", str(ready_file), *extra_args]
    env = cli_env(PARKMOBILE_STANDIN_CLIENT_ID=CLIENT_ID, PARKMOBILE_STANDIN_CLIENT_SECRET=SPECIAL_SECRET)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the stand-in never became ready"
            time.sleep(0.05)
        ready = json.loads(ready_file.read_text())
        assert json.loads(process.stdout.readline()) == ready  # type: ignore[union-attr]

        response = requests.post(
            f"{ready['base_url']}/connect/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": rfc6749_basic(CLIENT_ID, SPECIAL_SECRET)},
            verify=ready["ca_path"] or True,
            timeout=TIMEOUT,
        )
        assert response.status_code == 200
        token = response.json()["access_token"]

        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert ready["port"] > 0
    assert (
        ready["base_url"] == f"{'http' if '--no-tls' in extra_args else 'https'}://127.0.0.1:{ready['port']}"
    )
    assert "POST /connect/token auth=client_secret_basic status=200" in stderr
    assert SPECIAL_SECRET not in stderr
    assert token not in stderr


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        pytest.param(
            ["--host", "0.0.0.0"],  # noqa: S104
            {"PARKMOBILE_STANDIN_CLIENT_ID": CLIENT_ID, "PARKMOBILE_STANDIN_CLIENT_SECRET": CLIENT_SECRET},
            "loopback",
            id="all-interfaces",
        ),
        pytest.param(
            ["--host", "192.0.2.10"],
            {"PARKMOBILE_STANDIN_CLIENT_ID": CLIENT_ID, "PARKMOBILE_STANDIN_CLIENT_SECRET": CLIENT_SECRET},
            "loopback",
            id="public-address",
        ),
        pytest.param(
            ["--host", "::"],
            {"PARKMOBILE_STANDIN_CLIENT_ID": CLIENT_ID, "PARKMOBILE_STANDIN_CLIENT_SECRET": CLIENT_SECRET},
            "loopback",
            id="all-ipv6-interfaces",
        ),
        pytest.param(
            ["--host", "example.com"],
            {"PARKMOBILE_STANDIN_CLIENT_ID": CLIENT_ID, "PARKMOBILE_STANDIN_CLIENT_SECRET": CLIENT_SECRET},
            "loopback",
            id="host-name",
        ),
        pytest.param(
            [],
            {"PARKMOBILE_STANDIN_CLIENT_ID": CLIENT_ID},
            "PARKMOBILE_STANDIN_CLIENT_SECRET",
            id="no-secret",
        ),
        pytest.param(
            [],
            {"PARKMOBILE_STANDIN_CLIENT_ID": CLIENT_ID, "PARKMOBILE_STANDIN_CLIENT_SECRET": ""},
            "PARKMOBILE_STANDIN_CLIENT_SECRET",
            id="empty-secret",
        ),
    ],
)
def test_cli_refuses_unsafe_or_incomplete_configuration(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    says: str,
) -> None:
    monkeypatch.delenv("PARKMOBILE_STANDIN_CLIENT_ID", raising=False)
    monkeypatch.delenv("PARKMOBILE_STANDIN_CLIENT_SECRET", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    exit_code = standin.main(["--port", "0", *argv])

    assert exit_code != 0
    message = capsys.readouterr().err
    assert message.startswith("error: ")
    assert says in message


def test_cli_process_exits_non_zero_without_credentials(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "parkmobile_token.standin", "--port", "0", "--cert-dir", str(tmp_path)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert "PARKMOBILE_STANDIN_CLIENT_ID" in result.stderr
    assert result.stdout == ""
