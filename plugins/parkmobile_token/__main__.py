"""
Command line of the token package: ``python -m parkmobile_token COMMAND``.

``init-db`` creates the token table and the refresh history table; ``show`` prints the newest stored
token's expiry and fingerprint; ``status`` prints the newest valid token, the last refreshes, and the
success rate, latency and coverage of the last 24 hours. All read the same Airflow connections and
``[parkmobile_token]`` settings as the DAG (``AIRFLOW_CONN_PARKMOBILE_DB``, a secrets backend, or the
metadata database). No command ever prints a token: a token is named by its fingerprint.

Exit codes: 0 when done (``show`` and ``status``: a token with at least the margin left exists), 1 when
no such token exists, 2 on a usage or configuration error, or when the database cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from parkmobile_token.clock import isoformat_z, utcnow
from parkmobile_token.config import (
    DEFAULT_CLEANUP_WINDOW_S,
    DEFAULT_DB_CONN_ID,
    DEFAULT_HISTORY_TABLE,
    DEFAULT_TABLE,
    SECTION,
)
from parkmobile_token.exceptions import ParkMobileTokenError
from parkmobile_token.history import (
    FAILED,
    STATUS_WINDOW,
    STORED,
    RefreshHistory,
    summarize,
)
from parkmobile_token.store import TokenStore

if TYPE_CHECKING:
    from datetime import datetime

    from parkmobile_token.history import HistorySummary, RefreshRecord
    from parkmobile_token.store import StoredToken

#: How many of the last successes and of the last failures ``status`` lists.
LAST_SHOWN = 5
EXIT_OK = 0
EXIT_NO_VALID_TOKEN = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    """The command line or the settings ask for something that cannot be done."""


def main(argv: list[str] | None = None) -> int:
    """Run one command and return the process exit code."""
    args = _parser().parse_args(argv)
    try:
        store = TokenStore(args.conn_id, args.table)
        if args.command == "init-db":
            return _init_db(store, args.history_table)
        if args.command == "show":
            return _show(store)
        if args.margin < 0:
            raise _UsageError(f"--margin must not be negative, got {args.margin}")
        history = RefreshHistory(args.conn_id, args.history_table)
        return _status(store, history, margin_s=args.margin, as_json=args.json)
    except (ParkMobileTokenError, _UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    table, history_table = _configured_tables()
    # The common options are accepted before the command and after it alike; after it, SUPPRESS keeps
    # a value given before the command from being overwritten by the default.
    parser = argparse.ArgumentParser(prog="python -m parkmobile_token", description=__doc__.split("\n\n")[0])
    _add_common_options(parser, table, history_table)
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, argparse.SUPPRESS, argparse.SUPPRESS, suppress=True)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "init-db", parents=[common], help="create the token and refresh history tables when they do not exist"
    )
    commands.add_parser(
        "show", parents=[common], help="print the newest token's expiry and fingerprint, never the token"
    )
    status = commands.add_parser(
        "status",
        parents=[common],
        help="print the newest valid token, the last refreshes, and the last 24 hours' figures",
    )
    status.add_argument(
        "--margin",
        type=int,
        default=DEFAULT_CLEANUP_WINDOW_S,
        help="seconds a token must have left to count as valid (default: %(default)s)",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object, for machines")
    return parser


def _add_common_options(
    parser: argparse.ArgumentParser, table: str, history_table: str, *, suppress: bool = False
) -> None:
    conn_default = argparse.SUPPRESS if suppress else DEFAULT_DB_CONN_ID
    parser.add_argument("--conn-id", default=conn_default, help="the MySQL connection id")
    parser.add_argument("--table", default=table, help="the token table")
    parser.add_argument("--history-table", default=history_table, help="the refresh history table")


def _configured_tables() -> tuple[str, str]:
    """Return the token and history table names the DAG uses: ``[parkmobile_token]``, else the defaults."""
    from airflow.sdk.configuration import conf

    return (
        conf.get(SECTION, "table", fallback=DEFAULT_TABLE),
        conf.get(SECTION, "history_table", fallback=DEFAULT_HISTORY_TABLE),
    )


def _init_db(store: TokenStore, history_table: str) -> int:
    history = RefreshHistory(store.mysql_conn_id, history_table)
    if history.table == store.table:
        raise _UsageError(f"The token table and the history table must differ; both are {store.table!r}")
    store.apply_schema()
    history.apply_schema()
    print(
        f"Token table {store.table} and refresh history table {history.table} are ready on connection "
        f"{store.mysql_conn_id!r}"
    )
    return EXIT_OK


def _show(store: TokenStore) -> int:
    newest = store.newest()
    if newest is None:
        print(f"No token is stored in {store.table}", file=sys.stderr)
        return EXIT_NO_VALID_TOKEN
    print(f"Newest token in {store.table}: expires {isoformat_z(newest.expires)}")
    print(f"  fingerprint {newest.fingerprint}, {max(newest.seconds_left, 0)} s left")
    return EXIT_OK if newest.seconds_left > store.cleanup_window else EXIT_NO_VALID_TOKEN


def _status(store: TokenStore, history: RefreshHistory, *, margin_s: int, as_json: bool) -> int:
    now = utcnow()
    try:
        token = store.newest(min_seconds_left=margin_s)
    except Exception as err:  # printed as an error and an exit code, not a traceback
        raise _UsageError(_unreadable(store.table, store.mysql_conn_id, err)) from err
    report: dict[str, Any] = {
        "connection": store.mysql_conn_id,
        "margin_s": margin_s,
        "now": isoformat_z(now),
        "token": _token_report(store.table, token),
        "history": _history_report(history, now=now, margin_s=margin_s),
    }
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(_render_text(report))
    return EXIT_OK if token is not None else EXIT_NO_VALID_TOKEN


def _token_report(table: str, token: StoredToken | None) -> dict[str, Any]:
    if token is None:
        return {"table": table, "valid": False}
    return {
        "table": table,
        "valid": True,
        "fingerprint": token.fingerprint,
        "expires": isoformat_z(token.expires),
        "seconds_left": token.seconds_left,
    }


def _history_report(history: RefreshHistory, *, now: datetime, margin_s: int) -> dict[str, Any]:
    start = now - STATUS_WINDOW
    try:
        rows = history.window(start=start, margin_s=margin_s)
        successes = history.latest([STORED], limit=LAST_SHOWN)
        failures = history.latest([FAILED], limit=LAST_SHOWN)
    except Exception as err:  # the token part still answers the question that matters most
        return {"table": history.table, "error": _unreadable(history.table, history.mysql_conn_id, err)}
    summary = summarize(rows, start=start, end=now, margin_s=margin_s)
    return {
        "table": history.table,
        **_summary_report(summary),
        "last_successes": [_attempt_report(row) for row in successes],
        "last_failures": [_attempt_report(row) for row in failures],
    }


def _summary_report(summary: HistorySummary) -> dict[str, Any]:
    return {
        "window_start": isoformat_z(summary.start),
        "window_end": isoformat_z(summary.end),
        **summary.attempt_figures(),
        "coverage": summary.coverage,
    }


def _attempt_report(row: RefreshRecord) -> dict[str, Any]:
    return {
        "attempted_at": isoformat_z(row.attempted_at),
        "outcome": row.outcome,
        "run_id": row.run_id,
        "try_number": row.try_number,
        "http_status": row.http_status,
        "error_class": row.error_class,
        "latency_ms": row.latency_ms,
        "lifetime_s": row.lifetime_s,
        "expires": isoformat_z(row.expires) if row.expires else None,
        "fingerprint": row.fingerprint,
        "stored_at": isoformat_z(row.stored_at) if row.stored_at else None,
    }


def _render_text(report: dict[str, Any]) -> str:
    token, history = report["token"], report["history"]
    lines = []
    if token["valid"]:
        lines.append(
            f"Newest valid token in {token['table']}: fingerprint {token['fingerprint']}, "
            f"expires {token['expires']}, {token['seconds_left']} s left"
        )
    else:
        lines.append(f"No valid token in {token['table']}: none has {report['margin_s']} s or more left")
    if "error" in history:
        lines.append(f"Refresh history: {history['error']}")
        return "\n".join(lines)
    lines += [
        f"Refreshes in the last 24 h ({history['table']}): {history['attempts']} attempt(s), "
        f"{history['stored']} stored, {history['failed']} failed, "
        f"{history['fetched_not_stored']} fetched but not stored",
        f"  success rate {_percent(history['success_rate'])}; fetch latency "
        + ", ".join(f"{name} {_ms(value)}" for name, value in history["latency_ms"].items()),
        f"  coverage {_percent(history['coverage'])} of the last 24 h with a token of at least "
        f"{report['margin_s']} s left",
    ]
    if history["short_lifetime"]:
        lines.append(f"  {history['short_lifetime']} token(s) lived too short for the refresh schedule")
    lines.append("Last successes:" if history["last_successes"] else "Last successes: none")
    lines += [
        f"  {row['attempted_at']}  fingerprint {row['fingerprint']}, lifetime {row['lifetime_s']} s, "
        f"{_ms(row['latency_ms'])}, run {row['run_id']}"
        for row in history["last_successes"]
    ]
    lines.append("Last failures:" if history["last_failures"] else "Last failures: none")
    lines += [
        f"  {row['attempted_at']}  {row['error_class']}"
        + (f" (HTTP {row['http_status']})" if row["http_status"] else "")
        + f", {_ms(row['latency_ms'])}, run {row['run_id']} try {row['try_number']}"
        for row in history["last_failures"]
    ]
    return "\n".join(lines)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.1f} %"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _unreadable(table: str, conn_id: str, err: Exception) -> str:
    return f"{table} on connection {conn_id!r} cannot be read: {type(err).__name__}: {err}"


if __name__ == "__main__":
    sys.exit(main())
