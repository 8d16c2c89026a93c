#!/usr/bin/env bash
# Entry point of the Docker image (space/docker/Dockerfile): TorchServe, then the app.
# The same steps as `make demo` on a workstation: `torchserve --start` with the repository's
# config.properties (model_store/trouble.mar on 127.0.0.1:8080), wait until GET /ping says
# Healthy and the model's worker is READY, then the app in server mode on 0.0.0.0:7860.
# TorchServe stops when the app does.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (the image's WORKDIR)

API_URL="${TROUBLE_API_URL:-http://127.0.0.1:8080}"
# Loading the model on a small CPU Space takes a while; past this the container gives up.
WAIT_S="${TROUBLE_START_TIMEOUT:-600}"

stop_all() {
  if [ -n "${app_pid:-}" ]; then kill -TERM "$app_pid" 2>/dev/null || true; fi
  torchserve --stop >/dev/null 2>&1 || true
}
trap stop_all EXIT
trap 'exit 143' TERM INT

torchserve --start --ncs --ts-config config.properties --models trouble=trouble.mar

# /ping says Healthy as soon as the server is up, even while the model's worker is still loading
# or crash-looping, so the model's own status (management API, config.properties) is checked too.
model_ready() {
  curl -fsS --max-time 2 "$API_URL/ping" 2>/dev/null | grep -q '"Healthy"' &&
    curl -fsS --max-time 2 "$MANAGEMENT_URL/models/trouble" 2>/dev/null | grep -q '"status": "READY"'
}
MANAGEMENT_URL="${TROUBLE_MANAGEMENT_URL:-http://127.0.0.1:8081}"

echo "start.sh: waiting for TorchServe at $API_URL/ping and the model's worker (at most $WAIT_S s)"
waited=0
until model_ready; do
  if [ "$waited" -ge "$WAIT_S" ]; then
    echo "start.sh: TorchServe was not healthy after $WAIT_S s; the end of its log:" >&2
    tail -n 50 logs/model_log.log >&2 || true
    exit 1
  fi
  sleep 2
  waited=$((waited + 2))
done
echo "start.sh: TorchServe is up after ${waited} s; starting the app"

export TROUBLE_MODE="${TROUBLE_MODE:-server}" TROUBLE_API_URL="$API_URL"
export GRADIO_SERVER_NAME="${GRADIO_SERVER_NAME:-0.0.0.0}" GRADIO_SERVER_PORT="${GRADIO_SERVER_PORT:-7860}"
# In the background and waited for, so that `docker stop` (TERM) reaches this script at once
# and the EXIT trap stops both.
python space/app.py &
app_pid=$!
wait "$app_pid"
