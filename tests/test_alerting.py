"""Escalation of failed runs: the decision, the notifier settings, and the callback on the real history."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import BaseNotifier

from parkmobile_token.history import FAILED, STORED
from parkmobile_token.notifications import (
    ALERT_CONTEXT_KEY,
    AlertConfigError,
    AlertDecision,
    AlertFacts,
    FailureEscalation,
    ParkMobileLogNotifier,
    decide,
    load_notifier,
    summary_of,
)
from tests.conftest import REPO, auth_connection_json, insert_history

if TYPE_CHECKING:
    from tests.conftest import AirflowRunner, TokenDatabase

DAG_ID = "update_parkmobile_token"
ALERT_FILE_ENV = "PARKMOBILE_TEST_ALERT_FILE"
FILE_NOTIFIER = "tests.test_alerting.FileNotifier"


class FileNotifier(BaseNotifier):
    """A notifier for the tests: appends what it is given, as JSON, to ``$PARKMOBILE_TEST_ALERT_FILE``."""

    template_fields = ("label",)

    def __init__(self, label: str = "unlabelled") -> None:
        super().__init__()
        self.label = label

    def notify(self, context: Any) -> None:
        alert = context[ALERT_CONTEXT_KEY]
        line = json.dumps({"label": self.label, "alert": alert, "run_id": context.get("run_id")})
        with Path(os.environ[ALERT_FILE_ENV]).open("a") as sink:
            sink.write(line + "\n")


def notify_function(context: Any) -> None:
    """A plain function as notifier."""
    Path(os.environ[ALERT_FILE_ENV]).write_text(context[ALERT_CONTEXT_KEY]["summary"])


def alerts_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the decision ---------------------------------------------------------------------------------


def facts(**overrides: Any) -> AlertFacts:
    values: dict[str, Any] = {
        "dag_id": DAG_ID,
        "run_id": "scheduled__2026-12-03T10:00:00+00:00",
        "failed_runs": 1,
        "token_fingerprint": "0123456789ab",
        "token_seconds_left": 3000,
    }
    values.update(overrides)
    return AlertFacts(**values)


@pytest.mark.parametrize(
    ("known", "escalate", "says"),
    [
        pytest.param({}, False, None, id="one-failure-and-a-long-lived-token"),
        pytest.param({"failed_runs": 2}, False, None, id="two-failures-below-three"),
        pytest.param({"failed_runs": 3}, True, "3 runs in a row stored no token", id="three-failures"),
        pytest.param({"failed_runs": 7}, True, "7 runs in a row", id="a-longer-streak"),
        pytest.param(
            {"token_seconds_left": 899}, True, "has 899 s left (alert below 900 s)", id="token-short"
        ),
        pytest.param({"token_seconds_left": 900}, False, None, id="token-at-the-threshold"),
        pytest.param({"token_seconds_left": -50}, True, "has 0 s left", id="token-expired"),
        pytest.param(
            {"token_seconds_left": 0, "token_fingerprint": None}, True, "no token is stored", id="no-token"
        ),
        pytest.param(
            {"failed_runs": None, "unreadable": ("the refresh history (ProgrammingError)",)},
            True,
            "the refresh history (ProgrammingError) could not be read",
            id="history-unreadable",
        ),
        pytest.param(
            {"token_seconds_left": None, "token_fingerprint": None, "unreadable": ("the token table (X)",)},
            True,
            "the token table (X) could not be read",
            id="token-table-unreadable",
        ),
    ],
)
def test_decide_escalates_only_repeated_failures_a_short_token_or_unknowns(
    known: dict[str, Any], escalate: bool, says: str | None
) -> None:
    decision = decide(facts(**known), after_failed_runs=3, when_token_left_s=900)

    assert decision.escalate is escalate
    if says is None:
        assert decision.reasons == ()
    else:
        assert any(says in reason for reason in decision.reasons), decision.reasons


def test_decide_names_every_reason() -> None:
    decision = decide(facts(failed_runs=4, token_seconds_left=60), after_failed_runs=3, when_token_left_s=900)

    assert len(decision.reasons) == 2


def test_summary_names_the_run_and_the_reasons() -> None:
    known = facts(failed_runs=3)
    summary = summary_of(known, AlertDecision(True, ("first reason", "second reason")))

    assert summary == (
        f"ParkMobile token refresh: DAG {DAG_ID} run {known.run_id} failed; first reason; second reason"
    )


def error_lines(output: str) -> list[str]:
    """The ERROR lines Airflow's structured logging printed, without timestamp and level."""
    return [line.split("[error    ] ", 1)[1] for line in output.splitlines() if "[error    ] " in line]


def test_log_notifier_logs_one_error_line_with_the_summary(capfd: pytest.CaptureFixture[str]) -> None:
    ParkMobileLogNotifier()({ALERT_CONTEXT_KEY: {"summary": "the summary"}, "run_id": "r1"})

    [line] = error_lines(capfd.readouterr().out)
    assert line.split() == [
        "the",
        "summary",
        "[parkmobile_token.notifications.ParkMobileLogNotifier]",
        line.split()[-1],
    ]


# -- the notifier settings ------------------------------------------------------------------------


def test_load_notifier_builds_a_class_with_its_json_keyword_arguments() -> None:
    notifier = load_notifier(FILE_NOTIFIER, '{"label": "ops"}')

    assert isinstance(notifier, FileNotifier)
    assert notifier.label == "ops"


def test_load_notifier_takes_a_function_as_it_is() -> None:
    assert load_notifier("tests.test_alerting.notify_function") is notify_function


def test_load_notifier_builds_the_smtp_notifier_from_settings() -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = load_notifier(
        "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
        '{"to": "ops@example.com", "subject": "{{ parkmobile_alert.summary }}"}',
    )

    assert isinstance(notifier, SmtpNotifier)
    assert notifier.to == "ops@example.com"


@pytest.mark.parametrize(
    ("path", "kwargs", "says"),
    [
        pytest.param("no_such_module.Notifier", None, "cannot be imported", id="module-missing"),
        pytest.param("tests.test_alerting.NoSuchNotifier", None, "cannot be imported", id="name-missing"),
        pytest.param("NoDots", None, "cannot be imported", id="no-module"),
        pytest.param(FILE_NOTIFIER, "{not json", "is not JSON", id="kwargs-not-json"),
        pytest.param(FILE_NOTIFIER, '["ops"]', "is not a JSON object", id="kwargs-not-an-object"),
        pytest.param(
            FILE_NOTIFIER, '{"colour": "red"}', "refuses alert_notifier_kwargs", id="kwargs-refused"
        ),
        pytest.param(
            "tests.test_alerting.notify_function", '{"a": 1}', "is not a class", id="kwargs-for-a-function"
        ),
        pytest.param(
            "tests.test_alerting.DAG_ID", None, "neither a notifier nor a function", id="not-callable"
        ),
    ],
)
def test_load_notifier_refuses_unusable_settings(path: str, kwargs: str | None, says: str) -> None:
    with pytest.raises(AlertConfigError, match=says):
        load_notifier(path, kwargs)


# -- the callback on the real history -------------------------------------------------------------


@pytest.fixture
def alert_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "alerts.jsonl"
    monkeypatch.setenv(ALERT_FILE_ENV, str(path))
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__ALERT_NOTIFIER", FILE_NOTIFIER)
    monkeypatch.setenv(
        "AIRFLOW__PARKMOBILE_TOKEN__ALERT_NOTIFIER_KWARGS",
        json.dumps({"label": "{{ parkmobile_alert.failed_runs }} failed runs"}),
    )
    return path


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, empty_history_table: TokenDatabase) -> TokenDatabase:
    monkeypatch.setenv("AIRFLOW_CONN_PARKMOBILE_DB", empty_history_table.connection_json())
    return empty_history_table


def failed_runs(db: TokenDatabase, count: int, *, after_success: bool = True) -> str:
    """Record a stored run and then ``count`` failed runs, an hour apart; return the newest run's id."""
    now = datetime.now(UTC).replace(tzinfo=None)
    outcomes = ([STORED] if after_success else []) + [FAILED] * count
    run_id = ""
    for number, outcome in enumerate(outcomes):
        run_id = f"scheduled__{number}"
        insert_history(
            db,
            dag_id=DAG_ID,
            run_id=run_id,
            try_number=1,
            attempted_at=now - timedelta(hours=len(outcomes) - number),
            outcome=outcome,
            error_class="http_503" if outcome == FAILED else None,
        )
    return run_id


def context_of(run_id: str) -> dict[str, Any]:
    """The least a DAG failure callback is given: the DAG and the run id."""
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": run_id, "reason": "task_failure"}


@pytest.mark.parametrize(
    ("failures", "token_left_s", "expected_reason"),
    [
        pytest.param(3, 3600, "3 runs in a row stored no token", id="third-failed-run"),
        pytest.param(5, 3600, "5 runs in a row stored no token", id="fifth-failed-run"),
        pytest.param(1, 600, "s left (alert below 900 s)", id="token-running-out"),
        pytest.param(1, None, "no token is stored", id="no-token"),
    ],
)
def test_callback_calls_the_configured_notifier_when_a_threshold_is_crossed(
    db: TokenDatabase, alert_file: Path, failures: int, token_left_s: int | None, expected_reason: str
) -> None:
    run_id = failed_runs(db, failures)
    if token_left_s is not None:
        db.insert("token-of-an-earlier-run", expires_in_s=token_left_s)

    FailureEscalation()(context_of(run_id))

    [alert] = alerts_in(alert_file)
    assert alert["run_id"] == run_id
    assert alert["label"] == f"{failures} failed runs", "the notifier's templates see the facts"
    facts = alert["alert"]
    assert facts["failed_runs"] == failures
    assert facts["dag_id"] == DAG_ID
    assert any(expected_reason in reason for reason in facts["reasons"]), facts["reasons"]
    assert facts["summary"].startswith(f"ParkMobile token refresh: DAG {DAG_ID} run {run_id} failed; ")
    assert "token-of-an-earlier-run" not in json.dumps(alert)


@pytest.mark.parametrize(
    "failures", [0, 1, 2], ids=["no-failed-run", "first-failed-run", "second-failed-run"]
)
def test_callback_does_not_notify_below_the_thresholds(
    db: TokenDatabase, alert_file: Path, caplog: pytest.LogCaptureFixture, failures: int
) -> None:
    caplog.set_level(logging.INFO)
    run_id = failed_runs(db, failures)
    db.insert("token-still-valid", expires_in_s=1800)

    decision = FailureEscalation().escalate(context_of(run_id))

    assert decision == AlertDecision(False, ())
    assert alerts_in(alert_file) == []
    assert f"{failures} failed run(s) in a row" in caplog.text


def test_callback_thresholds_come_from_the_settings(
    db: TokenDatabase, alert_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = failed_runs(db, 1)
    db.insert("token-for-20-minutes", expires_in_s=1200)
    escalation = FailureEscalation()

    escalation(context_of(run_id))
    assert alerts_in(alert_file) == []

    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__ALERT_WHEN_TOKEN_LEFT_S", "1800")
    escalation(context_of(run_id))
    assert len(alerts_in(alert_file)) == 1

    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__ALERT_WHEN_TOKEN_LEFT_S", "60")
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__ALERT_AFTER_FAILED_RUNS", "1")
    escalation(context_of(run_id))
    assert [alert["alert"]["reasons"] for alert in alerts_in(alert_file)][-1] == [
        "1 runs in a row stored no token (alert from 1)"
    ]


def test_callback_escalates_when_the_history_cannot_be_read(db: TokenDatabase, alert_file: Path) -> None:
    db.insert("token-still-valid", expires_in_s=3600)

    FailureEscalation(history_table="no_such_history")(context_of("scheduled__x"))

    [alert] = alerts_in(alert_file)
    assert alert["alert"]["reasons"] == ["the refresh history (ProgrammingError) could not be read"]
    assert alert["alert"]["failed_runs"] is None


def test_callback_with_a_broken_notifier_logs_an_error_and_does_not_raise(
    db: TokenDatabase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__PARKMOBILE_TOKEN__ALERT_NOTIFIER", "no_such_module.Notifier")
    run_id = failed_runs(db, 3)

    FailureEscalation()(context_of(run_id))

    [error] = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert "could not be escalated: AlertConfigError: alert_notifier 'no_such_module.Notifier'" in (
        error.getMessage()
    )


def test_callback_default_notifier_logs_one_error_line(
    db: TokenDatabase, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRFLOW__PARKMOBILE_TOKEN__ALERT_NOTIFIER", raising=False)
    run_id = failed_runs(db, 3)
    db.insert("token-still-valid-SEKRIT", expires_in_s=3600)

    FailureEscalation()(context_of(run_id))

    output = capfd.readouterr().out
    [line] = error_lines(output)
    assert line.startswith(
        f"ParkMobile token refresh: DAG {DAG_ID} run {run_id} failed; "
        "3 runs in a row stored no token (alert from 3) ["
    )
    assert "SEKRIT" not in output


# -- through Airflow ------------------------------------------------------------------------------


@pytest.mark.airflow
def test_the_dag_escalates_its_third_failed_run_through_the_configured_notifier(
    airflow: AirflowRunner, standin: Any, empty_history_table: TokenDatabase, tmp_path: Path
) -> None:
    db = empty_history_table
    failed_runs(db, 2)
    db.insert("token-still-valid", expires_in_s=3600)
    standin.script([{"status": 400, "json": {"error": "invalid_grant"}}])
    path = tmp_path / "alerts.jsonl"
    env = {
        ALERT_FILE_ENV: str(path),
        "AIRFLOW__PARKMOBILE_TOKEN__ALERT_NOTIFIER": FILE_NOTIFIER,
        "AIRFLOW__PARKMOBILE_TOKEN__ALERT_NOTIFIER_KWARGS": '{"label": "run {{ run_id }}"}',
        # The test notifier lives in this repository's tests package.
        "PYTHONPATH": f"{REPO / 'plugins'}{os.pathsep}{REPO}",
        "AIRFLOW_CONN_PARKMOBILE_AUTH": auth_connection_json(standin),
    }

    result = airflow.dags_test(env=env)

    assert result.task_states["fetch_token"] == "failed", result.output[-3000:]
    [alert] = alerts_in(path)
    assert alert["alert"]["failed_runs"] == 3
    assert alert["alert"]["reasons"] == ["3 runs in a row stored no token (alert from 3)"]
    assert alert["label"] == f"run {alert['run_id']}"
    assert alert["run_id"].startswith("manual__")
