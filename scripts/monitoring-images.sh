#!/usr/bin/env bash
# scripts/monitoring-images.sh [build|images|load]: what kube-prometheus-stack would run,
# built here from Go modules, for the local cluster where no chart repository and no image
# registry can be reached (playbooks/roles/monitoring installs it):
#   prometheus-operator, prometheus-config-reloader  PROMETHEUS_OPERATOR_VERSION
#       (cluster/monitoring-build/operator: a wrapper module, see its go.mod)
#   prometheus   PROMETHEUS_VERSION (cluster/monitoring-build/prometheus, likewise), tags
#                remove_all_sd,enable_kubernetes_sd (only the Kubernetes service discovery
#                the operator's configs use; no web UI assets, the HTTP API is complete)
#   kube-state-metrics  KUBE_STATE_METRICS_VERSION
#   node-exporter       NODE_EXPORTER_VERSION
#
#   build   the static binaries, cached by version in $BEYONDFIT_CACHE/monitoring/<name>-<ver>/
#   images  + one-layer podman images localhost/beyondfit/<name>:<version> (binary, passwd,
#           uid 65534); skipped when podman has them
#   load    + the images moved into the local cluster's containerd (cluster/load-image.sh);
#           skipped when containerd has them
# `load` is the default. The CRDs are not built: the monitoring role reads them from the
# operator's module in the Go module cache (`crds` prints that directory, downloading the
# module if needed).
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

what=${1:-load}
CACHE_DIR="$BEYONDFIT_CACHE/monitoring"
BUILD_TIMEOUT="${BEYONDFIT_BUILD_TIMEOUT:-4800}"
export GOFLAGS=-trimpath CGO_ENABLED=0
command -v go >/dev/null || die "go is not on PATH (expected /usr/local/go/bin/go)"

# name|version|how: the images, in the order they are built. how = install:PKG (`go install
# PKG@version`) or DIR:PKG (`go build PKG` in the wrapper module cluster/monitoring-build/DIR,
# whose go.mod pins the version; tests/ansible checks it equals versions.env).
IMAGES=(
  "prometheus-operator|$PROMETHEUS_OPERATOR_VERSION|operator:github.com/prometheus-operator/prometheus-operator/cmd/operator"
  "prometheus-config-reloader|$PROMETHEUS_OPERATOR_VERSION|operator:github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
  "prometheus|$PROMETHEUS_VERSION|prometheus:github.com/prometheus/prometheus/cmd/prometheus"
  "kube-state-metrics|$KUBE_STATE_METRICS_VERSION|kube-state-metrics:k8s.io/kube-state-metrics/v2"
  "node-exporter|$NODE_EXPORTER_VERSION|install:github.com/prometheus/node_exporter"
)

# The version stamps that upstream's promu writes, so build_info metrics tell the release.
stamps() {
  local v=$1 x=github.com/prometheus/common/version
  echo "-s -w -X $x.Version=${v#v} -X $x.Revision=${v} -X $x.Branch=${v} -X $x.BuildUser=beyondfit -X $x.BuildDate=19700101-00:00:00"
}

build_one() {  # build_one NAME VERSION HOW
  local name=$1 v=$2 how=$3 dir="$CACHE_DIR/$1-$2"
  [ -x "$dir/$name" ] && return 0
  local t=$SECONDS tmp="$dir.tmp.$$" kind=${how%%:*} pkg=${how#*:} tags=()
  [ "$name" = prometheus ] && tags=(-tags "remove_all_sd,enable_kubernetes_sd")
  log "building $name $v (cold: minutes on 2 cores)"
  mkdir -p "$tmp"
  if [ "$kind" != install ]; then
    (cd "cluster/monitoring-build/$kind" &&
      timeout "$BUILD_TIMEOUT" go build "${tags[@]}" -ldflags "$(stamps "$v")" -o "$tmp/$name" "$pkg") ||
      { rm -rf "$tmp"; die "build of $name failed"; }
  else
    GOBIN="$tmp" timeout "$BUILD_TIMEOUT" go install "${tags[@]}" -ldflags "$(stamps "$v")" \
      "$pkg@$v" || { rm -rf "$tmp"; die "build of $name failed"; }
    # go install names the binary after the package's last path element.
    [ -x "$tmp/$name" ] || mv "$tmp"/* "$tmp/$name"
  fi
  rm -rf "$dir" && mv "$tmp" "$dir"
  log "$name $v built in $((SECONDS - t)) s: $(($(stat -c %s "$dir/$name") / 1024 / 1024)) MiB"
}

image_one() {  # image_one NAME VERSION: a one-layer image with the static binary
  local name=$1 v=$2 image="localhost/beyondfit/$1:$2" d
  podman image exists "$image" && return 0
  d=$(mktemp -d)
  mkdir -p "$d/bin" "$d/etc" "$d/tmp"
  chmod 1777 "$d/tmp"
  install -m 0755 "$CACHE_DIR/$name-$v/$name" "$d/bin/$name"
  printf 'root:x:0:0:root:/:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/etc/group"
  [ -f /etc/ssl/certs/ca-certificates.crt ] &&
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/ca-certificates.crt"
  tar --owner=0 --group=0 -C "$d" -c . |
    podman import -q --change "ENTRYPOINT [\"/bin/$name\"]" --change 'USER 65534:65534' \
      --change "LABEL org.opencontainers.image.version=$v" - "$image" >/dev/null
  rm -rf "$d"
  log "image $image: $(($(podman image inspect --format '{{.Size}}' "$image") / 1024 / 1024)) MiB"
}

crds_dir() {
  local v=$PROMETHEUS_OPERATOR_VERSION dir
  dir="$(cd cluster/monitoring-build/operator &&
    go mod download -json "github.com/prometheus-operator/prometheus-operator@$v" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir/example/prometheus-operator-crd" ] || die "no CRDs in the operator module ($dir)"
  echo "$dir/example/prometheus-operator-crd"
}

case $what in build|images|load) ;; crds) crds_dir; exit 0 ;; *) die "usage: $0 [build|images|load|crds]" ;; esac
# One builder at a time: a second run (make test starts one in the background) waits, then
# finds everything built.
mkdir -p "$CACHE_DIR"
exec 7>"$CACHE_DIR/.lock"
flock 7
for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name v how <<<"$entry"
  build_one "$name" "$v" "$how"
done
[ "$what" = build ] && exit 0
command -v podman >/dev/null || die "podman is missing: run scripts/setup-images.sh"
for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name v _ <<<"$entry"
  image_one "$name" "$v"
done
[ "$what" = images ] && exit 0
. cluster/env.sh
# The list first: `ctr ... | grep -q` under pipefail fails when grep stops reading early,
# which made every run import every image again (and report a change).
present="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q 2>/dev/null || true)"
for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name v _ <<<"$entry"
  image="localhost/beyondfit/$name:$v"
  grep -qxF "$image" <<<"$present" && continue
  bash cluster/load-image.sh "$image"
done
