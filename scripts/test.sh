#!/usr/bin/env bash
# Sets up .venv (with the test extras), installs the Debian packages the tests need (chromium for the UI test,
# postgresql for the many-machines tests), checks lint, format and types, and runs the test suite (or the given
# pytest arguments). Fast when all is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh test

as_root=""
[ "$(id -u)" = 0 ] || as_root="sudo -n"
apt_updated=""
# Usage: apt_install PACKAGE WHY: installs one Debian package quietly (apt-get update once per call of this script).
apt_install() {
  echo "installing Debian's $1 for $2"
  if [ -z "$apt_updated" ]; then
    $as_root apt-get update -qq && apt_updated=1
  fi
  if ! DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "$1" >/dev/null; then
    echo "$2 needs Debian's $1: run 'sudo apt-get install $1' first" >&2
  fi
}

command -v chromium >/dev/null || apt_install chromium "the UI test"
# The server binaries live in /usr/lib/postgresql/<version>/bin, off the PATH.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || apt_install postgresql "the PostgreSQL tests"
# Lint, format and types first: a finding fails the run before any test starts.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Test folders (TMPDIR) in memory when there are 8 GiB to spare: the tests commit to SQLite (the lake's catalog,
# Dagster's storage) many thousand times, and a commit's fsync took 14 ms on a disk here against 0.2 ms in
# /dev/shm. The crashes the tests make (SIGKILL) lose nothing in either place.
if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(df --output=avail -k /dev/shm | tail -n 1)" -gt 8388608 ]; then
  TMPDIR="$(mktemp -d /dev/shm/growingio-tests.XXXXXX)"
  export TMPDIR
  # The PostgreSQL tests run the server as the postgres user, in a folder of its own inside this one.
  chmod 755 "$TMPDIR"
  trap 'rm -rf "$TMPDIR"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi
# Two workers, each taking whole test files (their module fixtures, servers and folders stay in one process),
# in collection order, where conftest.py puts the long files first.
.venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"
