#!/usr/bin/env bash
# Create ./.venv (if missing) with Python >= 3.11 and install jppl into it with the given extras.
# Usage: source scripts/setup_venv.sh [extras]   e.g.  source scripts/setup_venv.sh dev
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
if [ -z "$py" ]; then
  echo "jppl needs Python >= 3.11; none found on PATH (set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "Creating virtualenv $root/.venv with $py" >&2
  "$py" -m venv "$root/.venv"
  "$root/.venv/bin/python" -m pip install -q --upgrade pip
fi
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
# Reinstall only when pyproject.toml changed since the last install.
stamp="$root/.venv/.jppl-installed-$extras"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$root/.venv/bin/python" -m pip install -q -e "$spec"
  touch "$stamp"
fi
