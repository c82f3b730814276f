"""Hooks that talk to ParkMobile's OAuth2 token endpoint."""

from __future__ import annotations

import base64
import ipaddress
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlsplit

import requests
import tenacity
from airflow.providers.http.hooks.http import HttpHook
from requests.auth import AuthBase

from parkmobile_token.clock import utcnow
from parkmobile_token.config import (
    DEFAULT_AUTH_CONN_ID,
    DEFAULT_CLEANUP_WINDOW_S,
    DEFAULT_ENDPOINT,
    DEFAULT_REQUEST_TIMEOUT_S,
    MAX_RESPONSE_BYTES,
    FetchRetryPolicy,
)
from parkmobile_token.exceptions import ConnectionConfigError, InvalidTokenResponse, TokenEndpointError
from parkmobile_token.response import (
    TokenResponse,
    error_for_status,
    parse_retry_after,
    parse_token_response,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Connection
    from requests import PreparedRequest, Response, Session

CLIENT_SECRET_POST = "client_secret_post"
CLIENT_SECRET_BASIC = "client_secret_basic"
AUTH_METHODS = (CLIENT_SECRET_POST, CLIENT_SECRET_BASIC)

#: Connection extras this hook reads itself; the HTTP hook would otherwise send them as headers.
OWN_EXTRA_KEYS = ("auth_method", "scope", "insecure_skip_tls_verify")

_FALSE_STRINGS = frozenset({"false", "0", "no", "off"})


class ClientSecretBasic(AuthBase):
    """
    HTTP Basic client authentication as RFC 6749 section 2.3.1 defines it.

    The client id and secret are form-encoded before they are joined and base64-encoded, so that a
    secret holding ``:`` or ``%`` reaches the server intact.
    """

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._client_id = client_id
        self._client_secret = client_secret

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id=<hidden>)"

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        credentials = f"{quote_plus(self._client_id)}:{quote_plus(self._client_secret)}"
        request.headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode(
            "ascii"
        )
        return request


class ParkMobileAuthHook(HttpHook):
    """
    Fetch an access token with the OAuth2 client-credentials grant.

    The connection is an ``http`` connection: host and schema point at the auth server, login is
    the client id and password the client secret. Extras read by this hook, beside those of the
    HTTP hook (``verify``, ``proxies``, ``timeout``, ...):

    * ``auth_method``: ``client_secret_post`` (default; credentials in the form body) or
      ``client_secret_basic`` (HTTP Basic with form-encoded credentials).
    * ``scope``: the scope to ask for when the caller names none.
    * ``insecure_skip_tls_verify``: ``true`` turns TLS verification off, with a warning on every
      use. ``verify: false`` alone is refused, so that verification is never lost by accident.

    :param http_conn_id: the Airflow connection of the auth server.
    :param auth_method: overrides the connection's ``auth_method``.
    :param timeout: seconds to connect and to wait for the answer, unless the connection's
        ``timeout`` extra says otherwise.
    :param retry_policy: how transient failures are retried; read from ``[parkmobile_token]`` when
        not given.
    """

    default_conn_name = DEFAULT_AUTH_CONN_ID
    hook_name = "ParkMobile OAuth2"

    def __init__(
        self,
        http_conn_id: str = DEFAULT_AUTH_CONN_ID,
        *,
        auth_method: str | None = None,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        retry_policy: FetchRetryPolicy | None = None,
    ) -> None:
        super().__init__(method="POST", http_conn_id=http_conn_id)
        self.auth_method = auth_method
        self.timeout = timeout
        self.retry_policy = retry_policy

    def fetch_token(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        scope: str | None = None,
        min_lifetime: int = DEFAULT_CLEANUP_WINDOW_S,
    ) -> TokenResponse:
        """
        Ask the token endpoint for a new access token, retrying transient failures.

        :param endpoint: the token endpoint's path on the connection's host.
        :param scope: the scope to ask for; the connection's ``scope`` extra when None.
        :param min_lifetime: seconds a token must outlive; a shorter lifetime is refused.
        :raises ConnectionConfigError: the connection is unusable or unsafe.
        :raises TokenEndpointError: the endpoint failed; ``retryable`` tells whether later may help.
        """
        connection = self.get_connection(self.http_conn_id)
        auth_method = self._auth_method_of(connection)
        client_id, client_secret = self._credentials_of(connection)
        session = self.get_conn()
        url = self.url_from_endpoint(endpoint)
        self._check_transport(url)
        self._check_verification(session, connection)

        form = {"grant_type": "client_credentials"}
        scope = scope or connection.extra_dejson.get("scope")
        if scope:
            form["scope"] = scope
        if auth_method == CLIENT_SECRET_POST:
            form |= {"client_id": client_id, "client_secret": client_secret}
        prepared = session.prepare_request(
            requests.Request("POST", url, data=form, headers={"Accept": "application/json"})
        )
        send_kwargs = session.merge_environment_settings(
            url, proxies=session.proxies, stream=True, verify=session.verify, cert=session.cert
        )
        self.log.debug(
            "Requesting a token from %s with %s on connection %r", url, auth_method, self.http_conn_id
        )
        return self._send_with_retries(session, prepared, send_kwargs, min_lifetime)

    def test_connection(self) -> tuple[bool, str]:
        """Fetch one token to prove that the endpoint and the credentials work."""
        try:
            token = self.fetch_token()
        except (ConnectionConfigError, TokenEndpointError) as err:
            return False, str(err)
        return True, f"Token endpoint issued a token, fingerprint {token.fingerprint}"

    # -- connection -----------------------------------------------------------------------------

    def _auth_method_of(self, connection: Connection) -> str:
        method = self.auth_method or connection.extra_dejson.get("auth_method") or CLIENT_SECRET_POST
        if method not in AUTH_METHODS:
            raise ConnectionConfigError(
                f"Connection {self.http_conn_id!r} asks for auth_method {method!r}; "
                f"use one of {', '.join(AUTH_METHODS)}"
            )
        return str(method)

    def _credentials_of(self, connection: Connection) -> tuple[str, str]:
        if not connection.login:
            raise ConnectionConfigError(f"Connection {self.http_conn_id!r} has no login (the client id)")
        if not connection.password:
            raise ConnectionConfigError(
                f"Connection {self.http_conn_id!r} has no password (the client secret)"
            )
        return connection.login, connection.password

    def _extract_auth(self, connection: Connection) -> Any | None:
        if self._auth_method_of(connection) == CLIENT_SECRET_BASIC:
            return ClientSecretBasic(*self._credentials_of(connection))
        # client_secret_post: the credentials travel in the body, never also as Basic auth.
        return None

    def _configure_session_from_extra(
        self, session: Session, connection: Any, extra_options: dict[str, Any]
    ) -> Session:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        for key in OWN_EXTRA_KEYS:
            session.headers.pop(key, None)
        return session

    def _check_transport(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https":
            return
        if parts.scheme == "http" and _is_loopback(parts.hostname):
            return
        raise ConnectionConfigError(
            f"Connection {self.http_conn_id!r} points at {parts.scheme}://{parts.hostname}; client "
            "credentials are sent over https only (plain http is accepted for a loopback host alone)"
        )

    def _check_verification(self, session: Session, connection: Connection) -> None:
        skip = _as_bool(connection.extra_dejson.get("insecure_skip_tls_verify", False))
        if skip:
            self.log.warning(
                "TLS verification is OFF for connection %r (insecure_skip_tls_verify); anyone on the "
                "path can read the client secret and the token",
                self.http_conn_id,
            )
            session.verify = False
            return
        verify = session.verify
        if verify is False or (isinstance(verify, str) and verify.strip().lower() in _FALSE_STRINGS):
            raise ConnectionConfigError(
                f"Connection {self.http_conn_id!r} sets verify to false; TLS verification stays on unless "
                "the extra insecure_skip_tls_verify is true. To trust a private CA, set verify to the "
                "path of its PEM bundle"
            )

    # -- request --------------------------------------------------------------------------------

    def _send_with_retries(
        self, session: Session, prepared: PreparedRequest, send_kwargs: Mapping[str, Any], min_lifetime: int
    ) -> TokenResponse:
        policy = self.retry_policy or FetchRetryPolicy.from_config()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts)
            | tenacity.stop_before_delay(policy.max_elapsed),
            wait=_RetryAfterOrBackoff(policy),
            retry=tenacity.retry_if_exception(lambda err: getattr(err, "retryable", False)),
            before_sleep=self._log_retry,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._send_once(
                    session, prepared, send_kwargs, attempt.retry_state.attempt_number, min_lifetime
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _send_once(
        self,
        session: Session,
        prepared: PreparedRequest,
        send_kwargs: Mapping[str, Any],
        attempt_number: int,
        min_lifetime: int,
    ) -> TokenResponse:
        requested_at = utcnow()
        started = time.monotonic()
        try:
            response = session.send(prepared, timeout=self._timeout(), allow_redirects=False, **send_kwargs)
            with response:
                body = self._read_body(response)
        except requests.RequestException as err:
            self._log_attempt(attempt_number, type(err).__name__, started)
            raise self._transport_error(err) from err
        except InvalidTokenResponse:
            self._log_attempt(attempt_number, f"HTTP {response.status_code}, body too large", started)
            raise
        self._log_attempt(attempt_number, f"HTTP {response.status_code}", started)

        if response.status_code == 200:
            return parse_token_response(
                body, requested_at=requested_at, conn_id=self.http_conn_id, min_lifetime=min_lifetime
            )
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=utcnow())
        raise error_for_status(response.status_code, body, conn_id=self.http_conn_id, retry_after=retry_after)

    def _timeout(self) -> float:
        configured = self.merged_extra.get("timeout")
        return float(configured) if configured is not None else self.timeout

    def _read_body(self, response: Response) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
            raise self._too_large(response.status_code)
        body = bytearray()
        for chunk in response.iter_content(chunk_size=8192):
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise self._too_large(response.status_code)
        return bytes(body)

    def _too_large(self, status: int) -> InvalidTokenResponse:
        return InvalidTokenResponse(
            f"Token endpoint on connection {self.http_conn_id!r} answered HTTP {status} with a body over "
            f"{MAX_RESPONSE_BYTES} bytes, which is not a token response; it was not read",
            conn_id=self.http_conn_id,
            status=status,
            error_class="body_too_large",
        )

    def _transport_error(self, err: requests.RequestException) -> TokenEndpointError:
        name = type(err).__name__
        if isinstance(err, requests.exceptions.SSLError):
            return TokenEndpointError(
                f"TLS check of the token endpoint on connection {self.http_conn_id!r} failed ({name}); "
                "check the host name and the connection's verify extra (a CA bundle path)",
                conn_id=self.http_conn_id,
                error_class="tls_error",
            )
        transient = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        if isinstance(err, transient):
            return TokenEndpointError(
                f"Token endpoint on connection {self.http_conn_id!r} could not be reached: {name}",
                conn_id=self.http_conn_id,
                error_class=name,
                retryable=True,
            )
        return TokenEndpointError(
            f"Token request on connection {self.http_conn_id!r} could not be sent: {name}",
            conn_id=self.http_conn_id,
            error_class=name,
        )

    def _log_attempt(self, attempt_number: int, outcome: str, started: float) -> None:
        self.log.info(
            "Token request attempt %d on connection %r: %s after %.3f s",
            attempt_number,
            self.http_conn_id,
            outcome,
            time.monotonic() - started,
        )

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        self.log.warning("Transient failure on connection %r; retrying in %.1f s", self.http_conn_id, wait)


class _RetryAfterOrBackoff(tenacity.wait.wait_base):
    """Wait what the server's ``Retry-After`` asks, up to a cap; otherwise back off with jitter."""

    def __init__(self, policy: FetchRetryPolicy) -> None:
        self._policy = policy
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=policy.backoff_initial, max=policy.backoff_max, jitter=policy.jitter
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self._policy.retry_after_cap))
        return float(self._backoff(retry_state))


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "on"}
    return bool(value)


__all__ = [
    "AUTH_METHODS",
    "CLIENT_SECRET_BASIC",
    "CLIENT_SECRET_POST",
    "ClientSecretBasic",
    "ParkMobileAuthHook",
]
