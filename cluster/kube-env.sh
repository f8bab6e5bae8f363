# Source this in your shell to use the local cluster by hand:
#
#   . cluster/kube-env.sh
#
# It puts helm and the cluster's own kubectl first on PATH and points KUBECONFIG at the
# cluster's admin kubeconfig; nothing else (no `set -e`, no other variables left behind).
#   helm     $BEYONDFIT_CACHE/bin/helm                    (scripts/setup-charts.sh installs it)
#   kubectl  $BEYONDFIT_CACHE/k8s/<K8S_VERSION>/bin/kubectl (built with the cluster, cluster/build.sh)
#   KUBECONFIG /var/lib/beyondfit-cluster/kubeconfig      (written by make cluster-up)
# BEYONDFIT_CACHE defaults to /var/cache/beyondfit, as in scripts/lib.sh.
# shellcheck shell=bash
__bf_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
__bf_cache="${BEYONDFIT_CACHE:-/var/cache/beyondfit}"
__bf_k8s="$(sed -n 's/^K8S_VERSION=//p' "$__bf_root/scripts/versions.env")"
export KUBECONFIG="${BEYONDFIT_CLUSTER_STATE:-/var/lib/beyondfit-cluster}/kubeconfig"
export PATH="$__bf_cache/bin:$__bf_cache/k8s/$__bf_k8s/bin:$PATH"
[ -x "$__bf_cache/bin/helm" ] ||
  echo "kube-env: no helm in $__bf_cache/bin yet: run bash scripts/setup-charts.sh" >&2
[ -x "$__bf_cache/k8s/$__bf_k8s/bin/kubectl" ] ||
  echo "kube-env: no kubectl in $__bf_cache/k8s/$__bf_k8s/bin yet: run make cluster-up" >&2
[ -f "$KUBECONFIG" ] || echo "kube-env: no $KUBECONFIG yet: run make cluster-up" >&2
echo "kube-env: helm and kubectl from $__bf_cache, KUBECONFIG=$KUBECONFIG" >&2
unset __bf_root __bf_cache __bf_k8s
