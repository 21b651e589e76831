#!/usr/bin/env bash
# Set up ./.venv if needed and run the main demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_venv.sh"
exec "$root/.venv/bin/python" "$root/examples/demo.py" "$@"
