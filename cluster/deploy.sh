#!/usr/bin/env bash
# cluster/deploy.sh [NAMESPACE]: the local deployment of docs/deployment.md ("On the local
# cluster") as one command, `make deploy-local`, saying what each long step is doing:
# the images into the cluster's containerd, the namespace (Pod Security "restricted"), the
# MLflow chart, a model trained and registered in that MLflow (unless it has a champion
# already), the service chart, `helm test`. Run it again to upgrade; NAMESPACE defaults to
# beyondfit. Needs `make cluster-up` and `make image` first; installs helm if missing.
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

ns=${1:-beyondfit}
HELM="$BIN_DIR/helm"
TIMEOUT=10m
MODEL=beyondfit-classifier

pid_of kube-apiserver >/dev/null && [ -f "$KUBECONFIG_PATH" ] ||
  die "the local cluster is not running: make cluster-up"
[ -x "$HELM" ] || { log "installing helm (scripts/setup-charts.sh)"; bash scripts/setup-charts.sh; }
tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/beyondfit/Chart.yaml)
images=("localhost/beyondfit:$tag" "localhost/beyondfit-mlflow:$tag")
for image in "${images[@]}"; do
  podman image exists "$image" || die "podman has no image $image: make image"
done
hl() { "$HELM" --kubeconfig "$KUBECONFIG_PATH" -n "$ns" "$@"; }

log "loading ${images[*]} into the cluster's containerd (about 20 s per image)"
bash cluster/load-image.sh "${images[@]}"

log "namespace $ns, Pod Security standard \"restricted\" enforced"
kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
kc label --overwrite namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null

# helm_wait RELEASE CHART VALUES: helm upgrade --install --wait, which prints nothing until
# the release is ready; meanwhile the release's pods are shown every 15 s.
helm_wait() {
  local release=$1 chart=$2 values=$3 pid start=$SECONDS pods
  log "helm upgrade --install $release: waiting for its pods to be ready (at most $TIMEOUT)"
  hl upgrade --install "$release" "$chart" -f "$values" --wait --timeout "$TIMEOUT" >/dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 15); do kill -0 "$pid" 2>/dev/null && sleep 1; done
    kill -0 "$pid" 2>/dev/null || break
    pods=$(kc -n "$ns" get pods -l "app.kubernetes.io/instance=$release" --no-headers \
      2>/dev/null | awk '{printf "%s%s %s %s", sep, $1, $2, $3; sep=", "}')
    log "  $release after $((SECONDS - start)) s: ${pods:-no pods yet}"
  done
  wait "$pid" || die "helm upgrade --install $release failed (kubectl -n $ns get pods,events)"
  log "$release is ready after $((SECONDS - start)) s"
}

helm_wait mlflow charts/mlflow inventories/local/values/mlflow.yaml

# The service waits (not ready) until the registry has a champion: register one first. From
# this host a Service's ClusterIP answers directly (kube-proxy), so the trainer talks to the
# in-cluster MLflow without a port-forward.
mlflow_url="http://$(kc -n "$ns" get service mlflow -o jsonpath='{.spec.clusterIP}'):5000"
if curl -fsS --max-time 10 -o /dev/null \
  "$mlflow_url/api/2.0/mlflow/registered-models/alias?name=$MODEL&alias=champion"; then
  log "$MODEL@champion is registered in $mlflow_url already: not training"
else
  log "training the model and registering $MODEL@champion in $mlflow_url (about 30 s)"
  MLFLOW_TRACKING_URI=$mlflow_url timeout 600 .venv/bin/python -m training.train
fi

helm_wait beyondfit charts/beyondfit inventories/local/values/beyondfit.yaml

log "helm test beyondfit: /health, /health/ready, /model and one /predict from a pod"
hl test beyondfit --timeout 5m >/dev/null || die "helm test beyondfit failed (kubectl -n $ns logs beyondfit-test-connection)"
url="http://$(kc -n "$ns" get service beyondfit -o jsonpath='{.spec.clusterIP}'):8000"
log "deployed: the service answers at $url from this host (or kubectl -n $ns port-forward svc/beyondfit 8000:8000)"
