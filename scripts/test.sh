#!/usr/bin/env bash
# The whole test suite: installs what is missing (Python deps, redis-server, the Node stand-ins
# for Cosmos DB and Blob Storage), then lints, type-checks and runs pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-spark.txt
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test: installing redis-server with apt-get" >&2
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
if [ ! -x tests/standins/node_modules/.bin/cosmosdb-server ] \
   || [ ! -x tests/standins/node_modules/.bin/azurite-blob ]; then
  (cd tests/standins && npm ci --no-audit --no-fund --loglevel=error)
fi
.venv/bin/ruff check .
.venv/bin/mypy .
exec .venv/bin/python -m pytest "$@"
