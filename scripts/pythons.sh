#!/usr/bin/env bash
# Print the supported Python interpreters found on this machine, newest first, one path a line:
# for each of 3.13, 3.12, 3.11 the first that runs of `python3.X` on PATH and pyenv's builds
# ($PYENV_ROOT or ~/.pyenv, newest patch release first). A pyenv shim for a version that is
# installed but not selected fails to run and is skipped, so the build behind it is used.
# Falls back to `python3` when it is a supported version and nothing else was found.
# Usage: bash scripts/pythons.sh            (all, newest first)
#        bash scripts/pythons.sh newest     (the first line)
#        bash scripts/pythons.sh oldest     (the last line)
set -uo pipefail
SUPPORTED_MINORS="13 12 11"  # keep in step with requires-python and the README

works() { "$1" -c 'import sys, venv, ensurepip; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' >/dev/null 2>&1; }

found=()
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
for minor in $SUPPORTED_MINORS; do
  cands=("python3.$minor")
  if [ -d "$pyenv_root/versions" ]; then
    while IFS= read -r p; do cands+=("$p"); done < <(
      ls -d "$pyenv_root"/versions/3."$minor".*/bin/python3."$minor" 2>/dev/null | sort -rV)
  fi
  for cand in "${cands[@]}"; do
    if works "$cand"; then
      found+=("$("$cand" -c 'import sys; print(sys.executable)')")
      break
    fi
  done
done
if [ "${#found[@]}" -eq 0 ] && works python3; then
  found+=("$(python3 -c 'import sys; print(sys.executable)')")
fi
if [ "${#found[@]}" -eq 0 ]; then
  echo "No supported Python (3.11 to 3.13) found on PATH or under $pyenv_root/versions." >&2
  exit 1
fi
case "${1:-all}" in
  newest) echo "${found[0]}" ;;
  oldest) echo "${found[${#found[@]}-1]}" ;;
  all) printf '%s\n' "${found[@]}" ;;
  *) echo "usage: $0 [all|newest|oldest]" >&2; exit 2 ;;
esac
