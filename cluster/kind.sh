#!/usr/bin/env bash
# cluster/kind.sh prepare | load IMAGE...: the hooks that let the end-to-end tests run on a
# kind cluster (made by helm/kind-action in CI) instead of the local cluster of cluster/up.sh.
#
#   prepare      makes the kind cluster look like the local one to the tests: routes from
#                this host to the Service and pod ranges of cluster/kind.yaml through the kind
#                node (the tests reach Services and pods by address, as on the local cluster),
#                a StorageClass `local-path` on kind's own local-path provisioner (the name the
#                charts' local values ask for), and metrics-server METRICS_SERVER_VERSION
#                (scripts/versions.env) for the HPA test. Needs root (ip route) and docker.
#   load IMAGE.. copies images from podman's store into the kind node (`podman save`, then
#                `kind load image-archive`); the e2e set-up calls it through
#                BEYONDFIT_LOAD_IMAGE="cluster/kind.sh load" (scripts/setup-e2e.sh).
#
# KIND_CLUSTER_NAME names the cluster (default beyondfit); BEYONDFIT_KUBECONFIG is its
# kubeconfig (default: kubectl's).
. "$(dirname "$0")/../scripts/lib.sh"
CLUSTER="${KIND_CLUSTER_NAME:-beyondfit}"
kubectl_() { kubectl ${BEYONDFIT_KUBECONFIG:+--kubeconfig "$BEYONDFIT_KUBECONFIG"} "$@"; }

subnet() {  # subnet podSubnet|serviceSubnet: the range cluster/kind.yaml gives the cluster
  sed -n "s/^ *$1: *\"\{0,1\}\([0-9./]*\)\"\{0,1\} *$/\1/p" "$REPO_ROOT/cluster/kind.yaml"
}

prepare() {
  command -v docker >/dev/null || die "docker is missing (kind runs its node in docker)"
  local node ip range
  node="$CLUSTER-control-plane"
  ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$node")" ||
    die "no kind node $node (is the kind cluster $CLUSTER up?)"
  for range in "$(subnet serviceSubnet)" "$(subnet podSubnet)"; do
    [ -n "$range" ] || die "cluster/kind.yaml lacks podSubnet or serviceSubnet"
    ip route replace "$range" via "$ip"
    log "route $range via the kind node $ip"
  done
  kubectl_ apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
provisioner: rancher.io/local-path
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
YAML
  log "StorageClass local-path on kind's provisioner"
  kubectl_ apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/$METRICS_SERVER_VERSION/components.yaml" >/dev/null
  # kind's kubelets serve self-signed certificates
  kubectl_ -n kube-system patch deployment metrics-server --type=json \
    -p '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--kubelet-insecure-tls"}]' >/dev/null
  kubectl_ -n kube-system rollout status deployment/metrics-server --timeout=300s >/dev/null
  log "metrics-server $METRICS_SERVER_VERSION ready"
}

load() {
  [ $# -gt 0 ] || die "usage: $0 load IMAGE..."
  command -v kind >/dev/null || die "kind is missing (helm/kind-action installs it)"
  local image t archive
  archive="$(mktemp -d /var/tmp/beyondfit-kind.XXXXXX)/image.tar"
  trap 'rm -rf "$(dirname "$archive")"' RETURN
  for image in "$@"; do
    t=$SECONDS
    podman image exists "$image" || die "podman has no image $image"
    rm -f "$archive"
    podman save --format docker-archive -o "$archive" "$image" >/dev/null || die "podman save of $image failed"
    kind load image-archive "$archive" --name "$CLUSTER" >&2 || die "kind load of $image failed"
    log "loaded $image into the kind cluster $CLUSTER in $((SECONDS - t)) s"
  done
}

case "${1:-}" in
  prepare) prepare ;;
  load) shift; load "$@" ;;
  *) die "usage: $0 prepare | load IMAGE..." ;;
esac
