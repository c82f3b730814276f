"""
The benchmark script runs end to end in its quick mode and reports every section with numbers.

Speed targets live in the benchmark's own report (PASS or MISS), not here: a timed test on a shared
machine would fail for reasons that are not the code's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MySQLServer

#: Each section of the JSON report and the numbers it must hold.
EXPECTED_NUMBERS = {
    "parse": ("ours_median_ms", "trivial_median_ms", "ratio"),
    "refresh": ("ratio", "ratio_vs_one_connection_floor"),
    "get_token": ("median_ms", "p99_ms", "queries_per_call", "raw_query_p99_ms"),
    "cleanup": ("cleanup_s", "get_token_max_ms", "reported_deleted", "expected_deleted"),
}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.timeout(360)
def test_quick_benchmark_reports_every_section_with_numbers(
    mysql_server: MySQLServer, tmp_path: Path
) -> None:
    results = tmp_path / "benchmarks.json"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "run.py"),
        "--quick",
        "--json",
        str(results),
        "--mysql-host",
        mysql_server.host,
        "--mysql-port",
        str(mysql_server.port),
        "--mysql-user",
        mysql_server.user,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(results.read_text(encoding="utf-8"))
    for section, keys in EXPECTED_NUMBERS.items():
        assert section in report, f"section {section!r} missing from the report"
        for key in keys:
            assert is_number(report[section].get(key)), f"{section}.{key} is not a number"
    assert report["parse"]["sdk"]["files"][0]["package_modules"], "the DAG file imported no package module"
    assert report["cleanup"]["reported_deleted"] == report["cleanup"]["expected_deleted"]
    assert report["get_token"]["refreshes_during_benchmark"] == 0
    assert report["get_token"]["returned_newest_valid_token"] is True
    assert {row["result"] for row in report["table"]} <= {"PASS", "MISS", "report"}
    assert "pm_bench_" in done.stdout  # the scratch database is named, and dropped below
    database = done.stdout.split("scratch database ", 1)[1].split(";", 1)[0]
    conn = mysql_server.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW DATABASES LIKE %s", (database,))
            assert cursor.fetchone() is None, f"scratch database {database} was not dropped"
    finally:
        conn.close()
