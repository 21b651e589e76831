#!/usr/bin/env bash
# Set up ./.venv (with the dev extra) if needed and run the default test suite and ruff.
# Extra arguments go to pytest (e.g. `-m slow` for the long tests).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_venv.sh" dev || exit 1
cd "$root"
.venv/bin/ruff check src tests examples benchmarks || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "ERROR: pytest collected no tests; treating this as a failure." >&2
  exit 1
fi
exit "$rc"
