#!/usr/bin/env bash
# Sets up .venv (with the test extras and Debian's Chromium for the UI test) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh test
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the UI test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the UI test needs Debian's chromium: run 'sudo apt-get install chromium' first" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
