#!/usr/bin/env bash
# scripts/setup-e2e.sh: what the end-to-end tests need: helm, the two images (podman, the
# debootstrap base where no registry answers), the local cluster, and the images moved into
# the cluster's containerd.
#
# Any other cluster (kind in CI) takes two hooks:
#   BEYONDFIT_KUBECONFIG  its kubeconfig: the local cluster is then neither started nor used
#                         (the tests read the same variable, tests/cluster/k8s_helpers.py)
#   BEYONDFIT_LOAD_IMAGE  the command that makes an image of podman's store available to the
#                         cluster, called with the image names (default cluster/load-image.sh,
#                         the local cluster's containerd; kind: "cluster/kind.sh load")
. "$(dirname "$0")/lib.sh"
"$REPO_ROOT/scripts/setup-charts.sh"
"$REPO_ROOT/scripts/setup-images.sh"
bash "$REPO_ROOT/scripts/build-images.sh" all
[ -n "${BEYONDFIT_KUBECONFIG:-}" ] || bash "$REPO_ROOT/cluster/up.sh" >/dev/null
tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO_ROOT/charts/beyondfit/Chart.yaml")
# shellcheck disable=SC2206 # a command and its arguments, split on spaces
load=(${BEYONDFIT_LOAD_IMAGE:-cluster/load-image.sh})
(cd "$REPO_ROOT" && "${load[@]}" "localhost/beyondfit:$tag" "localhost/beyondfit-mlflow:$tag")
