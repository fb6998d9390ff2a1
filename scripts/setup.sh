#!/usr/bin/env bash
# Creates .venv and installs the project's Python dependencies (idempotent, quiet when done).
#   scripts/setup.sh                          # requirements-dev.txt (serve, train, benchmarks)
#   scripts/setup.sh requirements-spark.txt   # plus pyspark, for the Spark job's tests
set -euo pipefail
cd "$(dirname "$0")/.."
REQS="${1:-requirements-dev.txt}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    echo "setup: installing python3-venv with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$PYTHON" -m venv .venv
  fi
fi
stamp=.venv/.requirements-$(basename "$REQS" .txt).sha
want=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$REQS"
  echo "$want" > "$stamp"
fi
