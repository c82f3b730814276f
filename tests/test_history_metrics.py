"""The refresh's metrics reach a real StatsD listener through Airflow's own stats client."""

from __future__ import annotations

import re
import socket
import threading
from typing import TYPE_CHECKING, Any

import pytest

from parkmobile_token import metrics

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import AirflowRunner, TokenDatabase

pytestmark = pytest.mark.airflow

PREFIX = "airflow"


class StatsdListener:
    """A UDP socket on the loopback that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def env(self) -> dict[str, str]:
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": PREFIX,
        }

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def settle(self, quiet_s: float = 0.5) -> None:
        """Wait until nothing has arrived for ``quiet_s`` seconds, so every datagram sent is counted."""
        while True:
            seen = len(self.lines())
            self._stopped.wait(quiet_s)
            if len(self.lines()) == seen:
                return

    def values(self, name: str, kind: str) -> list[float]:
        """The values received for the metric ``name`` (without prefix) of a StatsD type (c, g, ms)."""
        pattern = re.compile(rf"{re.escape(PREFIX)}\.{re.escape(name)}:(-?[0-9.]+)\|{kind}(\|@[0-9.]+)?")
        return [float(match.group(1)) for line in self.lines() if (match := pattern.fullmatch(line))]

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _receive(self) -> None:
        while not self._stopped.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._lines += data.decode("utf-8", "replace").splitlines()


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.stop()


def test_a_refresh_sends_latency_success_lifetime_and_time_left(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase, statsd: StatsdListener
) -> None:
    result = airflow.dags_test(env=statsd.env())
    statsd.settle()

    assert result.task_states["delete_expiring_tokens"] == "success", result.output[-3000:]
    assert any(line.startswith(f"{PREFIX}.") for line in statsd.lines()), "Airflow sent no metric at all"
    [latency] = statsd.values(metrics.FETCH_LATENCY, "ms")
    assert 0 <= latency < 60_000
    assert statsd.values(metrics.FETCH_SUCCESS, "c") == [1.0]
    assert statsd.values(metrics.TOKEN_LIFETIME, "g") == [3600.0]
    [time_left] = statsd.values(metrics.TOKEN_TIME_LEFT, "g")
    assert 3500 <= time_left <= 3600
    assert statsd.values(metrics.FETCH_FAILURE, "c") == []


def test_a_failed_fetch_is_counted_by_its_error_class(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase, statsd: StatsdListener
) -> None:
    standin.script([{"status": 401, "json": {"error": "invalid_client"}}])

    result = airflow.dags_test(env=statsd.env())
    statsd.settle()

    assert result.task_states["fetch_token"] == "failed", result.output[-3000:]
    assert statsd.values(metrics.FETCH_FAILURE, "c") == [1.0]
    assert statsd.values(f"{metrics.FETCH_FAILURE}.invalid_client", "c") == [1.0]
    assert len(statsd.values(metrics.FETCH_LATENCY, "ms")) == 1
    assert statsd.values(metrics.FETCH_SUCCESS, "c") == []
    assert statsd.values(metrics.TOKEN_TIME_LEFT, "g") == [], "the cleanup did not run, so sent nothing"
