#!/usr/bin/env bash
# make demo: the whole system as local processes with embedded defaults (no containers, no
# Kubernetes): an MLflow tracking server (SQLite + local artifacts), a training run that
# registers and promotes a model, the service under gunicorn with 2 workers, Prometheus
# scraping it with the alert and recording rules, and one sample prediction.
# Ctrl-C (or SIGTERM/SIGHUP to this script) stops everything it started, in order, and
# exits 0. State lives in .demo/ (delete it to start over).
#
# The servers run in sessions of their own, so a Ctrl-C in the terminal reaches only this
# script, whose trap stops them: the cleanup is the same whoever sends the signal. (A
# non-interactive bash cannot trap a signal that was ignored when it started, e.g. INT for
# `make demo &` in a script: stop such a demo with SIGTERM.)
#
# Environment: MLFLOW_PORT (5000), BEYONDFIT_PORT (8000), PROMETHEUS_PORT (9090),
# SCRAPE_INTERVAL (15s), DEMO_DIR (.demo), DEMO_ONESHOT=1 (stop after the sample prediction).
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

MLFLOW_PORT=${MLFLOW_PORT:-5000}
BEYONDFIT_PORT=${BEYONDFIT_PORT:-8000}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-15s}
DEMO_DIR=$(mkdir -p "${DEMO_DIR:-.demo}" && cd "${DEMO_DIR:-.demo}" && pwd)
PY=.venv/bin/python

"$REPO_ROOT/scripts/setup-monitoring.sh" || log "Prometheus could not be installed; the demo runs without it"

for port in "$MLFLOW_PORT" "$BEYONDFIT_PORT" "$PROMETHEUS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is taken; stop what uses it or set MLFLOW_PORT / BEYONDFIT_PORT / PROMETHEUS_PORT"
  fi
done

pids=()
# stop: TERM to every server (the last started first), each given 20 s before KILL.
cleanup() {
  trap - EXIT INT TERM HUP
  log "stopping ${#pids[@]} processes"
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null && log "process $pid did not stop on TERM: killed" || true
  done
}
trap cleanup EXIT
trap 'cleanup; log "stopped"; exit 0' INT TERM HUP

# start NAME LOG CMD...: CMD in the background, in a session of its own (see above).
# setsid does not fork here (a background job of this script never leads a process group),
# so $! is the server's own pid.
start() {
  local name=$1 logfile=$2; shift 2
  setsid "$@" >"$logfile" 2>&1 &
  pids+=($!)
  log "$name: pid $!, log $logfile"
}

# wait_for URL SECONDS: until URL answers 200.
wait_for() {
  local deadline=$((SECONDS + $2))
  until "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$1 did not answer within $2 s (logs in $DEMO_DIR)"
    sleep 0.5
  done
}

log "MLflow tracking server on http://127.0.0.1:$MLFLOW_PORT"
start MLflow "$DEMO_DIR/mlflow.log" env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
  .venv/bin/mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
  --backend-store-uri "sqlite:///$DEMO_DIR/mlflow.db" \
  --artifacts-destination "$DEMO_DIR/artifacts" --serve-artifacts
wait_for "http://127.0.0.1:$MLFLOW_PORT/health" 180
export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"

log "training: breast-cancer classifier -> registry, quality gate on the champion alias"
"$PY" -m training.train

log "service under gunicorn (2 workers) on http://127.0.0.1:$BEYONDFIT_PORT"
start service "$DEMO_DIR/service.log" env BEYONDFIT_HOST=127.0.0.1 \
  BEYONDFIT_PORT="$BEYONDFIT_PORT" BEYONDFIT_WORKERS=2 \
  BEYONDFIT_RELOAD_INTERVAL_SECONDS="${BEYONDFIT_RELOAD_INTERVAL_SECONDS:-10}" \
  PROMETHEUS_MULTIPROC_DIR="$DEMO_DIR/metrics" \
  .venv/bin/gunicorn -c python:app.gunicorn_conf 'app.main:create_app()'
wait_for "http://127.0.0.1:$BEYONDFIT_PORT/health/ready" 180

if command -v prometheus >/dev/null; then
  log "Prometheus on http://127.0.0.1:$PROMETHEUS_PORT (scrape every $SCRAPE_INTERVAL, rules loaded)"
  "$PY" monitoring/prometheus_config.py --target "127.0.0.1:$BEYONDFIT_PORT" \
    --interval "$SCRAPE_INTERVAL" --out "$DEMO_DIR/prometheus.yml"
  start Prometheus "$DEMO_DIR/prometheus.log" prometheus --config.file="$DEMO_DIR/prometheus.yml" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --storage.tsdb.path="$DEMO_DIR/prometheus-data"
  wait_for "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" 60
fi

log "sample prediction: POST /predict with the model's own input example"
"$PY" - "http://127.0.0.1:$BEYONDFIT_PORT" <<'PYEOF'
import json, sys, urllib.request
base = sys.argv[1]
model = json.load(urllib.request.urlopen(f"{base}/model"))
body = json.dumps({"instances": model["input_example"][:2]}).encode()
req = urllib.request.Request(f"{base}/predict", body, {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(req))
print(json.dumps(answer, indent=2))
PYEOF

cat <<TXT

  beyondfit is running:
    MLflow UI      http://127.0.0.1:$MLFLOW_PORT
    API docs       http://127.0.0.1:$BEYONDFIT_PORT/docs
    metrics        http://127.0.0.1:$BEYONDFIT_PORT/metrics
    Prometheus     http://127.0.0.1:$PROMETHEUS_PORT   (alerts: http://127.0.0.1:$PROMETHEUS_PORT/classic/alerts)
    logs           $DEMO_DIR/*.log

  Train again (the gate decides whether the new version becomes champion; the service
  swaps it in without a restart):
    MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI .venv/bin/python -m training.train --C 0.5

  Ctrl-C stops everything.
TXT

[ "${DEMO_ONESHOT:-0}" = 1 ] && exit 0
# Until a signal (its trap exits 0) or until a server exits on its own, which is an error.
wait -n "${pids[@]}" || true
die "a demo process exited on its own; see the logs in $DEMO_DIR"
