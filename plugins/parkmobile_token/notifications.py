"""
Escalate a failed refresh only when it matters: several failed runs in a row, or a token about to run out.

:class:`FailureEscalation` is the DAG's ``on_failure_callback``. When a DAG run fails it reads two
facts from MySQL, with one query each: how many runs in a row stored no token (from the refresh
history), and how long the newest token has left (from the token table). It escalates when the
first reaches ``[parkmobile_token] alert_after_failed_runs`` (3), when the second is below
``alert_when_token_left_s`` (900 s), or when either cannot be read. Escalating calls the notifier
that ``alert_notifier`` names, by default :class:`ParkMobileLogNotifier`, which logs one ERROR line.
Any Airflow notifier works, e.g. ``airflow.providers.smtp.notifications.smtp.SmtpNotifier``, built with
the keyword arguments in ``alert_notifier_kwargs`` (JSON). The facts reach the notifier in the context
under ``parkmobile_alert``, so its templates can say ``{{ parkmobile_alert.summary }}``.

Nothing here names a token other than by fingerprint, nor any secret.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from parkmobile_token.config import DEFAULT_DB_CONN_ID, DEFAULT_HISTORY_TABLE, DEFAULT_TABLE, SECTION
from parkmobile_token.exceptions import ParkMobileTokenError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow.sdk import Context

log = logging.getLogger(__name__)

DEFAULT_ALERT_AFTER_FAILED_RUNS = 3
DEFAULT_ALERT_WHEN_TOKEN_LEFT_S = 900
DEFAULT_NOTIFIER = "parkmobile_token.notifications.ParkMobileLogNotifier"
#: The context key under which a notifier finds the facts of the escalation.
ALERT_CONTEXT_KEY = "parkmobile_alert"


class AlertConfigError(ParkMobileTokenError):
    """The ``alert_*`` settings name a notifier that cannot be built."""


@dataclass(frozen=True)
class AlertFacts:
    """
    What the escalation knows when a DAG run fails.

    :param dag_id: the failed run's DAG.
    :param run_id: the failed run.
    :param failed_runs: runs in a row that stored no token, this one included; None when unreadable.
    :param token_fingerprint: the newest token's fingerprint; None when there is none or it is unreadable.
    :param token_seconds_left: the newest token's time left (negative once expired, 0 when the table is
        empty); None when unreadable.
    :param unreadable: what could not be read, and why (an error class, never a message).
    """

    dag_id: str
    run_id: str | None
    failed_runs: int | None
    token_fingerprint: str | None
    token_seconds_left: int | None
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertDecision:
    """
    Whether to escalate, and why.

    :param escalate: call the notifier.
    :param reasons: one short sentence per threshold crossed or fact unread; empty when not escalating.
    """

    escalate: bool
    reasons: tuple[str, ...]


def decide(facts: AlertFacts, *, after_failed_runs: int, when_token_left_s: int) -> AlertDecision:
    """
    Decide whether a failed run is worth escalating.

    :param facts: what was read when the run failed.
    :param after_failed_runs: escalate from this many failed runs in a row.
    :param when_token_left_s: escalate when the newest token has less than this many seconds left.
    """
    reasons: list[str] = [f"{what} could not be read" for what in facts.unreadable]
    if facts.failed_runs is not None and facts.failed_runs >= after_failed_runs:
        reasons.append(f"{facts.failed_runs} runs in a row stored no token (alert from {after_failed_runs})")
    left = facts.token_seconds_left
    if left is not None and left < when_token_left_s:
        if facts.token_fingerprint is None:
            reasons.append("no token is stored")
        else:
            reasons.append(
                f"the newest token {facts.token_fingerprint} has {max(left, 0)} s left "
                f"(alert below {when_token_left_s} s)"
            )
    return AlertDecision(bool(reasons), tuple(reasons))


def summary_of(facts: AlertFacts, decision: AlertDecision) -> str:
    """Return the one-line description of an escalation that notifiers send."""
    return f"ParkMobile token refresh: DAG {facts.dag_id} run {facts.run_id} failed; " + "; ".join(
        decision.reasons
    )


class ParkMobileLogNotifier(BaseNotifier):
    """The default notifier: log the escalation as one ERROR line, and send nothing anywhere."""

    def notify(self, context: Context) -> None:
        """Log the facts the escalation put in the context."""
        alert = context.get(ALERT_CONTEXT_KEY)
        if isinstance(alert, dict) and "summary" in alert:
            self.log.error("%s", alert["summary"])
        else:
            dag = context.get("dag")
            self.log.error("DAG %s run %s failed", getattr(dag, "dag_id", None), context.get("run_id"))


def load_notifier(path: str, kwargs_json: str | None = None) -> Callable[[Context], Any]:
    """
    Build the notifier that a dotted path names.

    :param path: a notifier class (built with ``kwargs_json``), a notifier instance, or a function
        taking the context.
    :param kwargs_json: a JSON object of keyword arguments for the class.
    :raises AlertConfigError: the path does not import, or names nothing callable, or the arguments
        are not a JSON object, or the class refuses them.
    """
    module_name, _, attribute = path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as err:
        raise AlertConfigError(f"alert_notifier {path!r} cannot be imported: {err}") from err
    kwargs = _kwargs_of(path, kwargs_json)
    if isinstance(target, type):
        try:
            notifier = target(**kwargs)
        except TypeError as err:
            raise AlertConfigError(f"alert_notifier {path!r} refuses alert_notifier_kwargs: {err}") from err
        if not callable(notifier):
            raise AlertConfigError(f"alert_notifier {path!r} does not build a callable notifier")
        return notifier  # type: ignore[no-any-return]
    if kwargs:
        raise AlertConfigError(f"alert_notifier_kwargs are given, but alert_notifier {path!r} is not a class")
    if not callable(target):
        raise AlertConfigError(f"alert_notifier {path!r} is neither a notifier nor a function")
    return target  # type: ignore[no-any-return]


def _kwargs_of(path: str, kwargs_json: str | None) -> dict[str, Any]:
    if not kwargs_json:
        return {}
    try:
        kwargs = json.loads(kwargs_json)
    except ValueError as err:
        raise AlertConfigError(f"alert_notifier_kwargs for {path!r} is not JSON") from err
    if not isinstance(kwargs, dict):
        raise AlertConfigError(f"alert_notifier_kwargs for {path!r} is not a JSON object")
    return kwargs


class FailureEscalation:
    """
    A DAG ``on_failure_callback`` that escalates only repeated failures or a token about to run out.

    Every argument left None is read from ``[parkmobile_token]`` when a run fails. The callback never
    raises: what goes wrong is logged, at ERROR when an escalation could not be sent.

    :param mysql_conn_id: the MySQL connection of both tables.
    :param table: the token table.
    :param history_table: the refresh history table.
    :param after_failed_runs: escalate from this many failed runs in a row (``alert_after_failed_runs``).
    :param when_token_left_s: escalate when the newest token has less than this many seconds left
        (``alert_when_token_left_s``).
    :param notifier: the dotted path of the notifier (``alert_notifier``).
    """

    __name__ = "FailureEscalation"

    def __init__(
        self,
        *,
        mysql_conn_id: str = DEFAULT_DB_CONN_ID,
        table: str = DEFAULT_TABLE,
        history_table: str = DEFAULT_HISTORY_TABLE,
        after_failed_runs: int | None = None,
        when_token_left_s: int | None = None,
        notifier: str | None = None,
    ) -> None:
        self.mysql_conn_id = mysql_conn_id
        self.table = table
        self.history_table = history_table
        self.after_failed_runs = after_failed_runs
        self.when_token_left_s = when_token_left_s
        self.notifier = notifier

    def __repr__(self) -> str:
        return f"{type(self).__name__}(table={self.table!r}, history_table={self.history_table!r})"

    def __call__(self, context: Context) -> None:
        """Escalate the failed run in ``context`` when it crosses a threshold; never raise."""
        try:
            self.escalate(context)
        except Exception as err:  # a callback that raises only adds noise to the failure it reports
            log.error(
                "The failed run of DAG %s could not be escalated: %s: %s",
                _dag_id_of(context),
                type(err).__name__,
                err,
            )

    def escalate(self, context: Context) -> AlertDecision:
        """
        Read the facts, decide, and call the notifier when the decision says so.

        :raises AlertConfigError: the notifier settings are unusable.
        """
        facts = self.read_facts(context)
        decision = decide(
            facts,
            after_failed_runs=self._setting("after_failed_runs", DEFAULT_ALERT_AFTER_FAILED_RUNS),
            when_token_left_s=self._setting("when_token_left_s", DEFAULT_ALERT_WHEN_TOKEN_LEFT_S),
        )
        if not decision.escalate:
            log.info(
                "DAG %s run %s failed; not escalated: %s failed run(s) in a row, newest token %s s left",
                facts.dag_id,
                facts.run_id,
                facts.failed_runs,
                facts.token_seconds_left,
            )
            return decision
        notifier = load_notifier(*self._notifier_setting())
        notifier(_notifier_context(context, facts, decision))
        return decision

    def read_facts(self, context: Context) -> AlertFacts:
        """Read the failed-run streak and the newest token's time left; note what cannot be read."""
        from parkmobile_token.history import RefreshHistory
        from parkmobile_token.store import TokenStore

        dag_id = _dag_id_of(context)
        unreadable: list[str] = []
        failed_runs: int | None = None
        fingerprint: str | None = None
        seconds_left: int | None = None
        try:
            failed_runs = RefreshHistory(self.mysql_conn_id, self.history_table).failed_run_streak(dag_id)
        except Exception as err:  # an unreadable history is itself worth an alert
            unreadable.append(f"the refresh history ({type(err).__name__})")
        try:
            newest = TokenStore(self.mysql_conn_id, self.table).newest()
        except Exception as err:  # an unreadable token table is itself worth an alert
            unreadable.append(f"the token table ({type(err).__name__})")
        else:
            fingerprint = newest.fingerprint if newest else None
            seconds_left = newest.seconds_left if newest else 0
        return AlertFacts(
            dag_id, _run_id_of(context), failed_runs, fingerprint, seconds_left, tuple(unreadable)
        )

    def _setting(self, name: str, default: int) -> int:
        value = getattr(self, name)
        if value is not None:
            return int(value)
        from airflow.sdk.configuration import conf

        return int(conf.getint(SECTION, f"alert_{name}", fallback=default))

    def _notifier_setting(self) -> tuple[str, str | None]:
        from airflow.sdk.configuration import conf

        path = self.notifier or conf.get(SECTION, "alert_notifier", fallback=None) or DEFAULT_NOTIFIER
        return path, conf.get(SECTION, "alert_notifier_kwargs", fallback=None)


def _notifier_context(context: Context, facts: AlertFacts, decision: AlertDecision) -> Context:
    """
    Return the callback's context with the facts under :data:`ALERT_CONTEXT_KEY`, for the notifier.

    Under ``airflow dags test`` the context's ``dag`` is Airflow's serialized DAG, which cannot make
    the Jinja environment a notifier renders its templates with; it is left out there, so that the
    notifier falls back to a plain sandboxed environment, as it does for a context without a DAG.
    """
    notify_context: dict[str, Any] = dict(context)
    if not hasattr(notify_context.get("dag"), "get_template_env"):
        notify_context.pop("dag", None)
    notify_context[ALERT_CONTEXT_KEY] = {
        **asdict(facts),
        "reasons": list(decision.reasons),
        "summary": summary_of(facts, decision),
    }
    return notify_context  # type: ignore[return-value]


def _dag_id_of(context: Mapping[str, Any]) -> str:
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    return str(getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None) or "unknown")


def _run_id_of(context: Mapping[str, Any]) -> str | None:
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None)
    return str(run_id) if run_id is not None else None
