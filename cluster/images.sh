#!/usr/bin/env bash
# cluster/images.sh: builds the two images the cluster itself needs, with podman, from
# binaries on this machine, and loads them into the cluster's containerd (up.sh calls it):
#   $PAUSE_IMAGE    the pod sandbox: the static pause binary from build.sh
#   $BUSYBOX_IMAGE  Debian's static busybox: local-path-provisioner's helper pods and the
#                   tests' tiny workload image (httpd, nslookup, wget, sh)
. "$(dirname "$0")/env.sh"

in_containerd() {
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q 2>/dev/null | grep -qxF "$1"
}

# podman_import IMAGE ROOTFS CHANGE...: a one-layer image from a directory.
podman_import() {
  local image=$1 rootfs=$2; shift 2
  local changes=() c
  for c in "$@"; do changes+=(--change "$c"); done
  tar --owner=0 --group=0 -C "$rootfs" -c . |
    podman import -q "${changes[@]}" - "$image" >/dev/null
}

build_pause() {
  local d
  d=$(mktemp -d)
  install -m 0755 "$BEYONDFIT_CACHE/k8s/pause/pause" "$d/pause"
  podman_import "$PAUSE_IMAGE" "$d" 'ENTRYPOINT ["/pause"]' 'USER 65535:65535'
  rm -rf "$d"
}

build_busybox() {
  local d a
  d=$(mktemp -d)
  mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/www"
  chmod 1777 "$d/tmp"
  install -m 0755 /bin/busybox "$d/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$d/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/etc/group"
  echo "hello from beyondfit busybox" >"$d/www/index.html"
  podman_import "$BUSYBOX_IMAGE" "$d" 'CMD ["/bin/sh"]' 'ENV PATH=/bin'
  rm -rf "$d"
}

for pair in "pause:$PAUSE_IMAGE" "busybox:$BUSYBOX_IMAGE"; do
  what=${pair%%:*} image=${pair#*:}
  in_containerd "$image" && continue
  podman image exists "$image" || { log "building $image"; "build_$what"; }
  bash "$CLUSTER_DIR/load-image.sh" "$image"
done
