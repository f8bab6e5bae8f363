#!/usr/bin/env bash
# scripts/setup-e2e.sh: what the end-to-end tests need: helm, the two images (podman, the
# debootstrap base where no registry answers), the local cluster, and the images moved into
# the cluster's containerd.
. "$(dirname "$0")/lib.sh"
"$REPO_ROOT/scripts/setup-charts.sh"
"$REPO_ROOT/scripts/setup-images.sh"
bash "$REPO_ROOT/scripts/build-images.sh" all
bash "$REPO_ROOT/cluster/up.sh" >/dev/null
tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO_ROOT/charts/beyondfit/Chart.yaml")
bash "$REPO_ROOT/cluster/load-image.sh" "localhost/beyondfit:$tag" "localhost/beyondfit-mlflow:$tag"
