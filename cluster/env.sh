# Shared settings of the local cluster: sourced by cluster/*.sh, never run.
# shellcheck shell=bash disable=SC2034
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

CLUSTER_DIR="$REPO_ROOT/cluster"
# Persistent state: certificates, etcd data, kubelet root, images, logs.
STATE_DIR="${BEYONDFIT_CLUSTER_STATE:-/var/lib/beyondfit-cluster}"
# Runtime state on tmpfs: containerd's state dir and socket, pid files.
RUN_DIR="${BEYONDFIT_CLUSTER_RUN:-/run/beyondfit-cluster}"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"
PKI="$STATE_DIR/pki"
CONF="$STATE_DIR/config"
LOGS="$STATE_DIR/logs"
PIDS="$RUN_DIR/pids"
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"
CRI_ENDPOINT="unix://$CONTAINERD_SOCK"

K8S_BIN="$BEYONDFIT_CACHE/k8s/$K8S_VERSION/bin"
ADDONS_DIR="$BEYONDFIT_CACHE/k8s/addons"
COREDNS_BIN="$ADDONS_DIR/coredns-$COREDNS_VERSION/coredns"
METRICS_SERVER_BIN="$ADDONS_DIR/metrics-server-$METRICS_SERVER_VERSION/metrics-server"
LOCAL_PATH_BIN="$ADDONS_DIR/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION/local-path-provisioner"
KUBECTL="$K8S_BIN/kubectl"
[ -x "$KUBECTL" ] || KUBECTL=$(command -v kubectl || echo kubectl)

# Network. NODE_IP is a host-only /32 on lo: the API server, kubelet, CoreDNS and
# metrics-server listen there, so nothing listens on eth0, and pods can still reach the
# API server through the `kubernetes` Service (Endpoints may not hold 127.0.0.1).
NODE_NAME=beyondfit-node
NODE_IP=10.247.0.1
POD_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_SVC_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
CNI_NETWORK=beyondfit
CNI_BRIDGE=bf-cni0
API_PORT=6443
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
METRICS_SERVER_PORT=4443
CNI_BIN_DIR=/usr/lib/cni

# Images the cluster itself needs, built locally (no registry).
PAUSE_IMAGE=localhost/beyondfit/pause:3.10
BUSYBOX_IMAGE=localhost/beyondfit/busybox:1.35.0

# The daemons, in start order; down.sh stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet
  kube-proxy coredns metrics-server local-path-provisioner)

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

pid_of() { # pid_of NAME: the pid of a component we started, if it still runs
  local f="$PIDS/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
