#!/usr/bin/env bash
# scripts/setup-ansible.sh: what `scripts/test.sh ansible` needs before its tests: helm
# (scripts/setup-charts.sh), podman and the base image (scripts/setup-images.sh), the
# Kubernetes binaries (cluster/build.sh), and the local monitoring stack's binaries and
# images (scripts/monitoring-images.sh images: cached by version, so only a new machine or
# a new pin builds). The playbook itself starts the cluster, builds the service images and
# imports everything into the cluster, as it does for a user.
. "$(dirname "$0")/lib.sh"
"$REPO_ROOT/scripts/setup-charts.sh"
"$REPO_ROOT/scripts/setup-images.sh"
bash "$REPO_ROOT/cluster/build.sh" all
bash "$REPO_ROOT/scripts/monitoring-images.sh" images
