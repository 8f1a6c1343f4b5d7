#!/usr/bin/env bash
# Sets up .venv and loads one day of all ten event types from the local export server into the lake in
# data/lake, recording the runs in dagster_home/ (the instance `dagster dev` opens, see README).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
exec .venv/bin/python -m growingio_pipeline.demo "$@"
