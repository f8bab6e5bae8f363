#!/usr/bin/env bash
# scripts/test.sh LAYER: installs what LAYER needs (scripts/setup-LAYER.sh, if any), then
# runs pytest over tests/LAYER. `all` runs lint and every layer in order, as CI does; a
# failing step does not stop the others, and the run ends with a summary of every step.
# Extra arguments go to pytest. BEYONDFIT_TEST_LAYERS="unit charts" narrows `all`.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

# shellcheck disable=SC2206 # a list of layer names, split on spaces
LAYERS=(${BEYONDFIT_TEST_LAYERS:-unit ci integration monitoring charts images cluster e2e ansible})

# run_layer LAYER ARGS...: its set-up, then its tests; the status says whether both passed.
# (Called in a condition, where bash ignores `set -e`: every failure returns explicitly.)
run_layer() {
  local layer=$1; shift
  [ -d "tests/$layer" ] || { log "no tests/$layer yet, skipping"; return 0; }
  if [ -x "scripts/setup-$layer.sh" ]; then
    "scripts/setup-$layer.sh" || { log "the set-up of tests/$layer failed"; return 1; }
  fi
  log "tests/$layer"
  # the slowest tests are named at the end of each layer, to see where the time goes
  .venv/bin/python -m pytest "tests/$layer" --durations=5 "$@"
}

# After the whole suite the host is left as it was found: a cluster the suite started is
# brought down, and cluster/verify-clean.sh must then find nothing of it (processes, mounts,
# interfaces, iptables rules, netns, cgroups) -- the teardown check after the full stack.
# A cluster that was already up (a developer's) is left running.
cluster_up() { (. cluster/env.sh && pid_of kube-apiserver >/dev/null); }
leave_host_clean() {
  local status=$?
  log "bringing the suite's cluster down"
  bash cluster/down.sh >/dev/null || status=1
  bash cluster/verify-clean.sh || status=1
  exit "$status"
}

# The layers that use what a machine has only one of (the local cluster, podman's image
# store) take a host-wide lock, so two checkouts on one machine queue instead of breaking
# each other's runs. `all` takes it at its first such layer and holds it to the end (it
# may bring the cluster down there).
HOST_LOCK=${BEYONDFIT_HOST_LOCK:-/var/lock/beyondfit-host.lock}
take_host_lock() {
  [ -n "${BEYONDFIT_HOST_LOCK_HELD:-}" ] && return 0
  exec 9>"$HOST_LOCK"
  if ! flock -n 9; then
    log "waiting for the host lock $HOST_LOCK (another run uses the cluster or the images)"
    flock 9
  fi
  export BEYONDFIT_HOST_LOCK_HELD=1
}

layer=${1:-all}; shift || true
if [ "$layer" = all ]; then
  start=$SECONDS
  # The local monitoring stack's Go builds (tests/ansible; ~25 min on 2 cores when cold,
  # nothing when cached) run in the background beside the first layers, at low priority;
  # scripts/setup-ansible.sh waits for them. (Not with the host lock's fd: it outlives steps.)
  if [[ " ${LAYERS[*]} " =~ \ ansible\  ]]; then
    mkdir -p "$BEYONDFIT_CACHE"
    nice -n 19 bash scripts/monitoring-images.sh build >"$BEYONDFIT_CACHE/monitoring-build.log" 2>&1 9>&- &
  fi
  # host_layer LAYER: the lock first; then, the first time, whether the cluster is ours to
  # bring down at the end (it is unless it was already up).
  host_layer() {
    [ -n "${BEYONDFIT_HOST_LOCK_HELD:-}" ] && return 0
    take_host_lock
    if [[ " ${LAYERS[*]} " =~ \ (cluster|e2e|ansible)\  ]] && [ "$(id -u)" = 0 ] && ! cluster_up; then
      trap leave_host_clean EXIT
    fi
  }
  # A failed step does not stop the run: every layer runs, and the summary names each
  # failure, so one run shows everything that is broken.
  failed=() summary=()
  step() {
    local name=$1 t=$SECONDS result=passed; shift
    "$@" || { result=FAILED; failed+=("$name"); }
    summary+=("$(printf '%-12s %-7s %5d s' "$name" "$result" $((SECONDS - t)))")
    log "$name: $result in $((SECONDS - t)) s"
  }
  step lint bash scripts/lint.sh
  for l in "${LAYERS[@]}"; do
    case $l in images|cluster|e2e|ansible) host_layer ;; esac
    step "$l" run_layer "$l" "$@"
  done
  log "summary (whole suite: $((SECONDS - start)) s)"
  printf '  %s\n' "${summary[@]}" >&2
  if [ ${#failed[@]} -gt 0 ]; then
    die "failed: ${failed[*]}"
  fi
else
  case $layer in images|cluster|e2e|ansible) take_host_lock ;; esac
  run_layer "$layer" "$@"
fi
