#!/usr/bin/env bash
# scripts/load.sh [PROFILE]: headless load test (steady | spike | drift) of a running
# beyondfit service, with a report and a memory-leak verdict (loadtest/README.md).
#
# It loads the service that `make demo` runs (http://127.0.0.1:8000 by default); start that
# first, or point BEYONDFIT_LOAD_HOST at another service on this machine (the RSS sampling
# reads /proc, so the service must run here). Settings (environment):
#   BEYONDFIT_LOAD_HOST      service URL             (default http://127.0.0.1:8000)
#   BEYONDFIT_LOAD_DURATION  seconds of load         (default 60)
#   BEYONDFIT_LOAD_USERS     concurrent users        (default 4)
#   BEYONDFIT_LOAD_RATE      requests/s per user     (default 10)
#   BEYONDFIT_LOAD_OUT       report folder           (default loadtest/results/PROFILE-DATE,
#                                                     ignored by git so the tree stays clean)
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

profile=${1:-${PROFILE:-steady}}
case "$profile" in steady|spike|drift) ;; *) die "PROFILE must be steady, spike or drift" ;; esac
host=${BEYONDFIT_LOAD_HOST:-http://127.0.0.1:8000}
duration=${BEYONDFIT_LOAD_DURATION:-60}
out=${BEYONDFIT_LOAD_OUT:-loadtest/results/$profile-$(date +%Y%m%d-%H%M%S)}

curl -fsS --max-time 5 "$host/health/ready" >/dev/null \
  || die "no ready service at $host: run \`make demo\` in another terminal first"

# The held-out rows of the training split (the same split the trainer uses), so the steady
# profile sends data like the training data and the drift profile shifts it.
mkdir -p "$out"
timeout 120 .venv/bin/python - "$out/rows.csv" <<'PY'
import sys
from training.data import load_dataset, split
from training.train import TrainConfig

config = TrainConfig()
X, y, _ = load_dataset(config.dataset)
_, X_test, _, _ = split(X, y, config.test_size, config.seed)
X_test.to_csv(sys.argv[1], index=False)
PY

log "load: $profile for ${duration} s against $host (progress every 10 s, then the report in $out)"
timeout $((duration + 180)) .venv/bin/python loadtest/run.py --host "$host" --profile "$profile" \
  --duration "$duration" --users "${BEYONDFIT_LOAD_USERS:-4}" --rate "${BEYONDFIT_LOAD_RATE:-10}" \
  --rows "$out/rows.csv" --out "$out"
log "report: $out/report.json, $out/report.png"
