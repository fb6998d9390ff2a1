#!/usr/bin/env bash
# The main job on the embedded defaults: train, publish, serve the API on localhost:7071.
#   scripts/quickstart.sh                         # on a generated sample dataset
#   scripts/quickstart.sh ../shared/data/ml-100k  # on a MovieLens 100K folder (or any CSV)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RECO_DATA_DIR="${RECO_DATA_DIR:-.data}"
DATA="${1:-}"
if [ -z "$DATA" ]; then
  DATA="$RECO_DATA_DIR/sample.csv"
  .venv/bin/python -m training sample-data --out "$DATA"
fi
.venv/bin/python -m training retrain --interactions "$DATA"
PORT="${PORT:-7071}"
echo
echo "Serving on http://localhost:$PORT  (Ctrl-C stops it). Try:"
echo "  curl 'http://localhost:$PORT/api/recommendations/1?k=10'"
echo
exec .venv/bin/uvicorn --factory shared.serving.api:create_app --host 127.0.0.1 --port "$PORT" \
  --log-level warning
