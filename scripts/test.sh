#!/usr/bin/env bash
# Set up ./.venv (with the dev, docs and notebooks extras) if needed, then run, in order:
#   1. ruff on the code and the notebooks;
#   2. the default test suite (extra arguments go to pytest, e.g. `-m slow` for the long tests);
#   3. (only without extra arguments) the multi-host test (2 local processes x 2 CPU devices;
#      marked slow, so it runs here as its own step, bounded by its own timeouts);
#   4. every notebook in notebooks/, executed in a fresh kernel with a time limit each
#      (scripts/run_notebooks.py; the committed notebooks are not rewritten);
#   5. the API reference: `mkdocs build --strict` (fails on any warning).
# Any failing step makes the script fail. JPPL_SKIP_MULTIHOST=1 / JPPL_SKIP_NOTEBOOKS=1 /
# JPPL_SKIP_DOCS=1 skip steps 3/4/5.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_venv.sh" dev,docs,notebooks || exit 1
cd "$root"
.venv/bin/ruff check src tests examples benchmarks scripts notebooks docs || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "ERROR: pytest collected no tests; treating this as a failure." >&2
  exit 1
fi
[ "$rc" -eq 0 ] || exit "$rc"

if [ "${JPPL_SKIP_MULTIHOST:-0}" != "1" ] && [ "$#" -eq 0 ]; then
  echo "== multi-host: tests/test_multihost.py ==" >&2
  .venv/bin/python -m pytest -m slow tests/test_multihost.py -q
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "ERROR: the multi-host test failed (rc $rc; 5 means it collected no tests)." >&2
    exit 1
  fi
fi

if [ "${JPPL_SKIP_NOTEBOOKS:-0}" != "1" ]; then
  echo "== notebooks ==" >&2
  .venv/bin/python scripts/run_notebooks.py --timeout "${JPPL_NOTEBOOK_TIMEOUT:-300}" || {
    echo "ERROR: a notebook failed (see above)." >&2
    exit 1
  }
fi

if [ "${JPPL_SKIP_DOCS:-0}" != "1" ]; then
  echo "== docs: mkdocs build --strict ==" >&2
  site="$(mktemp -d)"
  NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
  rc=$?
  rm -rf "$site"
  if [ "$rc" -ne 0 ]; then
    echo "ERROR: the API reference does not build cleanly (mkdocs build --strict)." >&2
    exit 1
  fi
fi
exit 0
