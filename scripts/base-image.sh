#!/usr/bin/env bash
# scripts/base-image.sh: builds the stand-in base image localhost/debian-python:bookworm.
#
# No image can be pulled on our machines (no registry), so the Dockerfiles' default base
# (`ARG BASE_IMAGE=` in Dockerfile, the one place for the pin: python:3.11.10-slim-bookworm
# by tag and digest) is replaced in local builds and tests by this image: Debian
# bookworm minbase + python3 (3.11) + python3-venv + ca-certificates, made with debootstrap
# and imported into podman. Cached twice: skipped when podman already has the image, and
# the root filesystem tarball is kept under $BEYONDFIT_CACHE/images so a wiped podman store
# re-imports in seconds instead of re-running debootstrap (~2.5 min).
. "$(dirname "$0")/lib.sh"

IMAGE="${BEYONDFIT_STANDIN_IMAGE:-localhost/debian-python:bookworm}"
MIRROR="${BEYONDFIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache_dir="$BEYONDFIT_CACHE/images"
tarball="$cache_dir/debian-python-bookworm.tar"

command -v podman >/dev/null || die "podman is missing: run scripts/setup-images.sh"

if podman image exists "$IMAGE"; then
  log "base image $IMAGE already in podman storage"
  exit 0
fi

mkdir -p "$cache_dir"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing: run scripts/setup-images.sh"
  rootfs="$(mktemp -d /var/tmp/beyondfit-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) into $rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; die "debootstrap failed"; }
  rm -f "$rootfs.log"
  # Leave no package lists or caches in the image.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi

log "importing $tarball as $IMAGE"
podman import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tarball" "$IMAGE" >/dev/null
log "base image $IMAGE ready ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
