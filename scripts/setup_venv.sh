#!/usr/bin/env bash
# Create a virtualenv (if missing) and install jppl into it with the given extras.
# Usage: bash scripts/setup_venv.sh [extras]        e.g.  bash scripts/setup_venv.sh dev
# Environment:
#   PYTHON  interpreter to use; default: the newest supported one found (scripts/pythons.sh),
#           the same one CI's main leg tests.
#   VENV    virtualenv directory; default: ./.venv
# pip installs the newest dependencies that resolve for that interpreter (e.g. ArviZ 1.x and
# JAX 0.11 on Python 3.12+, ArviZ 0.x and JAX 0.10 on 3.11).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
venv="${VENV:-$root/.venv}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  py="$(bash "$root/scripts/pythons.sh" newest)" || {
    echo "jppl needs Python 3.11, 3.12 or 3.13 (set PYTHON=/path/to/python3.X)." >&2
    exit 1
  }
fi
want="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -x "$venv/bin/python" ]; then
  have="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo broken)"
  if [ "$have" != "$want" ]; then
    # This script made $venv; a different Python was asked for, so rebuild it.
    echo "Rebuilding $venv: it has Python $have, Python $want was asked for" >&2
    rm -rf "$venv"
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating virtualenv $venv with $py ($("$py" --version 2>&1))" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
# Reinstall only when pyproject.toml changed since the last install.
stamp="$venv/.jppl-installed-$extras"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q -e "$spec"
  touch "$stamp"
fi
