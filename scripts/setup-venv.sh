# Sourced by the other scripts: creates .venv (once) and installs the project with the given extras.
# Usage: source scripts/setup-venv.sh [extras]
set -euo pipefail
extras="${1:-}"
python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null || python_bin=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python_bin" --version)"
  "$python_bin" -m venv .venv
  # Only a new venv's pip is upgraded: once per venv, not on every run.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
