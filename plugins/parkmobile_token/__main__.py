"""
Command line of the token package: ``python -m parkmobile_token COMMAND``.

``init-db`` creates the token table; ``show`` prints the newest stored token's expiry and
fingerprint. Both read the same Airflow connections as the DAG (``AIRFLOW_CONN_PARKMOBILE_DB``, a
secrets backend, or the metadata database).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from datetime import UTC

from parkmobile_token.clock import fingerprint, isoformat_z, to_utc_naive, utcnow
from parkmobile_token.config import DEFAULT_DB_CONN_ID, DEFAULT_TABLE
from parkmobile_token.exceptions import ParkMobileTokenError
from parkmobile_token.store import TokenStore


def main(argv: list[str] | None = None) -> int:
    """Run one command and return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m parkmobile_token", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conn-id", default=DEFAULT_DB_CONN_ID, help="the MySQL connection id")
    parser.add_argument("--table", default=DEFAULT_TABLE, help="the token table")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init-db", help="create the token table when it does not exist")
    commands.add_parser("show", help="print the newest token's expiry and fingerprint, never the token")
    args = parser.parse_args(argv)

    try:
        store = TokenStore(args.conn_id, args.table)
        if args.command == "init-db":
            store.apply_schema()
            print(f"Token table {store.table} is ready on connection {args.conn_id!r}")
            return 0
        return _show(store)
    except ParkMobileTokenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _show(store: TokenStore) -> int:
    with store.connection() as conn, closing(conn.cursor()) as cursor:
        cursor.execute(f"SELECT token, expires FROM {store.table} ORDER BY expires DESC LIMIT 1")  # noqa: S608
        row = cursor.fetchone()
    if row is None:
        print(f"No token is stored in {store.table}", file=sys.stderr)
        return 1
    token, expires = row
    left = (expires - to_utc_naive(utcnow())).total_seconds()
    print(f"Newest token in {store.table}: expires {isoformat_z(expires.replace(tzinfo=UTC))}")
    print(f"  fingerprint {fingerprint(token)}, {max(left, 0):.0f} s left")
    return 0 if left > store.cleanup_window else 1


if __name__ == "__main__":
    sys.exit(main())
