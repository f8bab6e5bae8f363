#!/usr/bin/env bash
# cluster/build.sh [k8s|addons|pause|all]: builds the binaries the local cluster runs and
# caches them by version outside the work tree, so a warm machine skips all of it:
#   $BEYONDFIT_CACHE/k8s/$K8S_VERSION/bin/      kube-apiserver ... kubelet, kubectl
#   $BEYONDFIT_CACHE/k8s/addons/<name>-<ver>/   coredns, metrics-server, local-path-provisioner
#   $BEYONDFIT_CACHE/k8s/pause/pause            a static pause binary (the sandbox image)
# Everything comes from the Go module proxy (Kubernetes is not in Debian or PyPI).
. "$(dirname "$0")/../scripts/lib.sh"

K8S_BIN="$BEYONDFIT_CACHE/k8s/$K8S_VERSION/bin"
ADDONS_DIR="$BEYONDFIT_CACHE/k8s/addons"
PAUSE_DIR="$BEYONDFIT_CACHE/k8s/pause"
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
# One build at a time can use the machine's 2 cores; the rest would only thrash.
BUILD_TIMEOUT="${BEYONDFIT_BUILD_TIMEOUT:-4800}"

export GOFLAGS=-trimpath CGO_ENABLED=0
command -v go >/dev/null || die "go is not on PATH (expected /usr/local/go/bin/go)"

build_k8s() {
  local missing=() c
  for c in "${K8S_COMMANDS[@]}"; do [ -x "$K8S_BIN/$c" ] || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "building Kubernetes $K8S_VERSION: ${missing[*]} (cold: many minutes on 2 cores)"
  local t=$SECONDS minor=${K8S_VERSION#v1.} ldflags x pkgs=()
  minor=${minor%%.*}
  # The same version stamps upstream's hack/lib/version.sh writes, so the node, the
  # apiserver and `kubectl version` report the release instead of v0.0.0-master.
  for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $x.gitVersion=$K8S_VERSION -X $x.gitMajor=1 -X $x.gitMinor=$minor"
    ldflags+=" -X $x.gitTreeState=clean -X $x.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  local tmp="$K8S_BIN.tmp.$$"
  mkdir -p "$tmp"
  (cd "$REPO_ROOT/cluster/k8s-build" &&
    timeout "$BUILD_TIMEOUT" go build -ldflags "-s -w$ldflags" -o "$tmp/" "${pkgs[@]}") ||
    { rm -rf "$tmp"; die "Kubernetes build failed"; }
  mkdir -p "$K8S_BIN"
  mv "$tmp"/* "$K8S_BIN/" && rmdir "$tmp"
  log "Kubernetes $K8S_VERSION built in $((SECONDS - t)) s"
}

# cri-teardown (cluster/k8s-build/cmd): `crictl rmp -af` for down.sh; cri-tools is not served.
build_cri_teardown() {
  [ -x "$K8S_BIN/cri-teardown" ] && return 0
  mkdir -p "$K8S_BIN"
  (cd "$REPO_ROOT/cluster/k8s-build" &&
    go build -ldflags "-s -w" -o "$K8S_BIN/cri-teardown.tmp" ./cmd/cri-teardown) ||
    die "build of cri-teardown failed"
  mv "$K8S_BIN/cri-teardown.tmp" "$K8S_BIN/cri-teardown"
}

# go_tool NAME PACKAGE@VERSION: `go install` one pinned program into its own cached dir.
go_tool() {
  local name=$1 pkg=$2 dir="$ADDONS_DIR/$1-${2##*@}"
  [ -x "$dir/$name" ] && return 0
  log "building $pkg"
  local t=$SECONDS tmp="$dir.tmp.$$"
  mkdir -p "$tmp"
  GOBIN="$tmp" timeout "$BUILD_TIMEOUT" go install -ldflags "-s -w" "$pkg" ||
    { rm -rf "$tmp"; die "build of $pkg failed"; }
  # go install names the binary after the package's last path element.
  mv "$tmp"/* "$tmp/$name" 2>/dev/null || true
  rm -rf "$dir" && mv "$tmp" "$dir"
  log "$name built in $((SECONDS - t)) s"
}

build_addons() {
  go_tool coredns "github.com/coredns/coredns@$COREDNS_VERSION"
  go_tool metrics-server "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
  go_tool local-path-provisioner \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
}

# The pod sandbox ("pause") image: a 20-line static Go program instead of a pulled image.
build_pause() {
  [ -x "$PAUSE_DIR/pause" ] && return 0
  log "building the pause binary"
  mkdir -p "$PAUSE_DIR"
  (cd "$REPO_ROOT/cluster/pause" && go build -ldflags "-s -w" -o "$PAUSE_DIR/pause.tmp" .) &&
    mv "$PAUSE_DIR/pause.tmp" "$PAUSE_DIR/pause"
}

what=${1:-all}
case $what in
  k8s) build_k8s; build_cri_teardown ;;
  addons) build_addons ;;
  pause) build_pause ;;
  all) build_pause; build_k8s; build_cri_teardown; build_addons ;;
  *) die "usage: $0 [k8s|addons|pause|all]" ;;
esac
