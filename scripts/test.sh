#!/usr/bin/env bash
# Set the clone up (scripts/setup.sh), then lint, type-check and test it; stops at the first failure.
# Arguments are handed to pytest, e.g. `scripts/test.sh -k standin -x`.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$REPO_ROOT/scripts/setup.sh"

# Like an activated venv, so tests that start `airflow` or `python` find the venv's.
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"

say "ruff check"
ruff check .
say "ruff format --check"
ruff format --check .
say "mypy"
mypy
say "pytest"
status=0
pytest "$@" || status=$?
if [[ "$status" -eq 5 ]]; then
    die "pytest collected no tests (exit 5)"
fi
exit "$status"
