#!/usr/bin/env bash
# cluster/load-image.sh IMAGE...: copies images from podman's store into the cluster's
# containerd (namespace k8s.io) without a registry: `podman save` | `ctr images import`.
# Pods then use the image by the same name with imagePullPolicy IfNotPresent or Never
# (and a tag other than :latest, which would make IfNotPresent pull).
. "$(dirname "$0")/env.sh"
[ $# -gt 0 ] || die "usage: $0 IMAGE..."
[ -S "$CONTAINERD_SOCK" ] || die "the cluster's containerd is not running (make cluster-up)"
for image in "$@"; do
  t=$SECONDS
  podman image exists "$image" || die "podman has no image $image"
  log "loading $image into the cluster's containerd (podman save | ctr import: about 20 s)"
  # Drop an older image of the same name first: its snapshots may be gone (down.sh wipes
  # them, containerd's metadata keeps the name) and the import would then fail with
  # "parent snapshot ... does not exist".
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images rm "$image" >/dev/null 2>&1 || true
  podman save --format docker-archive "$image" 2>/dev/null |
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import - >/dev/null ||
    die "import of $image into containerd failed"
  log "loaded $image into the cluster in $((SECONDS - t)) s"
done
