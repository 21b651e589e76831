#!/usr/bin/env bash
# The whole test suite, on the newest and on the oldest supported Python found
# (scripts/pythons.sh), each in its own virtualenv with the newest dependencies pip resolves
# for that Python (so ArviZ 1.x and JAX 0.11 on 3.12+, ArviZ 0.x and JAX 0.10 on 3.11).
#
# Main leg, newest Python, ./.venv (the interpreter the README's commands pick):
#   1. ruff on the code and the notebooks;
#   2. the default test suite (extra arguments go to pytest, e.g. `-m slow` for the long tests),
#      with JAX's deprecation warnings as errors (pyproject's filterwarnings);
#   3. (only without extra arguments) the long tests (`-m slow`), the
#      multi-host test among them (2 local processes x 2 CPU devices, bounded by its own
#      timeouts), as their own step;
#   4. every notebook in notebooks/, executed in a fresh kernel with a time limit each
#      (scripts/run_notebooks.py; the committed notebooks are not rewritten);
#   5. the API reference: `mkdocs build --strict` (fails on any warning).
# Oldest leg, oldest Python, ./.venv-py3.X: step 2, and of step 3 only the multi-host test
# (jax.distributed differs between the JAX lines); notebooks and docs are skipped there. All
# to stay inside CI's 90 minutes: the main leg runs everything.
#
# Any failing step makes the script fail; pytest collecting no tests is a failure.
# JPPL_LEGS=main runs the main leg only. JPPL_SKIP_SLOW=1 / JPPL_SKIP_NOTEBOOKS=1 /
# JPPL_SKIP_DOCS=1 skip steps 3/4/5. PYTHON=/path/to/python pins the main leg's interpreter.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

newest="${PYTHON:-$(bash scripts/pythons.sh newest)}" || exit 1
oldest="$(bash scripts/pythons.sh oldest)" || exit 1
version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# Test files run in parallel worker processes (pytest-xdist), a module per worker at a time so
# that module-scoped fixtures are built once: XLA compiles on one thread, so two workers keep
# CI's two cores busy. JPPL_TEST_WORKERS=0 runs in this process.
workers="${JPPL_TEST_WORKERS:-2}"
parallel_args=()
if [ "$workers" != "0" ]; then
  parallel_args=(-n "$workers" --dist loadscope)
fi

run_pytest() {  # venv, leg name, pytest args...
  local venv="$1" leg="$2"
  shift 2
  # --durations: CI's log names the slowest cases (candidates for tests/long_tests.txt)
  "$venv/bin/python" -m pytest "${parallel_args[@]}" --durations=30 "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "ERROR [$leg]: pytest collected no tests; treating this as a failure." >&2
    return 1
  fi
  return "$rc"
}

slow_tests() {  # venv, leg name, extra pytest args...
  if [ "${JPPL_SKIP_SLOW:-0}" = "1" ]; then
    echo "== [$2] long tests: skipped (JPPL_SKIP_SLOW=1) ==" >&2
    return 0
  fi
  echo "== [$2] long tests (-m slow, the multi-host test among them) ==" >&2
  local venv="$1" leg="$2"
  shift 2
  run_pytest "$venv" "$leg" -m slow -q "$@" || {
    echo "ERROR [$leg]: a long test failed." >&2
    return 1
  }
}

# ---- main leg -------------------------------------------------------------------------------
main="main, Python $(version "$newest")"
echo "== [$main] setting up .venv with $newest ==" >&2
PYTHON="$newest" VENV="$root/.venv" bash scripts/setup_venv.sh dev,docs,notebooks || exit 1
.venv/bin/python -c 'import sys, jax, arviz; print("[main] Python %s, jax %s, arviz %s" % (sys.version.split()[0], jax.__version__, arviz.__version__))'
.venv/bin/ruff check src tests examples benchmarks scripts notebooks docs || exit 1
# The code is formatted (the notebooks keep their committed, executed layout).
.venv/bin/ruff format --check src tests examples benchmarks scripts || exit 1
echo "== [$main] default test suite ==" >&2
run_pytest .venv "$main" "$@" || exit 1
if [ "$#" -eq 0 ]; then
  slow_tests .venv "$main" || exit 1
fi

if [ "${JPPL_SKIP_NOTEBOOKS:-0}" != "1" ]; then
  echo "== [$main] notebooks ==" >&2
  .venv/bin/python scripts/run_notebooks.py --timeout "${JPPL_NOTEBOOK_TIMEOUT:-300}" || {
    echo "ERROR [$main]: a notebook failed (see above)." >&2
    exit 1
  }
fi

if [ "${JPPL_SKIP_DOCS:-0}" != "1" ]; then
  echo "== [$main] docs: mkdocs build --strict ==" >&2
  site="$(mktemp -d)"
  NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
  rc=$?
  rm -rf "$site"
  if [ "$rc" -ne 0 ]; then
    echo "ERROR [$main]: the API reference does not build cleanly (mkdocs build --strict)." >&2
    exit 1
  fi
fi

# ---- oldest leg -----------------------------------------------------------------------------
if [ "${JPPL_LEGS:-all}" = "main" ]; then
  echo "== oldest leg: skipped (JPPL_LEGS=main) ==" >&2
  exit 0
fi
if [ "$(version "$oldest")" = "$(version "$newest")" ]; then
  echo "== oldest leg: skipped (only Python $(version "$newest") found) ==" >&2
  exit 0
fi
old="oldest, Python $(version "$oldest")"
venv_old="$root/.venv-py$(version "$oldest")"
echo "== [$old] setting up $venv_old with $oldest ==" >&2
PYTHON="$oldest" VENV="$venv_old" bash scripts/setup_venv.sh dev || exit 1
"$venv_old/bin/python" -c 'import sys, jax, arviz; print("[oldest] Python %s, jax %s, arviz %s" % (sys.version.split()[0], jax.__version__, arviz.__version__))'
echo "== [$old] default test suite (notebooks and docs run in the main leg only) ==" >&2
run_pytest "$venv_old" "$old" "$@" || exit 1
if [ "$#" -eq 0 ]; then
  # Of the long tests, the multi-host one (jax.distributed differs between the JAX lines);
  # the main leg runs them all (CI's time).
  echo "== [$old] long tests: the multi-host test only (the main leg runs them all) ==" >&2
  slow_tests "$venv_old" "$old" tests/test_multihost.py || exit 1
fi
exit 0
