#!/usr/bin/env bash
# Sets up .venv (with the test extras and Debian's Chromium for the UI test), checks lint, format and types,
# and runs the test suite (or the given pytest arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh test
if ! command -v chromium >/dev/null; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo -n"
  echo "installing Debian's chromium for the UI test"
  if ! { $as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium >/dev/null; }; then
    echo "the UI test needs Debian's chromium: run 'sudo apt-get install chromium' first" >&2
  fi
fi
# Lint, format and types first: a finding fails the run before any test starts.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
