"""
A local stand-in for ParkMobile's OAuth2 token endpoint, for development and tests.

It serves ``POST /connect/token`` (client-credentials grant, ``client_secret_post`` and
``client_secret_basic``) and a protected ``GET /v1/ping`` over HTTPS, with a certificate
from a test CA that trustme makes at run time. Tests can queue scripted responses to
inject faults (errors, delays, dropped connections, oversized bodies) and inspect every
request the server received. Run it by hand with ``python -m parkmobile_token.standin``.

Not a production server: it keeps everything in memory, and its command line binds to loopback only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import hmac
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import unquote_plus

import trustme
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer

log = logging.getLogger(__name__)

TOKEN_PATH = "/connect/token"
PING_PATH = "/v1/ping"
CLIENT_ID_ENV = "PARKMOBILE_STANDIN_CLIENT_ID"
CLIENT_SECRET_ENV = "PARKMOBILE_STANDIN_CLIENT_SECRET"
CA_FILE_NAME = "parkmobile-standin-ca.pem"

AuthMethod = Literal["client_secret_post", "client_secret_basic", "both", "none", "bearer"]

_FORM_MIMETYPE = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_SCRIPT_KEYS = frozenset({"status", "json", "text", "headers", "delay", "drop", "body_bytes", "issue"})
_STREAM_CHUNK = 64 * 1024
_RECEIVED_AT = "parkmobile_standin.received_at"


@dataclass(frozen=True)
class RecordedRequest:
    """
    One request the stand-in received, as tests see it. Holds no secret and no header value.

    :param method: the HTTP method.
    :param path: the request path, without the query string.
    :param auth_method: how the client authenticated: ``client_secret_post``, ``client_secret_basic``,
        ``both``, ``none``, or ``bearer`` (a bearer token on a non-token path).
    :param client_id: the client id the request named, if any.
    :param grant_type: the ``grant_type`` form field, if any.
    :param scope: the ``scope`` form field as sent, if any.
    :param status: the status served, or ``None`` when the connection was dropped.
    :param header_names: the names of the request headers, in the order received.
    :param content_type: the request's media type, without parameters, if any.
    :param scripted: whether a scripted response answered the request.
    :param received_at: when the request arrived, before any scripted delay (UTC).
    """

    method: str
    path: str
    auth_method: AuthMethod
    client_id: str | None
    grant_type: str | None
    scope: str | None
    status: int | None
    header_names: tuple[str, ...]
    content_type: str | None = None
    scripted: bool = False
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class _TokenRequest:
    """What a token request asked for; the secret never leaves this object."""

    auth_method: AuthMethod
    client_id: str | None
    client_secret: str | None = field(repr=False)
    grant_type: str | None
    scope: str | None
    problem: str | None  # why the request is malformed, if it is


class _DropConnection(ConnectionAbortedError):
    """Raised by the application to make the request handler reset the connection."""


class _StandInRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, able to drop a connection on purpose and quiet about clients that go away."""

    def connection_dropped(self, error: BaseException, environ: WSGIEnvironment | None = None) -> None:
        """Reset the connection when the application asked for it; ignore clients that hung up."""
        if not isinstance(error, _DropConnection):
            return
        self.close_connection = True
        # A zero linger time makes the close send RST, so the client sees a reset, not a clean EOF.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_error(self, format: str, *args: Any) -> None:
        """Log protocol-level errors (bad request lines, failed TLS reads) at DEBUG only."""
        log.debug("stand-in connection problem: %s", format % args if args else format)


class StandInServer:
    """
    A threaded local OAuth2 client-credentials token endpoint with fault injection.

    :param client_id: the only client id the server accepts.
    :param client_secret: that client's secret.
    :param host: the address to listen on.
    :param port: the port to listen on; 0 picks a free one.
    :param tls: serve HTTPS with a certificate from a run-time test CA; plain HTTP when false.
    :param token_lifetime: ``expires_in`` of issued tokens, in seconds.
    :param default_scope: the scope granted when a request names none.
    :param allowed_scopes: if given, requesting any scope outside this set gives ``invalid_scope``.
    :param cert_dir: the directory to write the CA certificate to; a temporary directory,
        removed on :meth:`stop`, when ``None``.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        token_lifetime: int = 3600,
        default_scope: str = "api",
        allowed_scopes: set[str] | None = None,
        cert_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._host = host
        self._requested_port = port
        self._tls = tls
        self._token_lifetime = token_lifetime
        self._default_scope = default_scope
        self._allowed_scopes = frozenset(allowed_scopes) if allowed_scopes is not None else None
        self._cert_dir = Path(cert_dir) if cert_dir is not None else None
        self._temp_dir: Path | None = None

        self._lock = threading.Lock()
        self._script: list[dict[str, Any]] = []
        self._requests: list[RecordedRequest] = []
        self._issued: list[str] = []
        self._token_expiry: dict[str, float] = {}  # token -> time.monotonic() deadline
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_path: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> StandInServer:
        """Bind, then serve in a daemon thread; return ``self`` so it can be chained."""
        if self._server is not None:
            raise RuntimeError("the stand-in server is already started")
        # Werkzeug logs every request line at INFO; this module logs its own, safer line instead.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        ssl_context = self._prepare_tls() if self._tls else None
        try:
            server = make_server(
                self._host,
                self._requested_port,
                self._wsgi_app,
                threaded=True,
                request_handler=_StandInRequestHandler,
                ssl_context=ssl_context,
            )
        except SystemExit as err:  # werkzeug exits the process when it cannot bind
            self._remove_temp_dir()
            raise OSError(f"stand-in server cannot listen on {self._host}:{self._requested_port}") from err
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"parkmobile-standin-{server.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("stand-in token endpoint serving at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed requests and remove the temporary certificate directory."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        if thread is not None:
            thread.join(timeout=10)
        server.server_close()
        self._server = None
        self._thread = None
        self._remove_temp_dir()
        log.info("stand-in token endpoint stopped")

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._running_server().port

    @property
    def base_url(self) -> str:
        """The server's root URL, such as ``https://127.0.0.1:43121``."""
        scheme = "https" if self._tls else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    # -- scripting and records -------------------------------------------------------------------

    def script(self, responses: list[dict[str, Any]]) -> None:
        """
        Queue responses for the next token requests, served in order; then normal behaviour resumes.

        Each item may hold ``status``, ``json``, ``text``, ``headers``, ``delay`` (seconds),
        ``drop`` (reset the connection), ``body_bytes`` (a streamed body of that size) and
        ``issue`` (a normal success with ``json`` merged in). An item with only ``delay`` and/or
        ``headers`` answers normally after the delay, with those headers added.

        :param responses: the scripted responses; each is checked before any is queued.
        """
        for index, item in enumerate(responses):
            _check_script_item(index, item)
        with self._lock:
            self._script.extend(copy.deepcopy(item) for item in responses)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def token_requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests to the token endpoint, oldest first."""
        return [request for request in self.requests if request.path == TOKEN_PATH]

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token the server has sent, normal or scripted, oldest first."""
        with self._lock:
            return list(self._issued)

    def reset(self) -> None:
        """Forget queued scripts, recorded requests and issued tokens (which then stop being valid)."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._issued.clear()
            self._token_expiry.clear()

    # -- the WSGI application --------------------------------------------------------------------

    def _wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[_RECEIVED_AT] = datetime.now(UTC)
        request = Request(environ)
        if request.path == TOKEN_PATH:
            response = self._handle_token(request)
        elif request.path == PING_PATH:
            response = self._handle_ping(request)
        else:
            response = _json_response(404, {"error": "not_found"})
            self._record(request, "none", None, response.status_code)
        return response(environ, start_response)

    def _handle_token(self, request: Request) -> Response:
        token_request = _parse_token_request(request)
        scripted = self._next_scripted()
        if scripted is None:
            response: Response | None = self._answer_token(token_request)
        else:
            response = self._scripted_response(scripted, token_request)
        self._record(
            request,
            token_request.auth_method,
            token_request,
            response.status_code if response is not None else None,
            scripted=scripted is not None,
        )
        if scripted is not None and scripted.get("delay"):
            self._stopping.wait(float(scripted["delay"]))
        if response is None:
            raise _DropConnection("scripted drop")
        return response

    def _handle_ping(self, request: Request) -> Response:
        token = _bearer_token(request)
        if request.method == "GET" and token is not None and self._is_valid(token):
            response = _json_response(200, {"ok": True})
        else:
            response = _json_response(
                401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        self._record(request, "bearer" if token is not None else "none", None, response.status_code)
        return response

    # -- normal token endpoint behaviour ---------------------------------------------------------

    def _answer_token(self, token_request: _TokenRequest) -> Response:
        if token_request.problem is not None:
            return _oauth_error(400, "invalid_request", token_request.problem)
        if not self._authenticates(token_request):
            headers = (
                {"WWW-Authenticate": "Basic"} if token_request.auth_method == "client_secret_basic" else {}
            )
            return _oauth_error(401, "invalid_client", "client authentication failed", headers)
        if token_request.grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", None)
        scopes = (token_request.scope or "").split() or self._default_scope.split()
        if self._allowed_scopes is not None and not set(scopes) <= self._allowed_scopes:
            return _oauth_error(400, "invalid_scope", None)
        return _json_response(200, self._issue_token(" ".join(scopes), {}), _NO_STORE)

    def _authenticates(self, token_request: _TokenRequest) -> bool:
        client_id = (token_request.client_id or "").encode("utf-8")
        client_secret = (token_request.client_secret or "").encode("utf-8")
        # Compare both, always, so a wrong id takes as long as a wrong secret.
        id_ok = hmac.compare_digest(client_id, self._client_id.encode("utf-8"))
        secret_ok = hmac.compare_digest(client_secret, self._client_secret.encode("utf-8"))
        return id_ok and secret_ok

    def _issue_token(self, scope: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": self._token_lifetime,
            "scope": scope,
        }
        body.update(overrides)
        self._remember_token(body)
        return body

    def _remember_token(self, body: Mapping[str, Any]) -> None:
        token = body.get("access_token")
        if not isinstance(token, str):
            return
        lifetime = _lifetime_seconds(body.get("expires_in"), self._token_lifetime)
        with self._lock:
            self._issued.append(token)
            self._token_expiry[token] = time.monotonic() + lifetime

    def _is_valid(self, token: str) -> bool:
        with self._lock:
            deadline = self._token_expiry.get(token)
        return deadline is not None and time.monotonic() < deadline

    # -- scripted behaviour ----------------------------------------------------------------------

    def _next_scripted(self) -> dict[str, Any] | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _scripted_response(self, item: Mapping[str, Any], token_request: _TokenRequest) -> Response | None:
        """Build the scripted answer; ``None`` means drop the connection."""
        if item.get("drop"):
            return None
        status = int(item.get("status", 200))
        if item.get("issue"):
            scope = " ".join((token_request.scope or "").split()) or self._default_scope
            response = _json_response(status, self._issue_token(scope, item.get("json", {})), _NO_STORE)
        elif "body_bytes" in item:
            response = Response(
                _padded_json(int(item["body_bytes"])), status, content_type="application/json"
            )
        elif "json" in item:
            if isinstance(item["json"], dict):
                self._remember_token(item["json"])
            response = _json_response(status, item["json"])
        elif "text" in item:
            response = Response(item["text"], status, content_type="text/plain; charset=utf-8")
        elif "status" in item:
            response = Response(b"", status)
        else:  # only a delay and/or headers: behave normally
            response = self._answer_token(token_request)
        for name, value in item.get("headers", {}).items():
            response.headers[name] = value
        return response

    # -- helpers ---------------------------------------------------------------------------------

    def _record(
        self,
        request: Request,
        auth_method: AuthMethod,
        token_request: _TokenRequest | None,
        status: int | None,
        *,
        scripted: bool = False,
    ) -> None:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            auth_method=auth_method,
            client_id=token_request.client_id if token_request else None,
            grant_type=token_request.grant_type if token_request else None,
            scope=token_request.scope if token_request else None,
            status=status,
            header_names=tuple(name for name, _ in request.headers.items()),
            content_type=request.mimetype or None,
            scripted=scripted,
            received_at=request.environ.get(_RECEIVED_AT, datetime.now(UTC)),
        )
        with self._lock:
            self._requests.append(recorded)
        log.info(
            "%s %s auth=%s status=%s%s",
            recorded.method,
            recorded.path,
            recorded.auth_method,
            "dropped" if status is None else status,
            " (scripted)" if scripted else "",
        )

    def _running_server(self) -> BaseWSGIServer:
        if self._server is None:
            raise RuntimeError("the stand-in server is not started")
        return self._server

    def _prepare_tls(self) -> ssl.SSLContext:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost", "::1")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        if self._cert_dir is not None:
            cert_dir = self._cert_dir
            cert_dir.mkdir(parents=True, exist_ok=True)
        else:
            cert_dir = self._temp_dir = Path(tempfile.mkdtemp(prefix="parkmobile-standin-"))
        ca_path = cert_dir / CA_FILE_NAME
        ca.cert_pem.write_to_path(str(ca_path))
        self.ca_path = str(ca_path)
        return context

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


# -- pure helpers ---------------------------------------------------------------------------------


def _parse_token_request(request: Request) -> _TokenRequest:
    """Read client authentication and grant fields from a token request, without judging them."""
    fields = request.form if request.mimetype == _FORM_MIMETYPE else ImmutableMultiDict[str, str]()
    basic = _basic_credentials(request)
    in_body = "client_secret" in fields
    auth_method: AuthMethod
    if basic is not None and in_body:
        auth_method = "both"
    elif basic is not None:
        auth_method = "client_secret_basic"
    elif in_body:
        auth_method = "client_secret_post"
    else:
        auth_method = "none"

    client_id, client_secret = basic if basic is not None else (None, None)
    if auth_method == "client_secret_post":
        client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
    elif client_id is None:
        client_id = fields.get("client_id")

    problem = _request_problem(request, auth_method, client_id)
    return _TokenRequest(
        auth_method=auth_method,
        client_id=client_id,
        client_secret=client_secret,
        grant_type=fields.get("grant_type"),
        scope=fields.get("scope"),
        problem=problem,
    )


def _request_problem(request: Request, auth_method: AuthMethod, client_id: str | None) -> str | None:
    """Say why a token request is malformed (an ``invalid_request``), or return ``None``."""
    form = request.form
    body_id = form.get("client_id")
    repeated = sorted(name for name in form if len(form.getlist(name)) > 1)
    checks = (
        (request.method != "POST", "the token endpoint takes POST"),
        (request.mimetype != _FORM_MIMETYPE, f"the body must be {_FORM_MIMETYPE}"),
        ("client_secret" in request.args, "client credentials must not be sent in the URL"),
        (auth_method == "both", "use one client authentication method, not two"),
        (auth_method == "none", "client authentication is required"),
        (bool(repeated), f"parameters sent more than once: {', '.join(repeated)}"),
        (
            auth_method == "client_secret_basic" and body_id is not None and body_id != client_id,
            "client_id in the body differs from the Authorization header",
        ),
        ("grant_type" not in form, "grant_type is required"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _basic_credentials(request: Request) -> tuple[str | None, str | None] | None:
    """
    Decode ``Authorization: Basic`` the way RFC 6749 section 2.3.1 encodes it.

    :return: ``None`` without a Basic header; ``(None, None)`` when the header cannot be decoded;
        else the form-urldecoded client id and secret, split at the first colon.
    """
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        return None, None
    return unquote_plus(client_id), unquote_plus(client_secret)


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _lifetime_seconds(expires_in: object, default: int) -> int:
    """Read ``expires_in`` as sent (a number or a numeric string); fall back to ``default``."""
    if isinstance(expires_in, bool):
        return default
    if isinstance(expires_in, int | float | str):
        try:
            return int(float(expires_in))
        except ValueError:
            return default
    return default


def _json_response(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _oauth_error(
    status: int, error: str, description: str | None, headers: Mapping[str, str] | None = None
) -> Response:
    body = {"error": error}
    if description is not None:
        body["error_description"] = description
    return _json_response(status, body, {**_NO_STORE, **(headers or {})})


def _padded_json(size: int) -> Iterator[bytes]:
    """Yield exactly ``size`` bytes in chunks: a JSON object padded with ``x`` when big enough."""
    head, tail = b'{"padding":"', b'"}'
    if size < len(head) + len(tail):
        yield b" " * size
        return
    yield head
    remaining = size - len(head) - len(tail)
    while remaining > 0:
        chunk = min(remaining, _STREAM_CHUNK)
        yield b"x" * chunk
        remaining -= chunk
    yield tail


def _check_script_item(index: int, item: Mapping[str, Any]) -> None:
    """Refuse a scripted response that is misspelt or contradicts itself, naming its position."""

    def fail(reason: str) -> NoReturn:
        raise ValueError(f"scripted response #{index}: {reason}")

    unknown = set(item) - _SCRIPT_KEYS
    if unknown:
        fail(f"unknown keys {sorted(unknown)}; use {sorted(_SCRIPT_KEYS)}")
    status = item.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        fail("status must be an int from 100 to 599")
    if "text" in item and not isinstance(item["text"], str):
        fail("text must be a str")
    if not isinstance(item.get("headers", {}), dict):
        fail("headers must be a dict")
    delay = item.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        fail("delay must be a number of seconds >= 0")
    body_bytes = item.get("body_bytes", 0)
    if isinstance(body_bytes, bool) or not isinstance(body_bytes, int) or body_bytes < 0:
        fail("body_bytes must be an int >= 0")
    if item.get("issue") and not isinstance(item.get("json", {}), dict):
        fail("json must be an object when issue is set")
    bodies = [key for key in ("json", "text", "body_bytes") if key in item]
    if len(bodies) > 1 or (item.get("issue") and ("text" in item or "body_bytes" in item)):
        fail("give at most one body: json (with or without issue), text or body_bytes")
    if item.get("drop") and set(item) - {"drop", "delay"}:
        fail("drop takes no other key but delay")


# -- command line ---------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m parkmobile_token.standin",
        description=(
            "Serve a local stand-in for ParkMobile's OAuth2 token endpoint. The client id and secret "
            f"come from {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="the port; 0 picks a free one (default 8443)")
    parser.add_argument("--cert-dir", help="where to write the test CA certificate (default: a temp dir)")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="expires_in, seconds (default 3600)")
    parser.add_argument("--ready-file", help="also write the ready JSON line to this file")
    return parser.parse_args(argv)


def _write_ready_file(path: str, line: str) -> None:
    """Write atomically, so a process polling for the file never reads half of it."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(line + "\n", encoding="utf-8")
    os.replace(partial, target)


def main(argv: list[str] | None = None) -> int:
    """
    Run the stand-in until SIGTERM or SIGINT; return the process exit code.

    :param argv: the command-line arguments, without the program name; ``sys.argv[1:]`` when ``None``.
    """
    args = _parse_args(argv)
    client_id = os.environ.get(CLIENT_ID_ENV, "")
    client_secret = os.environ.get(CLIENT_SECRET_ENV, "")
    if not client_id or not client_secret:
        print(f"error: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} in the environment", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(
            f"error: --host must be a loopback address (127.0.0.0/8, ::1 or localhost), not {args.host!r}",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    # Block the stop signals before any thread exists, so every thread inherits the mask and
    # sigwait below receives them; otherwise SIGTERM could kill the process from a server thread.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        server = StandInServer(
            client_id,
            client_secret,
            host=args.host,
            port=args.port,
            tls=not args.no_tls,
            token_lifetime=args.token_lifetime,
            cert_dir=args.cert_dir,
        )
        try:
            server.start()
        except OSError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        try:
            ready = json.dumps({"base_url": server.base_url, "ca_path": server.ca_path, "port": server.port})
            print(ready, flush=True)
            if args.ready_file:
                _write_ready_file(args.ready_file, ready)
            received = signal.sigwait(stop_signals)
            log.info("received %s, stopping", signal.Signals(received).name)
        finally:
            server.stop()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    return 0


if __name__ == "__main__":
    sys.exit(main())
